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


def test_prune_switches_off_sites_under_the_threshold(tmp_path, tiny_run):
    res = run(tmp_path, tiny_run + ["meta.enabled=true", "meta.interval=2", "meta.prune=true",
                                    "meta.prune_threshold=5.0"])
    gamma = json.loads((res.out_dir / "gamma.json").read_text())
    assert len(gamma["below_threshold"]) == 12
    weights = load_file(str(res.out_dir / "export" / "peft.safetensors"))
    gammas = [v for k, v in weights.items() if k.endswith("modulator.gamma")]
    assert len(gammas) == 12 and all(float(g) == 0.0 for g in gammas)


def test_bf16_autocast_runs(tmp_path, tiny_run):
    res = run(tmp_path, tiny_run + ["train.bf16=true", "train.epochs=1"])
    assert 0.0 <= res.metrics.overall <= 1.0


def test_selection_holdout_is_reported_and_disjoint(tmp_path, tiny_run):
    res = run(tmp_path, tiny_run + ["train.val_holdout=0.3", "train.epochs=1"])
    metrics = json.loads((res.out_dir / "metrics.json").read_text())
    assert set(metrics["val"]) >= {"overall", "balanced", "many", "medium", "few"}
    assert 0.0 <= metrics["val"]["balanced"] <= 1.0


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
