"""``meta.mode=gamma`` with ``meta.calibrate=true``: the LR range test and its guard, then the paper's γ."""

from __future__ import annotations

import pytest

from metapeft.config import RunConfig
from metapeft.train import Trainer

CALIBRATED = ["meta.enabled=true", "meta.mode=gamma", "meta.calibrate=true", "meta.calib_steps=4",
              "meta.interval=2", "data.max_per_class=12", "train.epochs=2"]
pytestmark = pytest.mark.slow  # a few tiny training runs


def test_calibrated_gamma_sets_the_lr_then_learns_gamma_after_the_range_test(runs, tiny_run):
    a = runs.run(tiny_run + CALIBRATED + ["train.lr=0.001"], "a")
    b = runs.run(tiny_run + CALIBRATED + ["train.lr=0.3"], "b")
    rep, gam = runs.read(a, "stepsize.json"), runs.read(a, "gamma.json")
    assert rep["mode"] == "gamma+calibrate" and rep["lr_cliff"] is not None and not rep["calibrating"]
    assert rep["reference_lr"] == pytest.approx(rep["lr_cliff"] / rep["calib_safety"])
    assert set(rep["multipliers"].values()) == {1.0}          # no split: one lr for every group
    moved = [abs(v - 1) > 1e-6 for v in gam["gamma"].values()]
    assert any(moved)                                           # the paper's γ did learn
    end = rep["calibration"][-1]["step"]                         # the step that ended the range test
    assert gam["trace"] and min(t["step"] for t in gam["trace"]) >= 1
    assert runs.read(a, "metrics.json")["run"]["meta_steps"] == len(gam["trace"])
    meta_steps_at = [2 * i for i in range(1, 12)]                 # interval 2 over 22 steps, none while calibrating
    assert runs.read(a, "metrics.json")["run"]["meta_steps"] < len([s for s in meta_steps_at if s <= 22])
    assert end >= 2
    # train.lr is not used: two very different starts give the same run
    assert runs.results(a) == runs.results(b)


def test_calibrated_gamma_resumes_exactly_and_refuses_the_paper_mode(runs, tiny_run):
    from metapeft.train.checkpoint import CheckpointError

    over = tiny_run + CALIBRATED + ["train.keep_checkpoints=3"]
    full = runs.run(over, "full")
    part = runs.run(over, "part")
    (part.out_dir / "checkpoints" / "latest").write_text("epoch_0001\n")   # as if killed after epoch 1
    (part.out_dir / "metrics.json").unlink()
    # As after a change of meta.calibrate's default: the config says paper mode, the checkpoint holds both states
    cfg_path = part.out_dir / "config.yaml"
    text = cfg_path.read_text()
    cfg_path.write_text(text.replace("calibrate: true", "calibrate: false"))
    paper = [o for o in over if not o.startswith("meta.calibrate")] + ["meta.calibrate=false"]
    with pytest.raises(CheckpointError, match="meta.calibrate=true"):
        runs.run(paper, "part", resume=True)
    cfg_path.write_text(text)
    runs.run(over, "part", resume=True)
    assert runs.results(full) == runs.results(part)
    assert runs.read(full, "gamma.json")["gamma"] == runs.read(part, "gamma.json")["gamma"]


def test_calibrate_false_is_the_paper_at_train_lr_and_null_is_calibrated(runs, tiny_run):
    base = [o for o in CALIBRATED if not o.startswith("meta.calibrate")]
    paper = runs.run(tiny_run + base + ["meta.calibrate=false"], "paper")
    assert not (paper.out_dir / "stepsize.json").exists()
    assert runs.read(paper, "metrics.json")["run"]["meta_steps"] == 11   # every 2nd of 22 steps
    default = runs.run(tiny_run + base, "default")              # meta.calibrate null: the library default
    assert runs.read(default, "stepsize.json")["mode"] == "gamma+calibrate"


def test_a_run_too_short_for_the_range_test_is_the_paper_mode_and_says_so(runs, tmp_path, tiny_run, capsys):
    over = tiny_run + ["meta.enabled=true", "meta.mode=gamma", "data.max_per_class=12", "train.epochs=1"]
    a = Trainer(RunConfig.load(None, over), tmp_path / "short", quiet=False).run()
    assert not (a.out_dir / "stepsize.json").exists() and runs.read(a, "metrics.json")["run"]["meta_steps"] > 0
    assert "too few for the LR range test; γ learns at train.lr" in capsys.readouterr().err
