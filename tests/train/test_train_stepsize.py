"""``meta.mode=stepsize`` inside real (tiny) training runs: reports, independence from train.lr, resume."""

from __future__ import annotations

import json

import pytest

from metapeft.config import RunConfig
from metapeft.train import Trainer

STEPSIZE = ["meta.enabled=true", "meta.mode=stepsize", "meta.calib_steps=4", "meta.interval=2",
            "meta.learn_split=true",  # the whole machinery (range test, split, guard); the default has no split
            "data.max_per_class=12", "train.epochs=2"]
pytestmark = pytest.mark.slow  # five tiny training runs


def test_stepsize_run_reports_calibration_and_does_not_depend_on_train_lr(runs, tiny_run):
    a = runs.run(tiny_run + STEPSIZE + ["train.lr=0.001"], "a")
    b = runs.run(tiny_run + STEPSIZE + ["train.lr=0.3"], "b")
    rep = json.loads((a.out_dir / "stepsize.json").read_text())
    assert rep["mode"] == "stepsize" and set(rep["multipliers"]) == {"head", "in", "out"}
    assert len(rep["calibration"]) >= 3 and rep["reference_lr"] > 0
    assert runs.read(a, "metrics.json")["run"]["stepsize"]["reference_lr"] == rep["reference_lr"]
    # The range test replaces the starting lr: two very different train.lr give the same run.
    assert runs.results(a) == runs.results(b)
    plain = runs.run(tiny_run + ["data.max_per_class=12", "train.epochs=2", "train.lr=0.3"], "plain")
    assert runs.results(plain) != runs.results(b)   # the comparison above can fail


def test_the_default_stepsize_run_is_the_range_test_alone(runs, tiny_run):
    """meta.learn_split null = false: the same range test as with the split, then every group keeps ρ."""
    default = [o for o in STEPSIZE if not o.startswith("meta.learn_split")]
    a = runs.run(tiny_run + default, "default")
    b = runs.run(tiny_run + STEPSIZE, "split")
    ra, rb = (json.loads((r.out_dir / "stepsize.json").read_text()) for r in (a, b))
    assert ra["lr_cliff"] == rb["lr_cliff"] and ra["reference_lr"] == rb["reference_lr"]
    assert set(ra["multipliers"].values()) == {1.0} and ra["trace"] == []
    # history.csv's lr is the one the run used (ρ × the cosine factor, 0.5 after epoch 1 of 2), not train.lr's
    first = (a.out_dir / "history.csv").read_text().splitlines()[1].split(",")
    cols = (a.out_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert float(first[cols.index("lr")]) == pytest.approx(0.5 * ra["reference_lr"], rel=1e-6)
    assert rb["trace"] and set(rb["multipliers"].values()) != {1.0}  # the split did move: the check can fail


def test_stepsize_resume_from_an_epoch_checkpoint_matches_the_uninterrupted_run(runs, tiny_run):
    over = tiny_run + STEPSIZE + ["train.keep_checkpoints=3"]
    full = runs.run(over, "full")
    part = runs.run(over, "part")
    ckpts = part.out_dir / "checkpoints"
    (ckpts / "latest").write_text("epoch_0001\n")   # as if killed after epoch 1
    (part.out_dir / "metrics.json").unlink()
    runs.run(over, "part", resume=True)
    assert runs.results(full) == runs.results(part)
    ra = json.loads((full.out_dir / "stepsize.json").read_text())
    rb = json.loads((part.out_dir / "stepsize.json").read_text())
    assert ra["multipliers"] == rb["multipliers"] and ra["trace"] == rb["trace"]


def test_resuming_a_run_of_the_other_meta_mode_names_meta_mode(runs, tiny_run):
    """A run dir whose checkpoint holds γ state, resumed as stepsize (as after a default change), is refused
    with the setting to use, and the dir is left as it was."""
    from metapeft.train.checkpoint import CheckpointError

    gamma = tiny_run + ["meta.enabled=true", "meta.mode=gamma", "data.max_per_class=12", "train.epochs=2"]
    done = runs.run(gamma, "g")
    (done.out_dir / "metrics.json").unlink()
    cfg_path = done.out_dir / "config.yaml"
    cfg_path.write_text(cfg_path.read_text().replace("mode: gamma", "mode: stepsize"))
    before = sorted(p.name for p in done.out_dir.rglob("*"))
    with pytest.raises(CheckpointError, match="meta.mode=gamma"):
        runs.run(tiny_run + STEPSIZE[:2] + ["data.max_per_class=12", "train.epochs=2"], "g", resume=True)
    assert sorted(p.name for p in done.out_dir.rglob("*")) == before


def test_a_null_calib_safety_follows_the_run_length(runs, tiny_run):
    """The trainer hands train.epochs to the rule: 10 epochs are cliff ÷ 8."""
    over = [o for o in STEPSIZE if not o.startswith("train.epochs")] + ["train.epochs=10", "data.max_per_class=4"]
    a = runs.run(tiny_run + over, "rule")
    rep = json.loads((a.out_dir / "stepsize.json").read_text())
    assert rep["calib_safety"] == pytest.approx(8.0)
    assert rep["reference_lr"] == pytest.approx(rep["lr_cliff"] / rep["calib_safety"])
    fixed = runs.run(tiny_run + over + ["meta.calib_safety=4"], "fixed")
    assert json.loads((fixed.out_dir / "stepsize.json").read_text())["calib_safety"] == 4


def test_a_run_too_short_for_the_range_test_trains_at_train_lr(tmp_path, tiny_run, capsys):
    """11 steps and a 20-step range test: before, the run ended mid-ramp; now the test is off and train.lr is used."""
    over = tiny_run + ["meta.enabled=true", "meta.mode=stepsize", "data.max_per_class=12", "train.epochs=1",
                       "train.lr=0.02"]
    a = Trainer(RunConfig.load(None, over), tmp_path / "short", quiet=False).run()
    rep = json.loads((a.out_dir / "stepsize.json").read_text())
    assert json.loads((a.out_dir / "metrics.json").read_text())["run"]["steps"] < 60
    assert not rep["calibrating"] and rep["lr_cliff"] is None and rep["reference_lr"] == 0.02
    assert "too few for the 20-step LR range test; it is off" in capsys.readouterr().err
