"""SSF: learnable per-channel scale and shift after frozen layers (Lian et al. 2022)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .wrap import like, vit_blocks

if TYPE_CHECKING:
    from .config import PeftConfig


class ScaleShift(nn.Module):
    """``f(x) · s + b`` with s = 1, b = 0 at start, so wrapping is an exact no-op."""

    def __init__(self, base_layer: nn.Module, channels: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.ssf_scale = nn.Parameter(torch.ones(channels))
        self.ssf_shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.base_layer(x, *args, **kwargs) * self.ssf_scale + self.ssf_shift


def apply_ssf(model: nn.Module, chosen: list[int], cfg: "PeftConfig") -> None:
    """Scale-shift after qkv, proj, fc1, fc2 and both norms of every chosen block."""
    blocks = vit_blocks(model)
    for idx in chosen:
        block = blocks[idx]
        for path in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "norm1", "norm2"):
            base = block.get_submodule(path)
            channels = base.out_features if isinstance(base, nn.Linear) else base.normalized_shape[0]
            block.set_submodule(path, like(ScaleShift(base, channels), base))
