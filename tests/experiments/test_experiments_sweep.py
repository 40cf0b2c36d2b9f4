"""Sweeps at test scale on real bundled data: run, skip finished cells, resume a half-finished one,
record failures, refuse a changed base config, and render the Fig. 1(c) report."""

from __future__ import annotations

import csv
import json

import pytest

from metapeft.cli import main
from metapeft.config import ConfigError
from metapeft.experiments import cells as cells_mod
from metapeft.experiments.manifest import check_compatible, write_manifest


@pytest.fixture
def counting_backend(monkeypatch):
    """Counts the cells the sweep actually trains (finished cells must never reach the cell runner)."""
    calls: list[str] = []
    real = cells_mod.train_in_process

    def backend(cfg, run_dir, quiet):
        calls.append(run_dir.name)
        real(cfg, run_dir, quiet)

    monkeypatch.setattr(cells_mod, "train_in_process", backend)
    return calls


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_sweep_runs_skips_resumes_and_reports(tmp_path, tiny_cell, counting_backend, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--set", *tiny_cell, "--grid", "peft.positions=q,mlp1",
            "peft.blocks=[0],[1]", "--out", str(out), "-q"]
    assert main(args) == 0
    assert len(counting_backend) == 4
    rows = _rows(out / "results.csv")
    assert [(r["peft.positions"], r["peft.blocks"]) for r in rows] == [("q", "[0]"), ("q", "[1]"), ("mlp1", "[0]"),
                                                                       ("mlp1", "[1]")]
    assert all(r["status"] == "done" and 0 <= float(r["overall"]) <= 1 and float(r["wall_time_s"]) > 0 for r in rows)
    assert rows[0]["trainable"] != rows[2]["trainable"], "q and mlp1 LoRA have different sizes"
    assert float(rows[0]["gamma_mean"]) == 1.0  # meta off: γ stays at its init
    assert json.loads((out / "results.json").read_text())[0]["cell"] == "peft.positions=q__peft.blocks=[0]"
    assert (out / "cells" / "peft.positions=q__peft.blocks=[0]" / "metrics.json").is_file()

    # re-run, same command: every cell is finished, nothing trains, nothing is rewritten
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/metrics.json")}
    assert main(args) == 0 and len(counting_backend) == 4
    assert {p: p.stat().st_mtime_ns for p in out.glob("cells/*/metrics.json")} == stamps

    # a half-finished cell (checkpoint, no metrics) is resumed by `sweep --out DIR` alone
    half = out / "cells" / "peft.positions=mlp1__peft.blocks=[1]"
    (half / "metrics.json").unlink()
    assert main(["sweep", "--out", str(out), "-q"]) == 0
    assert counting_backend[4:] == [half.name] and (half / "metrics.json").is_file()
    assert "1 run, 3 already done" in capsys.readouterr().out

    # Fig. 1(c) report: one heatmap per metric, referenced from report.md
    assert main(["report", str(out)]) == 0
    report = (out / "report" / "report.md").read_text()
    for metric in ("overall", "many", "medium", "few"):
        png = out / "report" / f"fig1c_{metric}.png"
        assert png.stat().st_size > 1000 and f"]({png.name})" in report
    assert "Results (mean ± std over seeds)" in report and "peft.positions" in report


def test_failed_cell_is_recorded_and_others_continue(tmp_path, tiny_cell, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "--set", *tiny_cell, "--grid", "peft.blocks=[7]", "--out", str(out), "-q"])
    assert code == 1
    assert "1 failed" in capsys.readouterr().out
    [row] = _rows(out / "results.csv")
    assert row["status"] == "failed" and row["overall"] == ""
    assert "block 7" in (out / "cells" / "peft.blocks=[7]" / "error.txt").read_text()


def test_bad_grid_fails_before_training(tmp_path, tiny_run, capsys, counting_backend):
    code = main(["sweep", "--set", *tiny_run, "--grid", "peft.rank=1,x", "--out", str(tmp_path / "s")])
    assert code == 2 and "peft.rank" in capsys.readouterr().err and counting_backend == []
    assert main(["sweep", "--out", str(tmp_path / "empty")]) == 2
    assert "nothing to sweep" in capsys.readouterr().err


def test_changed_base_config_is_refused(tmp_path):
    write_manifest(tmp_path, {"kind": "grid", "grid": {}, "base": {"train": {"lr": 0.01}}})
    check_compatible(tmp_path, "grid", {"train": {"lr": 0.01}})
    with pytest.raises(ConfigError, match=r"train\.lr: 0\.01 → 0\.1"):
        check_compatible(tmp_path, "grid", {"train": {"lr": 0.1}})
    with pytest.raises(ConfigError, match="holds a grid sweep"):
        check_compatible(tmp_path, "optuna", {"train": {"lr": 0.01}})
    # a config field added later with default None (e.g. peft.gamma_max) keeps old sweeps resumable
    check_compatible(tmp_path, "grid", {"train": {"lr": 0.01, "new_field": None}})
    with pytest.raises(ConfigError, match=r"train\.new_field: None → 3"):
        check_compatible(tmp_path, "grid", {"train": {"lr": 0.01, "new_field": 3}})
