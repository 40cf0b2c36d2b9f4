"""``train.layer_decay``: timm's per-block lr scales over φ, composing with head_lr_mult; refused with stepsize."""

from __future__ import annotations

import json

import pytest

from metapeft.config import RunConfig
from metapeft.errors import ConfigError
from metapeft.train import Trainer
from metapeft.train.model import build_model
from metapeft.train.optim import build_optimizer, layer_decay_groups

DECAY = 0.5


def _groups(tiny_run, extra):
    cfg = RunConfig.load(None, tiny_run + [f"train.layer_decay={DECAY}", "train.lr=0.1", *extra])
    model = build_model(cfg, 5)
    phi = {n: p for n, p in model.named_parameters() if p.requires_grad}
    groups = layer_decay_groups(phi, model, cfg.train)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    return cfg, model, phi, groups, {n: lr_of[id(p)] for n, p in phi.items()}, {n: wd_of[id(p)] for n, p in phi.items()}


def test_full_fine_tune_gets_timm_layer_scales(tiny_run):
    cfg, model, phi, groups, lr, wd = _groups(tiny_run, ["peft.method=full", "train.head_lr_mult=3"])
    depth = 2  # tiny_run: stem = layer 0, block i = i + 1, final norm with the last block, head = depth + 1
    assert lr["patch_embed.proj.weight"] == pytest.approx(0.1 * DECAY ** (depth + 1))
    assert lr["cls_token"] == pytest.approx(0.1 * DECAY ** (depth + 1))
    assert lr["blocks.0.attn.qkv.weight"] == pytest.approx(0.1 * DECAY ** 2)
    assert lr["blocks.1.mlp.fc2.weight"] == pytest.approx(0.1 * DECAY)
    assert lr["norm.weight"] == pytest.approx(0.1 * DECAY)
    assert lr["head.weight"] == pytest.approx(0.1 * 3)          # × head_lr_mult, no decay
    assert wd["blocks.0.attn.qkv.weight"] == cfg.train.weight_decay and wd["blocks.0.norm1.weight"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(phi)     # every trainable tensor, once
    assert groups[0]["lr"] == max(g["lr"] for g in groups)       # history.csv's lr column: the top group


def test_layer_decay_covers_only_peft_weights_and_the_head(tiny_run):
    _, model, phi, _, lr, _ = _groups(tiny_run, ["peft.method=lora", "peft.positions=q,v"])
    assert all("lora" in n or n.startswith("head.") for n in lr)
    a0 = next(n for n in lr if n.startswith("blocks.0.") and "lora" in n)
    a1 = next(n for n in lr if n.startswith("blocks.1.") and "lora" in n)
    assert lr[a0] == pytest.approx(DECAY * lr[a1])


def test_layer_decay_refuses_stepsize_and_bad_values(tiny_run):
    with pytest.raises(ConfigError, match="layer_decay.*stepsize"):
        RunConfig.load(None, tiny_run + ["train.layer_decay=0.7", "meta.enabled=true", "meta.mode=stepsize"])
    for bad in ("0", "1.5"):
        with pytest.raises(ConfigError, match="train.layer_decay"):
            RunConfig.load(None, tiny_run + [f"train.layer_decay={bad}"])
    cfg = RunConfig.load(None, tiny_run + ["train.layer_decay=0.7", "meta.enabled=true", "peft.method=lora"])
    assert cfg.meta.mode is None   # the paper mode composes: γ keeps its own optimizer


def test_full_fine_tune_run_with_adamw_and_layer_decay(tmp_path, tiny_run):
    over = tiny_run + ["peft.method=full", "train.optimizer=adamw", "train.lr=1e-3", "train.layer_decay=0.65",
                       "train.weight_decay=0.05", "train.warmup_steps=2", "train.epochs=1"]
    res = Trainer(RunConfig.load(None, over), tmp_path / "ft", quiet=True).run()
    m = json.loads((res.out_dir / "metrics.json").read_text())
    assert 0 <= m["balanced"] <= 1 and m["run"]["steps"] > 0
    built = RunConfig.load(None, over)
    model = build_model(built, 5)
    opt = build_optimizer(layer_decay_groups({n: p for n, p in model.named_parameters() if p.requires_grad},
                                             model, built.train), built.train)
    assert len({g["lr"] for g in opt.param_groups}) == 4  # stem, block 0, block 1 + norm, head
