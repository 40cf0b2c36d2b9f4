"""Rebuild a finished run's model from its directory and evaluate it (``metapeft eval``)."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from ..config import RunConfig
from ..eval import Metrics
from .checkpoint import latest_checkpoint, load_trainable_state
from .model import build_model
from .pipeline import load_run_dataset


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


def load_run_model(run_dir: Path, weights: Path):
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} is missing: not a metapeft run directory")
    cfg = RunConfig.load(cfg_path)
    ds = load_run_dataset(cfg)
    model = build_model(cfg, ds.num_classes)
    load_trainable_state(model, load_file(str(weights)))
    return cfg, ds, model


def evaluate_run(path: Path) -> Metrics:
    """The run's metrics on its own test set, rebuilt from the run directory (see ``infer.evaluate``)."""
    from ..infer.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(path)
