"""Rebuild a trained model for inference from its run directory (no training data needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import RunConfig
from ..data.augment import BatchAugment
from ..export import read_export_config
from ..peft import merge_peft


@dataclass
class InferenceModel:
    model: nn.Module          # eval mode, LoRA merged (same outputs, no branch cost)
    cfg: RunConfig            # the run's config.yaml
    export: dict              # RUN/export/config.json
    transform: BatchAugment   # uint8 [B, C, H, W] → normalised input, as the run evaluated
    device: torch.device

    @property
    def classes(self) -> list[str]:
        return list(self.export["label_names"])


def load_inference_model(run_dir: str | Path, *, device: str | None = None, merge: bool = True) -> InferenceModel:
    """The run's classifier with its weights (``export/peft.safetensors``) and preprocessing."""
    from ..train.model import build_model
    from ..train.reload import find_run_dir, load_run_config, read_run_weights
    from ..train.checkpoint import load_trainable_state
    from ..train.model import resolve_device

    run, weights = find_run_dir(Path(run_dir))
    cfg = load_run_config(run)
    info = read_export_config(run)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    model = build_model(cfg, int(info["num_classes"]))
    load_trainable_state(model, read_run_weights(run, weights))  # a corrupt export falls back to a checkpoint
    model.eval()
    if merge:
        merge_peft(model)
    dev = torch.device(device) if device else resolve_device(cfg.train.device)
    size = int(info["input_size"][-1])
    tf = BatchAugment(size, info["mean"], info["std"], train=False, eval_crop=float(info.get("crop_pct", 1.0)))
    return InferenceModel(model.to(dev), cfg, info, tf, dev)
