"""Optimizer of φ and the per-step cosine schedule with optional linear warm-up."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError


def build_optimizer(params: list[nn.Parameter] | list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD/AdamW over a parameter list or a list of param groups (each with its own ``lr``)."""
    if not params or all(isinstance(g, dict) and not g["params"] for g in params):
        raise ConfigError("nothing to train: the PEFT configuration left no trainable parameter")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """lr·(step/warmup) during warm-up, then half a cosine down to 0 at ``total_steps``."""
    total = max(total_steps, 1)
    warm = min(max(warmup_steps, 0), total - 1)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        progress = (step - warm) / max(total - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def head_param_groups(params: list[nn.Parameter], head: nn.Module, cfg: TrainConfig) -> list[nn.Parameter] | list[dict]:
    """``params`` as one group, or two when the head has its own lr (``train.head_lr_mult``).

    One group when the multiplier is 1 keeps the optimizer exactly as before the option existed.
    """
    mult = 1.0 if cfg.head_lr_mult is None else cfg.head_lr_mult
    if mult == 1.0:
        return params
    head_ids = {id(p) for p in head.parameters()}
    body = [p for p in params if id(p) not in head_ids]
    heads = [p for p in params if id(p) in head_ids]
    return [{"params": body, "lr": cfg.lr}, {"params": heads, "lr": cfg.lr * mult}]
