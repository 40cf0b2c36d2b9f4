"""bench/gpu_check.py --smoke runs on a CPU, so the GPU check cannot rot between GPU sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_variant_and_precision(tmp_path):
    out = tmp_path / "rows.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--device", "cpu", "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    got = {(r["lib"], r["variant"], r["precision"]) for r in rows}
    want = {("metapeft", v, p) for v in ("plain", "first_order", "unrolled") for p in ("fp32", "bf16", "fp16")}
    assert want | {("peft", "plain", p) for p in ("fp32", "bf16", "fp16")} == got
    assert all(r["ips"] > 0 and r["skipped"] == 0 for r in rows)  # no step or meta step skipped in any precision
    assert "| fp16 | unrolled |" in proc.stdout and "metapeft plain ÷ HF peft" in proc.stdout
