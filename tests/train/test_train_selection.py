"""Best-by-validation model selection with train.val_holdout (issue 13, item 7)."""

from __future__ import annotations

import csv
import json

from metapeft.config import RunConfig
from metapeft.train import Trainer


def _run(tmp_path, tiny_run, extra, name="run"):
    cfg = RunConfig.load(None, tiny_run + ["train.epochs=3", "train.threads=1", "train.lr=0.05", *extra])
    out = Trainer(cfg, tmp_path / name, quiet=True).run().out_dir
    with (out / "history.csv").open(newline="") as f:
        return json.loads((out / "metrics.json").read_text()), list(csv.DictReader(f))


def test_best_validation_epoch_is_the_tested_model(tmp_path, tiny_run):
    metrics, history = _run(tmp_path, tiny_run, ["train.val_holdout=0.3", "train.eval_every=1"])
    val = [float(r["val_balanced"]) for r in history]
    best = val.index(max(val)) + 1
    sel = metrics["model_selection"]
    assert sel["model"] == "best_val" and sel["epoch"] == best and sel["metric"] == "val_balanced"
    assert metrics["val"]["balanced"] == max(val)          # the restored weights are that epoch's
    assert "balanced" not in history[0]                     # eval_every looked at validation, not test


def test_test_in_loop_only_when_asked_and_last_without_holdout(tmp_path, tiny_run):
    _, history = _run(tmp_path, tiny_run, ["train.val_holdout=0.3", "train.eval_every=1", "train.eval_split=test"])
    assert history[0]["balanced"] != "" and history[0]["val_balanced"] != ""
    metrics, history = _run(tmp_path, tiny_run, ["train.eval_every=1"], name="plain")
    assert metrics["model_selection"]["model"] == "last" and "val_balanced" not in history[0]
    assert history[0]["balanced"] != ""
