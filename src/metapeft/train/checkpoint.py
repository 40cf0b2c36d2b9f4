"""Atomic checkpoints: safetensors for weights, JSON for state, weights-only torch files for optimizers.

Layout of ``RUN/checkpoints``::

    epoch_0003/            one complete checkpoint (written as a temp dir, then renamed)
      trainable.safetensors   PEFT weights + head + γ
      optimizer.pt            main optimizer state (tensors only: torch.load(weights_only=True))
      meta.pt                 meta optimizer state (when meta-learning)
      state.json              epoch, step, skipped steps, history, scheduler (``TrainState``)
    latest                 text file naming the newest complete checkpoint (replaced atomically)

A run killed at any moment leaves the previous checkpoint and ``latest`` intact: every file is
fsynced, then its folder, before the rename that publishes it (so after a crash of the OS the
rename is not seen before the data). Reading a checkpoint never unpickles anything but tensors,
and a truncated, corrupt or hostile file is a :class:`CheckpointError` naming it. No RNG state
is saved: every epoch re-seeds from (seed, epoch) and every data stream has its own seeded generator,
so a resumed epoch replays exactly (older checkpoints' ``rng.pt`` is ignored).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import atomic_save_safetensors, atomic_write_text, fsync_path  # noqa: F401  (re-exported)
from ..errors import CheckpointError
from ..peft import gamma_parameters

REPAIR = "delete that checkpoint folder to resume from an older one, or train into another --out"


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter that training changes (requires_grad or γ), by name."""
    gammas = {id(p) for p in gamma_parameters(model)}
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
            if p.requires_grad or id(p) in gammas}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = sorted(set(trainable_state(model)) - set(state))
    unknown = sorted(set(state) - set(params))
    if missing or unknown:
        raise CheckpointError(f"checkpoint does not fit the model: missing {missing[:5]}, unexpected {unknown[:5]}")
    with torch.no_grad():
        for name, tensor in state.items():
            if params[name].shape != tensor.shape:
                raise CheckpointError(f"checkpoint tensor {name} has shape {tuple(tensor.shape)}, "
                                 f"model expects {tuple(params[name].shape)}")
            params[name].copy_(tensor)


def save_checkpoint(root: Path, epoch: int, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], meta_optimizer_state: dict | None = None, keep: int = 1) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"epoch_{epoch:04d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".epoch_{epoch:04d}."))
    try:
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if meta_optimizer_state is not None:
            torch.save(meta_optimizer_state, tmp / "meta.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        for f in tmp.iterdir():
            fsync_path(f)
        fsync_path(tmp)
        if final.exists():  # the same epoch again (resumed from an older checkpoint): superseded
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_path(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / "latest", final.name + "\n")
    for old in sorted(p for p in root.glob("epoch_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    marker = root / "latest"
    if not marker.is_file():
        return None
    path = root / marker.read_text().strip()
    return path if (path / "state.json").is_file() else None


def read_safetensors(path: Path, what_to_do: str = REPAIR) -> dict[str, torch.Tensor]:
    """``load_file`` with a missing/truncated/corrupt file as a CheckpointError naming it."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {what_to_do}")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises SafetensorError, OSError, ValueError... for a bad file
        raise CheckpointError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}): {what_to_do}") from None


def read_tensor_file(path: Path) -> Any:
    """``torch.load(weights_only=True)``: a file that holds anything but tensors is refused, never run."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {REPAIR}")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # UnpicklingError for hostile content, RuntimeError/EOFError for truncation
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights only" in str(e).lower():
            reason = "it holds more than tensors, so it was not unpickled (corrupt or hostile)"
        raise CheckpointError(f"{path} cannot be read safely ({reason}): {REPAIR}") from None


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {REPAIR}")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt ({e}): {REPAIR}") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint directory without unpickling anything but tensors."""
    out: dict[str, Any] = {
        "trainable": read_safetensors(path / "trainable.safetensors"),
        "optimizer": read_tensor_file(path / "optimizer.pt"),
        "state": read_json(path / "state.json"),
    }
    if not isinstance(out["state"], dict):
        raise CheckpointError(f"{path}: state.json does not have the expected content: {REPAIR}")
    if (path / "meta.pt").is_file():
        out["meta"] = read_tensor_file(path / "meta.pt")
    return out
