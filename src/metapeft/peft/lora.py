"""LoRA at any output slice of a linear layer (q, k, v are slices of timm's fused qkv)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .modulator import Modulator
from .site import Site, SiteModule


class LoraBranch(SiteModule):
    """Low-rank update ``α · γ · B A x`` for one site; B starts at zero (exact no-op)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        site: Site,
        rank: int,
        scale: float,
        dropout: float = 0.0,
        modulator: Modulator | None = None,
    ) -> None:
        super().__init__(site, scale, modulator)
        self.lora_A = nn.Linear(in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, out_features, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # Same init as HF peft: Kaiming-uniform A, zero B.
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.modulate(self.lora_B(self.lora_A(self.dropout(x))))

    def delta_weight(self) -> torch.Tensor:
        """The dense update ``α · γ · B A`` with γ broadcast over output rows."""
        delta = (self.lora_B.weight @ self.lora_A.weight) * self.scale
        gamma = self.gamma
        if gamma is None:
            return delta
        g = gamma.value()
        return delta * (g if g.dim() == 0 else g[:, None])


class LoraLinear(nn.Module):
    """Wraps a frozen ``nn.Linear`` and adds LoRA branches on slices of its output.

    ``slices`` maps a position name to the output range it owns, e.g. for timm's fused
    qkv ``{"q": (0, D), "v": (2D, 3D)}``; a plain linear has one full-width slice.
    """

    def __init__(self, base_layer: nn.Linear, slices: dict[str, tuple[int, int]], branches: dict[str, LoraBranch]):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"LoRA wraps nn.Linear layers, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.slices = dict(slices)
        self.lora = nn.ModuleDict(branches)
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def weight(self) -> torch.Tensor:  # timm code may read .weight of the layer it calls
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        if self.merged:
            return y
        full = self.out_features
        for name, branch in self.lora.items():
            start, end = self.slices[name]
            delta = branch(x)
            if start == 0 and end == full:
                y = y + delta
            else:
                # In place on the fresh matmul output: the linear's backward does not need it.
                y[..., start:end] += delta
        return y

    @torch.no_grad()
    def merge(self) -> None:
        """Fold every branch (with α·γ) into the base weight."""
        if self.merged:
            return
        for name, branch in self.lora.items():
            start, end = self.slices[name]
            self.base_layer.weight[start:end] += branch.delta_weight().to(self.base_layer.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        for name, branch in self.lora.items():
            start, end = self.slices[name]
            self.base_layer.weight[start:end] -= branch.delta_weight().to(self.base_layer.weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return f"slices={self.slices}, merged={self.merged}"


def wrap_lora(
    base: nn.Module,
    slices: dict[str, tuple[int, int]],
    sites: dict[str, Site],
    *,
    rank: int,
    scale: float,
    dropout: float,
    make_modulator,
) -> LoraLinear:
    """Add branches for ``sites`` to ``base`` (wrapping it once; re-wrapping adds slices)."""
    layer = base if isinstance(base, LoraLinear) else None
    linear = layer.base_layer if layer is not None else base
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"LoRA needs an nn.Linear, found {type(linear).__name__}")
    branches = {}
    for name, site in sites.items():
        start, end = slices[name]
        branches[name] = LoraBranch(
            linear.in_features, end - start, site=site, rank=rank, scale=scale, dropout=dropout,
            modulator=make_modulator(end - start),
        )
    if layer is None:
        return LoraLinear(linear, {n: slices[n] for n in sites}, branches)
    for name, branch in branches.items():
        layer.slices[name] = slices[name]
        layer.lora[name] = branch
    return layer
