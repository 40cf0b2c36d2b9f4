"""Classifier heads: cosine classifier (LIFT default) and its class-mean initialisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosineClassifier(nn.Module):
    """``s · cos(x, w_c)``: scale-free logits keep head and tail classes on one footing."""

    def __init__(self, in_features: int, num_classes: int, scale: float = 25.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features).uniform_(-1, 1))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1))

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, classes={self.weight.shape[0]}, scale={self.scale}"


def build_head(kind: str, in_features: int, num_classes: int, scale: float) -> nn.Module:
    if kind == "cosine":
        return CosineClassifier(in_features, num_classes, scale)
    return nn.Linear(in_features, num_classes)


@torch.no_grad()
def init_head_from_class_means(head: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> None:
    """Set each class's weight to the mean (normalised) feature of its training images."""
    num_classes = head.weight.shape[0]
    sums = torch.zeros(num_classes, features.shape[1]).index_add_(0, labels, F.normalize(features.float(), dim=-1))
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1)[:, None]
    means = F.normalize(sums / counts, dim=-1)
    head.weight.copy_(means.to(head.weight))
    if getattr(head, "bias", None) is not None:
        head.bias.zero_()
