"""``meta.mode=gamma`` with ``meta.calibrate=true``: the LR range test and its guard, then the paper's γ."""

from __future__ import annotations

import json

import pytest

from metapeft.config import RunConfig
from metapeft.train import Trainer

CALIBRATED = ["meta.enabled=true", "meta.mode=gamma", "meta.calibrate=true", "meta.calib_steps=4",
              "meta.interval=2", "data.max_per_class=12", "train.epochs=2"]
pytestmark = pytest.mark.slow  # a few tiny training runs
KEYS = ("overall", "balanced", "many", "medium", "few", "per_class")


def run(tmp_path, overrides, name, resume=False):
    return Trainer(RunConfig.load(None, overrides), tmp_path / name, resume=resume, quiet=True).run()


def read(run_, name):
    return json.loads((run_.out_dir / name).read_text())


def test_calibrated_gamma_sets_the_lr_then_learns_gamma_after_the_range_test(tmp_path, tiny_run):
    a = run(tmp_path, tiny_run + CALIBRATED + ["train.lr=0.001"], "a")
    b = run(tmp_path, tiny_run + CALIBRATED + ["train.lr=0.3"], "b")
    rep, gam = read(a, "stepsize.json"), read(a, "gamma.json")
    assert rep["mode"] == "gamma+calibrate" and rep["lr_cliff"] is not None and not rep["calibrating"]
    assert rep["reference_lr"] == pytest.approx(rep["lr_cliff"] / rep["calib_safety"])
    assert set(rep["multipliers"].values()) == {1.0}          # no split: one lr for every group
    moved = [abs(v - 1) > 1e-6 for v in gam["gamma"].values()]
    assert any(moved)                                           # the paper's γ did learn
    end = rep["calibration"][-1]["step"]                         # the step that ended the range test
    assert gam["trace"] and min(t["step"] for t in gam["trace"]) >= 1
    assert read(a, "metrics.json")["run"]["meta_steps"] == len(gam["trace"])
    meta_steps_at = [2 * i for i in range(1, 12)]                 # interval 2 over 22 steps, none while calibrating
    assert read(a, "metrics.json")["run"]["meta_steps"] < len([s for s in meta_steps_at if s <= 22])
    assert end >= 2
    # train.lr is not used: two very different starts give the same run
    assert [read(a, "metrics.json")[k] for k in KEYS] == [read(b, "metrics.json")[k] for k in KEYS]


def test_calibrated_gamma_resumes_exactly_and_refuses_the_paper_mode(tmp_path, tiny_run):
    from metapeft.train.checkpoint import CheckpointError

    over = tiny_run + CALIBRATED + ["train.keep_checkpoints=3"]
    full = run(tmp_path, over, "full")
    part = run(tmp_path, over, "part")
    (part.out_dir / "checkpoints" / "latest").write_text("epoch_0001\n")   # as if killed after epoch 1
    (part.out_dir / "metrics.json").unlink()
    # As after a change of meta.calibrate's default: the config says paper mode, the checkpoint holds both states
    cfg_path = part.out_dir / "config.yaml"
    text = cfg_path.read_text()
    cfg_path.write_text(text.replace("calibrate: true", "calibrate: false"))
    paper = [o for o in over if not o.startswith("meta.calibrate")] + ["meta.calibrate=false"]
    with pytest.raises(CheckpointError, match="meta.calibrate=true"):
        run(tmp_path, paper, "part", resume=True)
    cfg_path.write_text(text)
    run(tmp_path, over, "part", resume=True)
    assert [read(full, "metrics.json")[k] for k in KEYS] == [read(part, "metrics.json")[k] for k in KEYS]
    assert read(full, "gamma.json")["gamma"] == read(part, "gamma.json")["gamma"]


def test_calibrate_false_is_the_paper_at_train_lr_and_null_is_calibrated(tmp_path, tiny_run):
    base = [o for o in CALIBRATED if not o.startswith("meta.calibrate")]
    paper = run(tmp_path, tiny_run + base + ["meta.calibrate=false"], "paper")
    assert not (paper.out_dir / "stepsize.json").exists()
    assert read(paper, "metrics.json")["run"]["meta_steps"] == 11   # every 2nd of 22 steps
    default = run(tmp_path, tiny_run + base, "default")              # meta.calibrate null: the library default
    assert read(default, "stepsize.json")["mode"] == "gamma+calibrate"


def test_a_run_too_short_for_the_range_test_is_the_paper_mode_and_says_so(tmp_path, tiny_run, capsys):
    over = tiny_run + ["meta.enabled=true", "meta.mode=gamma", "data.max_per_class=12", "train.epochs=1"]
    a = Trainer(RunConfig.load(None, over), tmp_path / "short", quiet=False).run()
    assert not (a.out_dir / "stepsize.json").exists() and read(a, "metrics.json")["run"]["meta_steps"] > 0
    assert "too few for the LR range test; γ learns at train.lr" in capsys.readouterr().err
