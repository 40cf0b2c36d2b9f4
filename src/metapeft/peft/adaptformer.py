"""AdaptFormer: a bottleneck branch parallel to the MLP sub-layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .adapter import BottleneckBranch, bottleneck_branch
from .wrap import like, vit_blocks

if TYPE_CHECKING:
    from .config import PeftConfig


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


def apply_adaptformer(model: nn.Module, chosen: list[int], cfg: "PeftConfig") -> None:
    """A bottleneck branch parallel to each chosen block's MLP (position ``mlp``)."""
    blocks = vit_blocks(model)
    for idx in chosen:
        for pos in cfg.resolved_positions:
            block = blocks[idx]
            block.mlp = like(ParallelAdapter(block.mlp, bottleneck_branch(model, idx, pos, cfg)), block.mlp)
