"""Test-set evaluation: logits in fixed order, metrics from metapeft.eval."""

from __future__ import annotations

import torch
from torch import nn

from ..eval import Metrics, compute_metrics
from ..progress import progress


@torch.no_grad()
def predict(model: nn.Module, batches) -> tuple[torch.Tensor, torch.Tensor]:
    was_training = model.training
    model.eval()
    logits, targets = [], []
    for x, y in progress(batches, "evaluate", unit="batches"):
        logits.append(model(x).float().cpu())
        targets.append(y.cpu())
    model.train(was_training)
    return torch.cat(logits), torch.cat(targets)


def evaluate(model: nn.Module, batches, ds, env=None) -> Metrics:
    """Metrics on ``batches``; under data parallelism each rank predicts its share, then all gather."""
    if env is not None and env.enabled:
        batches = (b for i, b in enumerate(batches) if i % env.world == env.rank)
        logits, targets = predict(model, batches)
        logits, targets = env.gather_cat(logits), env.gather_cat(targets)
    else:
        logits, targets = predict(model, batches)
    return compute_metrics(logits, targets, ds)
