"""Bottleneck adapters: Houlsby-style sequential Adapter after a sub-layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .modulator import Modulator
from .site import Site, SiteModule
from .wrap import embed_dim, like, modulator_factory, vit_blocks

if TYPE_CHECKING:
    from .config import PeftConfig


class BottleneckBranch(SiteModule):
    """``α · γ · Up(ReLU(Down(x)))`` with Up zero-initialised (exact no-op at start)."""

    def __init__(
        self, dim: int, bottleneck: int, *, site: Site, scale: float, modulator: Modulator | None = None
    ) -> None:
        super().__init__(site, scale, modulator)
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.ReLU()
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.modulate(self.up(self.act(self.down(x))))


class SequentialAdapter(nn.Module):
    """Adapter after a sub-layer: ``y = f(x); y + α·γ·Up(σ(Down(y)))``.

    Wraps timm's ``attn`` or ``mlp`` module of a block, so the block's own forward
    (norms, LayerScale, residuals) is untouched.
    """

    def __init__(self, base_layer: nn.Module, branch: BottleneckBranch) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter = branch

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        y = self.base_layer(x, *args, **kwargs)
        return y + self.adapter(y)


def bottleneck_branch(model: nn.Module, idx: int, pos: str, cfg: "PeftConfig") -> BottleneckBranch:
    dim = embed_dim(model)
    return BottleneckBranch(dim, cfg.bottleneck, site=Site(idx, pos), scale=cfg.scale,
                            modulator=modulator_factory(cfg)(dim))


def apply_adapter(model: nn.Module, chosen: list[int], cfg: "PeftConfig") -> None:
    """A sequential adapter after each chosen block's ``attn`` and/or ``mlp`` sub-layer."""
    blocks = vit_blocks(model)
    for idx in chosen:
        block = blocks[idx]
        for pos in cfg.resolved_positions:  # the position is the sub-layer's name
            sub = getattr(block, pos)
            setattr(block, pos, like(SequentialAdapter(sub, bottleneck_branch(model, idx, pos, cfg)), sub))
