"""`metapeft sweep --backend ray`: cells run as Ray Tune trials on a private 127.0.0.1 instance and
give exactly the numbers the local backend gives (same code path per cell, one thread each)."""

from __future__ import annotations

import csv
import json

import pytest

from metapeft.cli import main

METRICS = ("overall", "balanced", "many", "medium", "few")


def _metrics(out):
    return {p.parent.name: {k: json.loads(p.read_text())[k] for k in METRICS}
            for p in sorted(out.glob("cells/*/metrics.json"))}


@pytest.mark.slow
def test_ray_scheduler_matches_local_and_records_failures(tmp_path, tiny_cell, capsys):
    grid = ["--grid", "peft.blocks=[0],[7]", "peft.positions=q,mlp1"]
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    assert main(["sweep", "--set", *tiny_cell, *grid, "--out", str(local), "-q"]) == 1  # block 7: no such block
    code = main(["sweep", "--set", *tiny_cell, *grid, "--out", str(ray_out), "-q", "--backend", "ray",
                 "--ray-cpus-per-trial", "1", "--ray-max-concurrent", "2"])
    assert code == 1
    assert "4 cells: 2 run, 0 already done, 2 failed" in capsys.readouterr().out

    ran = _metrics(ray_out)
    assert len(ran) == 2 and ran == _metrics(local)  # bit-identical to the in-process runs
    with (ray_out / "results.csv").open(newline="") as f:
        status = {r["cell"]: r["status"] for r in csv.DictReader(f)}
    assert sorted(status.values()) == ["done"] * 2 + ["failed"] * 2
    assert "block 7" in (ray_out / "cells" / "peft.blocks=[7]__peft.positions=q" / "error.txt").read_text()

    # cells finished by Ray are skipped on re-run by the local backend (only the failed ones retry)
    stamps = {p: p.stat().st_mtime_ns for p in ray_out.glob("cells/*/metrics.json")}
    main(["sweep", "--out", str(ray_out), "-q"])
    assert "0 run, 2 already done, 2 failed" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in ray_out.glob("cells/*/metrics.json")} == stamps


@pytest.mark.parametrize("flag, value, message", [
    ("--ray-cpus-per-trial", "0", "--ray-cpus-per-trial must be >= 1"),
    ("--ray-max-concurrent", "0", "--ray-max-concurrent must be >= 1"),
])
def test_ray_scheduler_rejects_bad_options(tmp_path, tiny_cell, capsys, flag, value, message):
    code = main(["sweep", "--set", *tiny_cell, "--grid", "peft.blocks=[0]", "--out", str(tmp_path / "s"), "-q",
                 "--backend", "ray", flag, value])
    assert code == 2 and message in capsys.readouterr().err


def test_optuna_refuses_the_ray_scheduler(tmp_path, tiny_cell, capsys):
    code = main(["sweep", "--set", *tiny_cell, "--optuna", "2", "--out", str(tmp_path / "h"), "--backend", "ray"])
    assert code == 2 and "use --backend local" in capsys.readouterr().err
