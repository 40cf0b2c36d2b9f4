"""scripts/robustness.py: the reference is picked on the hold-out (not test); paired per-seed gaps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "robustness.py"


def _run(d: Path, lr: float, alpha: float, seed: int, bal: float, few: float, val: float | None = None) -> None:
    d.mkdir(parents=True)
    cfg = {"peft": {"rank": 4, "alpha": alpha}, "train": {"lr": lr, "seed": seed, "head_lr_mult": 1.0}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    m = {"balanced": bal, "few": few, "run": {"wall_time_s": 60.0}}
    if val is not None:
        m["val"] = {"balanced": val}
    (d / "metrics.json").write_text(json.dumps(m))


def test_holdout_pick_reference_and_paired_gaps(tmp_path):
    _run(tmp_path / "sel/cells/a", 0.01, 4, 0, 0.90, 0.8, val=0.50)   # best on test, worse on hold-out
    _run(tmp_path / "sel/cells/b", 0.03, 4, 0, 0.60, 0.5, val=0.70)
    for s, (b, f) in enumerate([(0.60, 0.50), (0.62, 0.52)]):
        _run(tmp_path / f"ref/cells/s{s}", 0.03, 4, s, b, f)
        _run(tmp_path / f"meta/cells/lr0.1_s{s}", 0.1, 16, s, b - 0.01 * (s + 1), f + 0.02)
    out = subprocess.run([sys.executable, str(SCRIPT), "--select", str(tmp_path / "sel"), "--reference",
                          str(tmp_path / "ref"), "--method", f"M={tmp_path / 'meta'}", "--plot",
                          str(tmp_path / "p.png")], capture_output=True, text=True, check=True).stdout
    assert "hold-out pick: lr 0.03, α/r 1" in out
    assert "picked on TEST: lr 0.01" in out
    row = next(line for line in out.splitlines() if line.startswith("| M |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["0.1", "4", "2"]
    assert cells[6] == "-1.5 (-1.0 / -2.0)" and cells[7] == "+2.0 (+2.0 / +2.0)"
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_a_repeated_label_pools_its_dirs_and_a_null_head_lr_mult_reads_as_1(tmp_path):
    _run(tmp_path / "lr/cells/a", 0.1, 4, 0, 0.5, 0.4)
    _run(tmp_path / "scale/cells/b", 0.01, 16, 0, 0.6, 0.5)
    cfg = yaml.safe_load((tmp_path / "scale/cells/b/config.yaml").read_text())
    cfg["train"]["head_lr_mult"] = None
    (tmp_path / "scale/cells/b/config.yaml").write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, str(SCRIPT), "--method", f"M={tmp_path / 'lr'}", "--method",
                          f"M={tmp_path / 'scale'}"], capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| M |")]
    assert [r.split("|")[2].strip() for r in rows] == ["0.01", "0.1"]
