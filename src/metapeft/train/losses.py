"""Long-tail losses. Inner loop default: logit-adjusted CE; outer loop: class-balanced CE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LogitAdjustedLoss(nn.Module):
    """CE on ``logits + τ·log π`` (Menon et al. 2021); τ = 1 equals balanced softmax."""

    def __init__(self, class_counts: torch.Tensor, tau: float = 1.0) -> None:
        super().__init__()
        prior = class_counts.float().clamp(min=1) / class_counts.sum()
        self.register_buffer("adjustment", tau * prior.log())

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits + self.adjustment.to(logits.dtype), targets)


class FocalLoss(nn.Module):
    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        return (-(1 - logp.exp()) ** self.gamma * logp).mean()


class ClassBalancedCE(nn.Module):
    """Mean over the classes present in the batch of each class's mean CE.

    Every class weighs the same whatever the batch composition, so tail classes count as
    much as head classes in the outer (γ) objective.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per_sample = F.cross_entropy(logits, targets, reduction="none")
        sums = per_sample.new_zeros(self.num_classes).index_add(0, targets, per_sample)
        counts = torch.bincount(targets, minlength=self.num_classes).to(per_sample.dtype)
        present = counts > 0
        return (sums[present] / counts[present]).mean()


def build_loss(name: str, class_counts: torch.Tensor, *, tau: float = 1.0, focal_gamma: float = 2.0) -> nn.Module:
    if name == "ce":
        return nn.CrossEntropyLoss()
    if name == "la":
        return LogitAdjustedLoss(class_counts, tau)
    if name == "balanced_softmax":
        return LogitAdjustedLoss(class_counts, 1.0)
    if name == "focal":
        return FocalLoss(focal_gamma)
    if name == "balanced_ce":
        return ClassBalancedCE(len(class_counts))
    raise ValueError(f"unknown loss {name!r}")
