"""End-to-end training runs at test scale on real bundled data."""

from __future__ import annotations

import json

import pytest
import torch

from metapeft.config import RunConfig
from metapeft.errors import TrainingError
from metapeft.train import Trainer
from metapeft.infer.evaluate import evaluate_checkpoint

KEYS = ("overall", "balanced", "many", "medium", "few")


def run(tmp_path, overrides, name="run"):
    cfg = RunConfig.load(None, overrides)
    return Trainer(cfg, tmp_path / name, quiet=True).run()


@pytest.mark.parametrize("meta", [
    [],
    pytest.param(["meta.enabled=true", "meta.hypergrad=first_order", "meta.interval=2"], marks=pytest.mark.slow),
    pytest.param(["meta.enabled=true", "meta.hypergrad=unrolled", "meta.interval=2", "meta.val_mode=holdout"],
                 marks=pytest.mark.slow),
    pytest.param(["meta.enabled=true", "meta.hypergrad=neumann", "meta.interval=3", "peft.gamma_constraint=softplus"],
                 marks=pytest.mark.slow),
])
def test_run_writes_metrics_and_gamma(tmp_path, tiny_run, meta):
    res = run(tmp_path, tiny_run + meta)
    metrics = json.loads((res.out_dir / "metrics.json").read_text())
    for k in KEYS:
        assert metrics[k] is None or 0.0 <= metrics[k] <= 1.0
    assert 0.0 <= metrics["overall"] <= 1.0 and metrics["run"]["steps"] > 0
    gamma = json.loads((res.out_dir / "gamma.json").read_text())
    assert len(gamma["gamma"]) == 2 * 6  # 2 blocks × 6 LoRA positions
    if meta:
        assert metrics["run"]["meta_steps"] > 0 and len(gamma["trace"]) == metrics["run"]["meta_steps"]
        assert any(abs(v - 1.0) > 1e-6 for v in gamma["gamma"].values()), "γ never moved"
    else:
        assert set(gamma["gamma"].values()) == {1.0}, "plain PEFT must keep γ fixed"
    for f in ("config.yaml", "history.csv", "export/peft.safetensors", "export/merged.safetensors"):
        assert (res.out_dir / f).is_file()


@pytest.mark.slow
def test_same_seed_same_numbers_and_eval_reproduces(tmp_path, tiny_run):
    over = tiny_run + ["meta.enabled=true", "meta.interval=2"]
    a, b = run(tmp_path, over, "a"), run(tmp_path, over, "b")
    ja = json.loads((a.out_dir / "metrics.json").read_text())
    jb = json.loads((b.out_dir / "metrics.json").read_text())
    assert [ja[k] for k in KEYS] == [jb[k] for k in KEYS] and ja["per_class"] == jb["per_class"]
    assert a.gamma == b.gamma
    again = evaluate_checkpoint(a.out_dir).to_dict()
    assert [again[k] for k in KEYS] == [ja[k] for k in KEYS] and again["confusion"] == ja["confusion"]
    c = run(tmp_path, over + ["train.seed=1"], "c")
    assert c.gamma != a.gamma


@pytest.mark.slow
def test_existing_run_dir_is_not_overwritten(tmp_path, tiny_run):
    from metapeft.train import RunDirError

    run(tmp_path, tiny_run + ["train.epochs=1"])
    before = (tmp_path / "run" / "metrics.json").read_text()
    with pytest.raises(RunDirError, match="--resume"):
        run(tmp_path, tiny_run + ["train.epochs=1"])
    assert (tmp_path / "run" / "metrics.json").read_text() == before


@pytest.mark.slow
def test_divergence_is_caught_and_reported(tmp_path, tiny_run):
    """A huge learning rate makes weights non-finite: those steps are rolled back, not continued; once a
    whole epoch is rolled back the run stops (it learned nothing) and the last good checkpoint stays."""
    with pytest.raises(TrainingError, match="every step was skipped.*checkpoint of epoch 1"):
        run(tmp_path, tiny_run + ["train.lr=1e30", "train.optimizer=sgd", "train.momentum=0.0"])
    out = tmp_path / "run"
    assert not (out / "metrics.json").exists() and (out / "checkpoints" / "latest").read_text().strip() == "epoch_0001"
    from safetensors.torch import load_file
    weights = load_file(str(out / "checkpoints" / "epoch_0001" / "trainable.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert json.loads((out / "checkpoints" / "epoch_0001" / "state.json").read_text())["skipped_steps"] > 0
