"""Test-set evaluation: logits in fixed order, metrics from metapeft.eval."""

from __future__ import annotations

import torch
from torch import nn

from ..eval import Metrics, compute_metrics


@torch.no_grad()
def predict(model: nn.Module, batches) -> tuple[torch.Tensor, torch.Tensor]:
    was_training = model.training
    model.eval()
    logits, targets = [], []
    for x, y in batches:
        logits.append(model(x).float().cpu())
        targets.append(y.cpu())
    model.train(was_training)
    return torch.cat(logits), torch.cat(targets)


def evaluate(model: nn.Module, batches, ds) -> Metrics:
    logits, targets = predict(model, batches)
    return compute_metrics(logits, targets, ds)
