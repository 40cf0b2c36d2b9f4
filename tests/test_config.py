"""RunConfig: YAML ↔ dataclasses, overrides, validation, and every shipped preset."""

from __future__ import annotations

from pathlib import Path

import pytest

from metapeft.config import ConfigError, RunConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_preset_loads_and_round_trips(path):
    cfg = RunConfig.load(path)
    again = RunConfig.from_dict(RunConfig.from_dict(cfg.to_dict()).to_dict())
    assert again == cfg


def test_overrides_are_typed():
    cfg = RunConfig.load(None, ["train.lr=1e-3", "peft.positions=q,v", "peft.blocks=[0, 2]",
                                "data.imbalance_ratio=null", "meta.enabled=true", "peft.positions=q"])
    assert cfg.train.lr == 0.001 and cfg.peft.positions == ["q"] and cfg.peft.blocks == [0, 2]
    assert cfg.data.imbalance_ratio is None and cfg.meta.enabled


@pytest.mark.parametrize("override,needle", [
    ("train.lr=fast", "train.lr"), ("train.epochs=1.5", "train.epochs"), ("nosection.x=1", "section"),
    ("train.nope=1", "unknown key"), ("meta.hypergrad=exact", "meta.hypergrad"), ("data.test_fraction=1.5", "test_fraction"),
    ("train.batch_size=30", None), ("model.head=mlp", "model.head"), ("train.val_holdout=1", "val_holdout"),
    ("train.epochs=-1", "train.epochs"), ("model.head_init=lbfgs", "probe"), ("model.probe_l2=-1", "probe_l2"),
    ("model.probe_loss=focal", "balanced_ce"), ("model.probe_iters=0", "probe_iters"),
    ("train.layer_decay=0", "layer_decay"),
])
def test_bad_values_are_rejected_with_the_key_named(override, needle):
    extra = ["train.grad_accum=4"] if override.startswith("train.batch_size") else []
    with pytest.raises(ConfigError) as err:
        RunConfig.load(None, [override, *extra])
    assert (needle or "grad_accum") in str(err.value)


def test_baseline_fields_default_to_null_and_zero_epochs_is_allowed():
    cfg = RunConfig.load(None, ["train.epochs=0", "model.head_init=probe"])
    assert cfg.train.epochs == 0 and cfg.model.head_init == "probe"
    assert (cfg.model.probe_l2, cfg.model.probe_loss, cfg.model.probe_iters, cfg.train.layer_decay) == (None,) * 4
