"""Rebuild a finished run's model from its directory and evaluate it (``metapeft eval``)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from ..config import RunConfig
from ..errors import RunDirError
from ..eval import Metrics
from .checkpoint import latest_checkpoint, load_trainable_state
from .evaluate import evaluate
from .model import build_model
from .pipeline import eval_loader, load_run_dataset, prepare_data
from .trainer import resolve_device


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
    raise RunDirError(f"no run found at {path}: expected export/peft.safetensors or checkpoints/latest")


def load_run_model(run_dir: Path, weights: Path):
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise RunDirError(f"{cfg_path} is missing: not a metapeft run directory")
    cfg = RunConfig.load(cfg_path)
    ds = load_run_dataset(cfg)
    model = build_model(cfg, ds.num_classes)
    load_trainable_state(model, load_file(str(weights)))
    return cfg, ds, model


def evaluate_run(path: Path) -> Metrics:
    run_dir, weights = find_run_dir(path)
    cfg, ds, model = load_run_model(run_dir, weights)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    model.to(device)
    pcfg = model.pretrained_cfg
    data = prepare_data(cfg, pcfg.get("mean"), pcfg.get("std"), ds)
    return evaluate(model, eval_loader(ds.test, data, cfg, device), ds)
