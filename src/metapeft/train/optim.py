"""Optimizer of φ and the per-step cosine schedule with optional linear warm-up."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError


def build_optimizer(params: list[nn.Parameter] | list[dict], cfg: TrainConfig, *, fused: bool = False
                    ) -> torch.optim.Optimizer:
    """SGD/AdamW over a parameter list or a list of param groups (each with its own ``lr``).

    ``fused``: torch's fused kernels, which can skip a step on the device (``train.sync_free``). They
    differ from the default kernels by float rounding only: measured, fused SGD matches every weight matrix
    bit for bit and a bias vector to 1e-9 (tests/train/test_train_sync_free.py).
    """
    if not params or all(isinstance(g, dict) and not g["params"] for g in params):
        raise ConfigError("nothing to train: the PEFT configuration left no trainable parameter")
    extra = {"fused": True} if fused else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **extra)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **extra)


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


def layer_decay_groups(params: dict[str, nn.Parameter], model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Layer-wise lr decay (BEiT / MAE / timm ``param_groups_layer_decay``) over the trainable ``params``.

    Layer ids come from timm's own ``group_matcher`` (stem 0, block i → i + 1, final norm with the last
    block, head L + 1), so the scales are timm's: ``layer_decay^(L + 1 − id)``. Built over ``params``
    (φ, by name) rather than the whole model so γ never enters and ``train.head_lr_mult`` composes
    (head lr = lr × mult). As in that recipe, 1-D tensors (biases, norms, γ-free scales) get no weight decay.
    Groups come highest lr first, so history.csv's ``lr`` column is the top of the stack.
    """
    from timm.models._manipulate import group_parameters

    if not hasattr(model, "group_matcher"):
        raise ConfigError(f"train.layer_decay needs a timm model with group_matcher(); {type(model).__name__} has none")
    by_name = group_parameters(model, model.group_matcher(coarse=False), reverse=True)
    top = max(by_name.values())
    layer_of = {id(p): by_name.get(n, top) for n, p in model.named_parameters()}
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    mult = 1.0 if cfg.head_lr_mult is None else cfg.head_lr_mult
    assert cfg.layer_decay is not None
    groups: dict[tuple[int, bool], dict] = {}
    for p in params.values():
        layer = layer_of.get(id(p), top)
        decay = p.ndim > 1
        scale = cfg.layer_decay ** (top - layer) * (mult if id(p) in head_ids else 1.0)
        g = groups.setdefault((layer, decay, id(p) in head_ids), {
            "params": [], "lr": cfg.lr * scale, "weight_decay": cfg.weight_decay if decay else 0.0,
            "layer": layer})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups, key=lambda k: (-groups[k]["lr"], k))]
