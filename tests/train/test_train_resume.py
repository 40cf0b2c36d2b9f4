"""Kill a training subprocess mid-run, resume it, and reach the uninterrupted run's numbers."""

from __future__ import annotations

import pytest

import json
import os
import signal
import subprocess
import sys
import time

KEYS = ("overall", "balanced", "many", "medium", "few", "per_class")


def train_cmd(out, overrides, resume=False):
    cmd = [sys.executable, "-m", "metapeft", "train", "-q", "--out", str(out), "--set", *overrides]
    return cmd + (["--resume"] if resume else [])


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted(tmp_path, tiny_run):
    over = tiny_run + ["train.epochs=4", "meta.enabled=true", "meta.interval=2", "data.max_per_class=12"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    full = subprocess.run(train_cmd(tmp_path / "full", over), env=env, capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr

    proc = subprocess.Popen(train_cmd(tmp_path / "killed", over), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    latest = tmp_path / "killed" / "checkpoints" / "latest"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "epoch_0002":
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    # Without --resume the half-finished run is protected.
    again = subprocess.run(train_cmd(tmp_path / "killed", over), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "--resume" in again.stderr

    resumed = subprocess.run(train_cmd(tmp_path / "killed", over, resume=True), env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert [a[k] for k in KEYS] == [b[k] for k in KEYS]
    ga = json.loads((tmp_path / "full" / "gamma.json").read_text())
    gb = json.loads((tmp_path / "killed" / "gamma.json").read_text())
    assert ga["gamma"] == gb["gamma"] and ga["trace"] == gb["trace"]
    ha = (tmp_path / "full" / "history.csv").read_text().splitlines()
    hb = (tmp_path / "killed" / "history.csv").read_text().splitlines()
    assert [r.split(",")[:4] for r in ha] == [r.split(",")[:4] for r in hb]
