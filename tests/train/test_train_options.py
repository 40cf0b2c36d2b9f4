"""Trainer options: gradient accumulation, pruning, bf16, the model-selection hold-out, warm-up."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from metapeft.config import RunConfig
from metapeft.train import Trainer
from metapeft.train.optim import cosine_schedule


def run(tmp_path, overrides, name="run"):
    return Trainer(RunConfig.load(None, overrides), tmp_path / name, quiet=True).run()


@pytest.mark.slow
def test_gradient_accumulation_matches_the_full_batch(tmp_path, tiny_run):
    """Two half-batches accumulated = one full batch (mean-reduced loss, no augmentation)."""
    base = tiny_run + ["data.augment=false", "train.epochs=1"]
    a = run(tmp_path, base + ["train.grad_accum=1"], "a")
    b = run(tmp_path, base + ["train.grad_accum=2"], "b")
    wa = load_file(str(a.out_dir / "export" / "peft.safetensors"))
    wb = load_file(str(b.out_dir / "export" / "peft.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5), k
    moved = load_file(str(run(tmp_path, base + ["train.lr=0.5"], "c").out_dir / "export" / "peft.safetensors"))
    assert any(not torch.allclose(wa[k], moved[k], atol=1e-4) for k in wa)  # the comparison can fail


@pytest.mark.slow
def test_prune_switches_off_sites_under_the_threshold(tmp_path, tiny_run):
    res = run(tmp_path, tiny_run + ["meta.enabled=true", "meta.interval=2", "meta.prune=true",
                                    "meta.prune_threshold=5.0"])
    gamma = json.loads((res.out_dir / "gamma.json").read_text())
    assert len(gamma["below_threshold"]) == 12
    weights = load_file(str(res.out_dir / "export" / "peft.safetensors"))
    gammas = [v for k, v in weights.items() if k.endswith("modulator.gamma")]
    assert len(gammas) == 12 and all(float(g) == 0.0 for g in gammas)


@pytest.mark.parametrize("bf16", [True, False])
def test_bf16_autocast_runs_the_train_forward_in_bf16(make_vit, images, bf16):
    """The step's forward runs under bf16 autocast exactly when asked, and the fp32 weights still move."""
    import metapeft as mp
    from metapeft.config import TrainConfig
    from metapeft.train.state import TrainState
    from metapeft.train.step import TrainStep

    model = mp.apply_peft(make_vit(num_classes=5), mp.PeftConfig(method="lora", rank=2, gamma=False)).train()
    phi = {n: p for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.SGD(list(phi.values()), lr=0.1)
    seen = []
    model.head.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    before = {n: p.detach().clone() for n, p in phi.items()}
    step = TrainStep(model, phi, opt, cosine_schedule(opt, 10), torch.nn.CrossEntropyLoss(),
                     TrainConfig(bf16=bf16), TrainState())
    step.step([(images, torch.tensor([0, 1, 2]))])
    assert seen == [torch.bfloat16 if bf16 else torch.float32]
    assert step.state.step == 1 and step.state.skipped_steps == 0
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in phi.values())
    assert any(not torch.equal(before[n], p) for n, p in phi.items())


@pytest.mark.slow
def test_selection_holdout_is_reported_and_disjoint(tmp_path, tiny_run):
    from metapeft.train.pipeline import load_run_dataset, split_train

    res = run(tmp_path, tiny_run + ["train.val_holdout=0.3", "train.epochs=1"])
    metrics = json.loads((res.out_dir / "metrics.json").read_text())
    assert set(metrics["val"]) >= {"overall", "balanced", "many", "medium", "few"}
    assert 0.0 <= metrics["val"]["balanced"] <= 1.0

    class Ids:  # split_train needs only `labels` and `subset`: follow sample ids through the split
        def __init__(self, ids, labels):
            self.ids, self.labels = ids, labels

        def subset(self, idx):
            return Ids(self.ids[idx], self.labels[idx])

    cfg = RunConfig.load(None, tiny_run + ["train.val_holdout=0.3", "meta.enabled=true", "meta.val_mode=holdout"])
    labels = load_run_dataset(cfg).train.labels
    train, meta_val, selection = split_train(cfg, Ids(torch.arange(len(labels)), labels))
    t, m, s = (set(x.ids.tolist()) for x in (train, meta_val, selection))
    assert s and m and not (s & t) and not (s & m) and not (t & m), "selection / meta-val / train overlap"
    assert t | m | s == set(range(len(labels)))
    assert set(train.labels.tolist()) == set(labels.tolist())  # every class keeps training images


def test_cosine_schedule_with_warmup():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = cosine_schedule(opt, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1 / 3) and lrs[1] == pytest.approx(2 / 3) and lrs[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] < 0.1


@pytest.mark.slow
def test_init_from_a_finished_run_starts_from_its_merged_weights(tmp_path, tiny_run):
    """Optical → SAR chaining: run B's frozen backbone is run A's merged (LoRA-folded) model."""
    from metapeft.train.model import build_model

    a = run(tmp_path, tiny_run + ["train.epochs=1", "train.lr=0.5"], "a")
    merged = load_file(str(a.out_dir / "export" / "merged.safetensors"))
    cfg = RunConfig.load(None, tiny_run + [f"model.init_from={a.out_dir}", "data.name=mstar_soc"])
    model = build_model(cfg, 10)
    qkv = model.blocks[1].attn.qkv.base_layer.weight
    assert torch.equal(qkv, merged["blocks.1.attn.qkv.weight"])
    fresh = build_model(RunConfig.load(None, tiny_run), 10)
    assert not torch.equal(fresh.blocks[1].attn.qkv.base_layer.weight, qkv)
    with pytest.raises(FileNotFoundError, match="merged weights"):
        build_model(RunConfig.load(None, tiny_run + [f"model.init_from={tmp_path / 'nope'}"]), 10)
