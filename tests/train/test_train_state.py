"""TrainState (state.json) and resuming from a checkpoint written in the older layout (with rng.pt)."""

from __future__ import annotations

import pytest

import json
import shutil

import torch

from metapeft.config import RunConfig
from metapeft.train import Trainer
from metapeft.train.state import TrainState

OLD_KEYS = ["epoch", "step", "skipped_steps", "history", "scheduler"]  # what state.json always held


def test_state_json_keeps_the_old_layout_and_round_trips():
    old = {"epoch": 2, "step": 14, "skipped_steps": 1, "history": [{"epoch": 1, "step": 7}, {"epoch": 2, "step": 14}],
           "scheduler": {"last_epoch": 14, "base_lrs": [0.01]}}
    state = TrainState.from_dict(json.loads(json.dumps(old)))
    assert (state.epoch, state.step, state.skipped_steps) == (2, 14, 1)
    assert list(state.to_dict()) == OLD_KEYS and state.to_dict() == old
    assert list(TrainState().to_dict()) == OLD_KEYS[:-1]  # no scheduler before the first epoch ends


@pytest.mark.slow
def test_resume_from_an_old_layout_checkpoint_matches_the_full_run(tmp_path, tiny_run):
    over = tiny_run + ["meta.enabled=true", "meta.interval=2", "train.keep_checkpoints=2"]
    full = Trainer(RunConfig.load(None, over), tmp_path / "full", quiet=True).run()
    ckpts = full.out_dir / "checkpoints"
    saved = json.loads((ckpts / "epoch_0001" / "state.json").read_text())
    assert list(saved) == OLD_KEYS
    # Rewind a copy to the epoch-1 checkpoint and give it the rng.pt older versions wrote (now ignored).
    old = tmp_path / "old"
    shutil.copytree(full.out_dir, old)
    for p in ("metrics.json", "gamma.json"):
        (old / p).unlink()
    shutil.rmtree(old / "export")
    shutil.rmtree(old / "checkpoints" / "epoch_0002")
    (old / "checkpoints" / "latest").write_text("epoch_0001\n")
    torch.manual_seed(12345)
    torch.save({"torch": torch.get_rng_state()}, old / "checkpoints" / "epoch_0001" / "rng.pt")
    resumed = Trainer(RunConfig.load(None, over), old, resume=True, quiet=True).run()
    a = json.loads((full.out_dir / "metrics.json").read_text())
    b = json.loads((resumed.out_dir / "metrics.json").read_text())
    assert a["per_class"] == b["per_class"] and a["confusion"] == b["confusion"]
    assert a["run"]["steps"] == b["run"]["steps"] and a["run"]["meta_steps"] == b["run"]["meta_steps"]
    assert json.loads((full.out_dir / "gamma.json").read_text())["trace"] == \
        json.loads((old / "gamma.json").read_text())["trace"]
    assert not (old / "checkpoints" / "epoch_0002" / "rng.pt").exists()  # no longer written
