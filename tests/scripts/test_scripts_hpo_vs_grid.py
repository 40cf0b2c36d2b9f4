"""scripts/hpo_vs_grid.py: the oracle is the best test cell, Optuna picks by its objective (not test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "hpo_vs_grid.py"


def _run(d: Path, balanced: float, few: float, epochs: int = 3, wall: float = 60.0) -> None:
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"balanced": balanced, "few": few,
                                                "run": {"epochs": epochs, "wall_time_s": wall}}))


def test_fractions_of_oracle_and_optuna_selection(tmp_path):
    _run(tmp_path / "grid/cells/a", 0.20, 0.1)
    _run(tmp_path / "grid/cells/b", 0.60, 0.5)
    _run(tmp_path / "meta/cells/s0", 0.40, 0.3)
    _run(tmp_path / "meta/cells/s1", 0.50, 0.3)
    _run(tmp_path / "meta/cells/lr=2__s0", 0.10, 0.1)                # filtered out by the GLOB below
    study = tmp_path / "study"
    study.mkdir()
    (study / "optuna_trials.csv").write_text(
        "number,state,value,objective,positions,blocks,scale,epochs,wall_time_s,test_balanced,test_few\n"
        "0,COMPLETE,0.9,val_balanced,q,last:2,1.0,1,30,0.30,0.2\n"      # best objective, worse test
        "1,COMPLETE,0.1,val_balanced,v,last:1,2.0,1,30,0.55,0.4\n"
        "2,PRUNED,,,,last:1,2.0,,,,\n")
    out = subprocess.run([sys.executable, str(SCRIPT), "--grid", str(tmp_path / "grid"), "--optuna", str(study),
                          "--method", f"M={tmp_path / 'meta'}:s*"], capture_output=True, text=True, check=True).stdout
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in out.splitlines()[2:]}
    oracle = next(r for k, r in rows.items() if k.startswith("grid oracle"))
    assert oracle[1] == "60.0" and oracle[3:5] == ["2", "6"]
    optuna = next(r for k, r in rows.items() if k.startswith("Optuna"))
    assert "q last:2" in optuna[0] and optuna[1] == "30.0", "picked by objective, not by test accuracy"
    assert optuna[3:5] == ["2", "2"] and optuna[6] == "50.0 %" and optuna[7].strip(" |") == "0.25"
    method = rows["M (2 seeds)"]
    assert method[1] == "45.0 ± 7.1" and method[6] == "75.0 %" and method[7].strip(" |") == "0.62"
