"""Rebuild a run from its directory: ``load_run`` (the run report); eval and predict use ``metapeft.infer``."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import RunConfig
from ..data import LTDataset
from ..errors import CheckpointError, MetapeftError, RunDirError
from .checkpoint import load_trainable_state, read_safetensors
from .model import build_run, resolve_device
from .pipeline import RunData
from .rundir import newest_intact_checkpoint


def find_run_dir(path: Path) -> tuple[Path, Path]:
    """(run dir, trainable-weights file) for a run dir or one of its checkpoint dirs."""
    path = Path(path)
    if (path / "trainable.safetensors").is_file():          # RUN/checkpoints/epoch_N
        return path.parent.parent, path / "trainable.safetensors"
    if (path / "export" / "peft.safetensors").is_file():    # a finished run
        return path, path / "export" / "peft.safetensors"
    found = newest_intact_checkpoint(path / "checkpoints")  # `latest` may be missing or name a broken one
    if found is not None:
        return path, found[0] / "trainable.safetensors"
    raise RunDirError(f"no run found at {path}: expected export/peft.safetensors or checkpoints/latest")


def read_run_weights(run_dir: Path, weights: Path) -> dict[str, torch.Tensor]:
    """The weights file's tensors; a corrupt export falls back to the newest intact checkpoint (saying so)."""
    try:
        return read_safetensors(weights, "re-run the training with --resume to rewrite it")
    except CheckpointError as e:
        if weights.parent.name != "export":
            raise
        found = newest_intact_checkpoint(run_dir / "checkpoints")
        if found is None:
            raise CheckpointError(f"{e}; and no intact checkpoint to fall back to in {run_dir / 'checkpoints'}") from None
        print(f"warning: {e}; evaluating the newest intact checkpoint {found[0]} instead", file=sys.stderr)
        return found[1]["trainable"]


def load_run_config(run_dir: Path) -> RunConfig:
    """The run's config.yaml, or one clear RunDirError when it is missing or unusable."""
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise RunDirError(f"{cfg_path} is missing: not a metapeft run directory")
    try:
        return RunConfig.load(cfg_path)
    except MetapeftError as e:
        raise RunDirError(f"{cfg_path} cannot be used ({e}); restore the run's config.yaml") from None


@dataclass
class LoadedRun:
    run_dir: Path
    weights: Path          # the trainable-weights file that was loaded
    cfg: RunConfig
    ds: LTDataset
    model: nn.Module       # on ``device``, the run's trained PEFT weights, γ and head loaded
    data: RunData
    device: torch.device


def load_run(path: str | Path) -> LoadedRun:
    """The run at ``path`` (a run dir or one of its checkpoint dirs), rebuilt from its config and weights."""
    run_dir, weights = find_run_dir(Path(path))
    cfg = load_run_config(run_dir)
    state = read_run_weights(run_dir, weights)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    ds, model, data = build_run(cfg, device)
    load_trainable_state(model, state)
    return LoadedRun(run_dir, weights, cfg, ds, model, data, device)
