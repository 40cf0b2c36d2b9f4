"""torchrun DDP on CPU (2 gloo processes) equals the single-process run with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file


def train(tmp_path, name, overrides, nproc=1):
    out = tmp_path / name
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    cmd = launcher + ["-m", "metapeft", "train", "-q", "--out", str(out), "--set", *overrides, "train.threads=1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("extra", [
    ["data.augment=true"],
    ["meta.enabled=true", "meta.hypergrad=first_order", "meta.outer_loss=ce", "meta.interval=2"],
])
@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path, tiny_run, extra):
    over = tiny_run + extra
    single = train(tmp_path, "single", over)
    ddp = train(tmp_path, "ddp", over, nproc=2)
    a = json.loads((single / "metrics.json").read_text())
    b = json.loads((ddp / "metrics.json").read_text())
    assert b["run"]["world_size"] == 2 and a["run"]["steps"] == b["run"]["steps"]
    wa = load_file(str(single / "export" / "peft.safetensors"))
    wb = load_file(str(ddp / "export" / "peft.safetensors"))
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-4, rtol=1e-3), k
    assert abs(a["overall"] - b["overall"]) <= 0.02
    assert sum(sum(r) for r in b["confusion"]) == sum(sum(r) for r in a["confusion"])  # all test images, once
