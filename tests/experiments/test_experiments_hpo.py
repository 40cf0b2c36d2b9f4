"""Optuna baseline: trials on the tiny config, sqlite resume, the validation (never test) objective."""

from __future__ import annotations

import pytest

import csv

from metapeft.cli import main
from metapeft.experiments import hpo
from metapeft.experiments.hpo import TEST_FALLBACK, VAL_KEY, objective_value, trial_cell, trial_dir_name


@pytest.mark.slow
def test_optuna_trials_resume_and_report(tmp_path, tiny_cell, monkeypatch, capsys):
    out = tmp_path / "hpo"
    calls: list[str] = []
    real = hpo.train_in_process
    monkeypatch.setattr(hpo, "train_in_process", lambda cfg, d, q: (calls.append(d.name), real(cfg, d, q)))
    args = ["sweep", "--optuna", "2", "--depth", "2", "--set", *tiny_cell, "--out", str(out), "-q"]
    assert main(args) == 0
    with (out / "optuna_trials.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and (out / "optuna.db").is_file()
    done = [r for r in rows if r["state"] == "COMPLETE"]
    assert done and len(calls) == len(done)
    for r in done:
        assert 0 <= float(r["value"]) <= 1 and float(r["wall_time_s"]) > 0 and r["epochs"] == "1"
        assert r["blocks"] in ("last:1", "last:2") and 2 ** -4 <= float(r["scale"]) <= 2 ** 4
        assert r["objective"] == VAL_KEY
        assert (out / r["run_dir"] / "metrics.json").is_file()
    assert (out / "best_config.yaml").is_file() and "best trial" in capsys.readouterr().out

    assert main(["sweep", "--out", str(out), "-q"]) == 0, "resume from sweep.yaml alone"
    assert len(calls) == len(done), "a finished study must not train again"
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "optuna_history.png").stat().st_size > 1000


def test_objective_is_validation_and_fallback_is_flagged():
    assert objective_value({"val": {"balanced": 0.5}, "balanced": 0.9}) == (0.5, VAL_KEY)
    assert objective_value({"val_balanced": 0.4, "balanced": 0.9}) == (0.4, VAL_KEY)
    value, source = objective_value({"balanced": 0.9})
    assert value == 0.9 and source == TEST_FALLBACK and "TEST" in source


def test_trial_params_map_to_configs_and_stable_dirs():
    params = {**{f"pos_{p}": p in ("q", "mlp1") for p in ("q", "k", "v", "out", "mlp1", "mlp2")},
              "blocks_last": 3, "scale": 0.5}
    assert trial_cell(params) == {"peft.positions": "[q,mlp1]", "peft.blocks": "last:3", "peft.scale": "0.5"}
    name = trial_dir_name(params)
    assert name.startswith("q+mlp1__last-3__s0.5__") and name == trial_dir_name(dict(params))
    assert name != trial_dir_name({**params, "scale": 0.5000001})


def test_optuna_rejects_grid_arguments(tmp_path, capsys):
    assert main(["sweep", "--optuna", "2", "--grid", "peft.rank=1,2", "--out", str(tmp_path)]) == 2
    assert "--optuna searches its own space" in capsys.readouterr().err


def test_optuna_needs_lora(tmp_path, capsys):
    assert main(["sweep", "--optuna", "2", "--set", "peft.method=bitfit", "--out", str(tmp_path)]) == 2
    assert "searches LoRA positions" in capsys.readouterr().err


@pytest.mark.slow
def test_interrupted_trial_is_requeued_into_its_run_dir(tmp_path, tiny_cell):
    import optuna

    out = tmp_path / "hpo"
    out.mkdir()
    params = {**{f"pos_{p}": p == "v" for p in ("q", "k", "v", "out", "mlp1", "mlp2")}, "blocks_last": 1, "scale": 2.0}
    study = optuna.create_study(storage=f"sqlite:///{out / 'optuna.db'}", study_name=hpo.STUDY, direction="maximize")
    study.enqueue_trial(params)
    hpo.suggest(study.ask(), 2)  # a trial left RUNNING, as by a killed process
    spec = hpo.HpoSpec.create(None, hpo.fixed_overrides() + tiny_cell, n_trials=1, depth=2)
    rows = hpo.trial_rows(hpo.run_hpo(spec, out, echo=lambda msg: None))
    assert [r["state"] for r in rows] == ["FAIL", "COMPLETE"]
    assert rows[1]["positions"] == "v" and rows[1]["run_dir"] == f"trials/{trial_dir_name(params)}"


@pytest.mark.slow
def test_startup_trials_reach_the_sampler_and_survive_resume(tmp_path, tiny_cell, monkeypatch):
    import optuna

    seen: list[int] = []
    real = optuna.samplers.TPESampler
    monkeypatch.setattr(optuna.samplers, "TPESampler",
                        lambda **kw: (seen.append(kw.get("n_startup_trials", -1)), real(**kw))[1])
    monkeypatch.setattr(hpo, "train_in_process", lambda cfg, d, q: (_ for _ in ()).throw(RuntimeError("not trained")))
    out = tmp_path / "hpo"
    assert main(["sweep", "--optuna", "1", "--startup-trials", "3", "--depth", "2", "--set", *tiny_cell,
                 "--out", str(out), "-q"]) == 0
    assert main(["sweep", "--out", str(out), "--optuna", "2", "-q"]) == 0, "resume keeps the setting"
    assert [n for n in seen if n != -1] == [3, 3], "(-1: Optuna's own default sampler in create_study)"
    assert hpo.HpoSpec.load(out).startup_trials == 3
    assert main(["sweep", "--optuna", "1", "--startup-trials", "0", "--set", *tiny_cell,
                 "--out", str(tmp_path / "bad"), "-q"]) == 2
