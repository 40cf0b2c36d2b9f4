"""Rebuild a run from its directory: ``load_run`` (used by ``metapeft eval`` and the run report)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..config import RunConfig
from ..data import LTDataset
from ..eval import Metrics
from .checkpoint import latest_checkpoint, load_trainable_state
from .evaluate import evaluate
from .model import build_run, resolve_device
from .pipeline import RunData, eval_loader


def find_run_dir(path: Path) -> tuple[Path, Path]:
    """(run dir, trainable-weights file) for a run dir or one of its checkpoint dirs."""
    path = Path(path)
    if (path / "trainable.safetensors").is_file():          # RUN/checkpoints/epoch_N
        return path.parent.parent, path / "trainable.safetensors"
    if (path / "export" / "peft.safetensors").is_file():    # a finished run
        return path, path / "export" / "peft.safetensors"
    latest = latest_checkpoint(path / "checkpoints")
    if latest is not None:
        return path, latest / "trainable.safetensors"
    raise FileNotFoundError(f"no run found at {path}: expected export/peft.safetensors or checkpoints/latest")


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
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} is missing: not a metapeft run directory")
    cfg = RunConfig.load(cfg_path)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    ds, model, data = build_run(cfg, device)
    load_trainable_state(model, load_file(str(weights)))
    return LoadedRun(run_dir, weights, cfg, ds, model, data, device)


def evaluate_run(path: str | Path) -> Metrics:
    run = load_run(path)
    return evaluate(run.model, eval_loader(run.ds.test, run.data, run.cfg, run.device), run.ds)
