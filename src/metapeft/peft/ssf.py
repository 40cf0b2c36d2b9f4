"""SSF: learnable per-channel scale and shift after frozen layers (Lian et al. 2022)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ScaleShift(nn.Module):
    """``f(x) · s + b`` with s = 1, b = 0 at start, so wrapping is an exact no-op."""

    def __init__(self, base_layer: nn.Module, channels: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.ssf_scale = nn.Parameter(torch.ones(channels))
        self.ssf_shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.base_layer(x, *args, **kwargs) * self.ssf_scale + self.ssf_shift
