"""Run-directory integrity under faults: kill -9 inside a checkpoint write and inside the export, then
--resume gives the uninterrupted run's numbers; two concurrent trains; the lock and its stale takeover."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from metapeft.cli import main
from metapeft.errors import RunDirError
from metapeft.train.rundir import RunLock, remove_orphans


EXTRA = ["train.threads=1", "meta.enabled=true", "meta.interval=2"]
KEYS = ("overall", "balanced", "many", "medium", "few", "per_class")
# Runs the CLI with safetensors' save_file wrapped so the process SIGKILLs itself right after writing
# the named temp file: a real kill -9 at a chosen moment (inside the write, before its rename).
KILLER = """
import os, signal, sys
import safetensors.torch as st
import metapeft.train.checkpoint as ck
marker, real = sys.argv[1], st.save_file
def save_file(tensors, path, metadata=None):
    real(tensors, path, metadata=metadata)
    if marker in str(path):
        os.kill(os.getpid(), signal.SIGKILL)
ck.save_file = st.save_file = save_file  # checkpoints, and metapeft.atomic (imports it at call time)
from metapeft.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture
def train_argv(tiny_run):
    def argv(out, *flags):
        return ["train", "-q", "--out", str(out), *flags, "--set", *tiny_run, *EXTRA]
    return argv


def history(run):
    with (run / "history.csv").open() as f:
        return [(r["epoch"], r["step"], r["train_loss"], r["lr"]) for r in csv.DictReader(f)]


def assert_same_run(a, b):
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    assert [ma[k] for k in KEYS] == [mb[k] for k in KEYS]
    ga, gb = (json.loads((r / "gamma.json").read_text()) for r in (a, b))
    assert ga["gamma"] == gb["gamma"] and ga["trace"] == gb["trace"]
    assert history(a) == history(b)
    assert (a / "export" / "peft.safetensors").read_bytes() == (b / "export" / "peft.safetensors").read_bytes()


@pytest.mark.slow  # subprocess training runs
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, train_argv):
    full = tmp_path / "full"
    assert main(train_argv(full)) == 0
    for marker, left in [(".epoch_0002.", "checkpoints/.epoch_0002.*"),          # inside a checkpoint write
                         (".merged.safetensors.", "export/.merged.safetensors.*")]:  # inside the export
        out = tmp_path / marker.strip(".")
        killed = subprocess.run([sys.executable, "-c", KILLER, marker, *train_argv(out)], capture_output=True,
                                text=True, timeout=600)
        assert killed.returncode == -9, killed.stderr
        assert list(out.glob(left)), "the kill happened inside the write"
        assert not (out / "metrics.json").exists(), "metrics.json is written last: absent means incomplete"
        assert main(train_argv(out, "--resume")) == 0
        assert not list(out.glob(left)) and not (out / "run.lock").exists()
        assert_same_run(full, out)


@pytest.mark.slow  # subprocess training runs
def test_two_concurrent_trains_one_is_refused(tmp_path, train_argv):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "metapeft", *train_argv(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.wait(timeout=600), p.stderr.read()) for p in procs)
    (ok, _), (refused, err) = results
    assert (ok, refused) == (0, 2), results
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and ("in use by another metapeft process" in lines[0] or "already holds a run" in lines[0])
    assert "Traceback" not in err
    assert [h[0] for h in history(out)] == ["1", "2"], "one writer: no interleaved rows"


def test_lock_refuses_a_second_holder_and_takes_over_a_stale_one(tmp_path):
    out = tmp_path / "run"
    with RunLock(out) as first:
        assert (out / "run.lock").read_text().strip() == str(os.getpid()) and first.taken_over is None
        with pytest.raises(RunDirError, match=rf"in use by another metapeft process \(pid {os.getpid()}"):
            RunLock(out).__enter__()
    assert not out.exists(), "a lock that created the directory removes it again when nothing was written"
    out.mkdir()
    (out / "run.lock").write_text("999999999\n")      # left by a killed run: nobody holds the flock
    with RunLock(out) as again:
        assert again.taken_over == "999999999"
    assert out.is_dir() and not (out / "run.lock").exists()


def test_orphans_are_only_our_temp_files(tmp_path):
    (tmp_path / "checkpoints" / ".epoch_0003.abc").mkdir(parents=True)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / ".peft.safetensors.x1").write_bytes(b"half")
    (tmp_path / ".config.yaml.k2").write_text("half")
    (tmp_path / ".gitignore").write_text("*\n")      # not ours: kept
    assert len(remove_orphans(tmp_path)) == 3 and (tmp_path / ".gitignore").exists()
