"""Test-set evaluation: logits in fixed order, metrics from metapeft.eval."""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

from ..eval import Metrics, compute_metrics
from ..progress import progress


@torch.no_grad()
def predict(model: nn.Module, batches, autocast: Callable[[], contextlib.AbstractContextManager] | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (fp32) and targets of every batch, kept on the model's device until the end: one host
    transfer per evaluation instead of one per batch. ``autocast``: the run's precision context."""
    was_training = model.training
    model.eval()
    logits, targets = [], []
    for x, y in progress(batches, "evaluate", unit="batches"):
        with autocast() if autocast is not None else contextlib.nullcontext():
            out = model(x)
        logits.append(out.float())
        targets.append(y)
    model.train(was_training)
    return torch.cat(logits), torch.cat(targets)


def evaluate(model: nn.Module, batches, ds, env=None, autocast=None) -> Metrics:
    """Metrics on ``batches``; under data parallelism each rank predicts its share, then all gather
    (on the device: NCCL has no CPU tensors)."""
    if env is not None and env.enabled:
        batches = (b for i, b in enumerate(batches) if i % env.world == env.rank)
        logits, targets = predict(model, batches, autocast)
        logits, targets = env.gather_cat(logits), env.gather_cat(targets)
    else:
        logits, targets = predict(model, batches, autocast)
    return compute_metrics(logits.cpu(), targets.cpu(), ds)
