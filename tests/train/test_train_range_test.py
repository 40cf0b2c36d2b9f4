"""``meta.calib_restart``: the LR range test on batches of its own, then the run from θ₀ at the found lr."""

from __future__ import annotations

import json

import pytest

BASE = ["meta.enabled=true", "meta.mode=stepsize", "meta.calib_steps=4", "meta.interval=2",
        "data.max_per_class=12", "train.epochs=2"]
pytestmark = pytest.mark.slow  # a few tiny training runs


def test_a_restarted_run_is_a_plain_run_at_the_lr_its_range_test_found(runs, tiny_run):
    restarted = runs.run(tiny_run + BASE + ["meta.calib_restart=initial", "train.lr=0.3"], "restart")
    rep = runs.read(restarted, "stepsize.json")
    assert rep["calib_restart"] == "initial" and not rep["calibrating"] and rep["lr_cliff"] is not None
    rho = rep["reference_lr"]
    # the same machinery with no range test, told the lr the test found: every number the same
    fixed = runs.run(tiny_run + BASE + ["meta.calibrate=false", f"train.lr={rho!r}"], "fixed")
    assert runs.results(restarted) == runs.results(fixed)
    ha, hb = runs.history(restarted), runs.history(fixed)
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hb]
    assert [r["step"] for r in ha] == [r["step"] for r in hb]   # the test's steps are not the run's
    # Without the restart the test's steps are the run's first: a different run (the check above can fail).
    warmup = runs.run(tiny_run + BASE + ["meta.calib_restart=inline", "train.lr=0.3"], "warmup")
    assert runs.read(warmup, "stepsize.json")["reference_lr"] == rho
    assert [r["train_loss"] for r in runs.history(warmup)] != [r["train_loss"] for r in ha]
    # warm: the same test, the run from the weights it restored, with the whole schedule: a third run
    warm = runs.run(tiny_run + BASE + ["meta.calib_restart=warm", "train.lr=0.3"], "warm")
    assert runs.read(warm, "stepsize.json")["reference_lr"] == rho
    hw = runs.history(warm)
    assert [r["step"] for r in hw] == [r["step"] for r in ha]
    assert hw[0]["train_loss"] not in (ha[0]["train_loss"], runs.history(warmup)[0]["train_loss"])


def test_a_restarted_run_resumes_exactly(runs, tiny_run):
    over = tiny_run + BASE + ["meta.calib_restart=initial", "train.keep_checkpoints=3"]
    full = runs.run(over, "full")
    part = runs.run(over, "part")
    (part.out_dir / "checkpoints" / "latest").write_text("epoch_0001\n")   # as if killed after epoch 1
    (part.out_dir / "metrics.json").unlink()
    runs.run(over, "part", resume=True)   # the range test is not run again
    assert runs.results(full) == runs.results(part)
    assert runs.read(full, "stepsize.json")["calibration"] == runs.read(part, "stepsize.json")["calibration"]


def test_calibrated_gamma_restarts_too_and_gamma_learns_only_in_the_run(runs, tiny_run):
    over = tiny_run + BASE + ["meta.mode=gamma", "meta.calibrate=true", "meta.calib_restart=initial"]
    a = runs.run(over, "gamma")
    rep, gam = runs.read(a, "stepsize.json"), runs.read(a, "gamma.json")
    assert rep["mode"] == "gamma+calibrate" and rep["calib_restart"] == "initial"
    assert any(abs(v - 1) > 1e-6 for v in gam["gamma"].values())
    # γ moves every 2nd of the run's 22 steps: none was spent on the range test
    assert runs.read(a, "metrics.json")["run"]["meta_steps"] == 11


def test_the_look_ahead_uses_the_calibrated_lr_not_train_lr(runs, tmp_path, tiny_run, monkeypatch):
    """hypergrad=unrolled differentiates through φ' = φ − η∇φ: η must be the lr the update uses. The param
    groups hold the scheduler's train.lr-based value between updates, which the look-ahead used to read."""
    from metapeft.meta import MetaLearner

    seen: dict[str, list[float]] = {}
    original = MetaLearner.step

    def record(self, phi, grads, inner_lr, val_batch):
        seen.setdefault(key, []).append(inner_lr)
        return original(self, phi, grads, inner_lr, val_batch)

    monkeypatch.setattr(MetaLearner, "step", record)
    over = tiny_run + BASE + ["meta.mode=gamma", "meta.calibrate=true", "meta.hypergrad=unrolled"]
    for key in ("low", "high"):
        runs.run(over + [f"train.lr={0.001 if key == 'low' else 0.3}"], key)
    assert seen["low"] and seen["low"] == seen["high"]
    rho = json.loads((tmp_path / "low" / "stepsize.json").read_text())["reference_lr"]
    assert max(seen["low"]) <= rho * (1 + 1e-9) and min(seen["low"]) > 0


def test_an_adapter_run_restarts_warm_by_default(runs, tiny_run):
    over = tiny_run + BASE + ["peft.method=adapter", "peft.positions=null"]
    a = runs.run(over, "adapter")
    assert runs.read(a, "stepsize.json")["calib_restart"] == "warm"
    b = runs.run(over + ["meta.calib_restart=warm"], "explicit")
    assert runs.results(a) == runs.results(b)
