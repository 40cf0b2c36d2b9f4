"""AdaptFormer: a bottleneck branch parallel to the MLP sub-layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .adapter import BottleneckBranch


class ParallelAdapter(nn.Module):
    """``MLP(LN(h)) + α·γ·Up(σ(Down(LN(h))))``: the branch sees the MLP's own input.

    Wrapping ``block.mlp`` keeps the branch inside the block's LayerScale/drop-path,
    exactly where the MLP output goes, so the residual structure is timm's.
    """

    def __init__(self, base_layer: nn.Module, branch: BottleneckBranch) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter = branch

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.base_layer(x, *args, **kwargs) + self.adapter(x)
