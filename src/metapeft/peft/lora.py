"""LoRA at any output slice of a linear layer (q, k, v are slices of timm's fused qkv)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from .lora_kernel import fused_lora_linear
from .modulator import Modulator
from .site import Site, SiteModule
from .wrap import like, modulator_factory, vit_blocks

if TYPE_CHECKING:
    from .config import PeftConfig

# LoRA position → (linear inside a block, which output slice of it; None = whole output).
LORA_TARGETS: dict[str, tuple[str, int | None]] = {
    "q": ("attn.qkv", 0), "k": ("attn.qkv", 1), "v": ("attn.qkv", 2),
    "out": ("attn.proj", None), "mlp1": ("mlp.fc1", None), "mlp2": ("mlp.fc2", None),
}


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

    def scaled_B(self) -> torch.Tensor:
        """``α · γ · B`` ([out, r]): scaling the tiny B instead of the [tokens, out] output is the same maths."""
        b = self.lora_B.weight if self.scale == 1.0 else self.lora_B.weight * self.scale  # one op fewer at α/r = 1
        gamma = self.gamma_modulator
        if gamma is None:
            return b
        g = gamma.value()
        return b * (g if g.dim() == 0 else g[:, None])

    def delta_weight(self) -> torch.Tensor:
        """The dense update ``α · γ · B A`` with γ broadcast over output rows."""
        return self.scaled_B() @ self.lora_A.weight

    @property
    def uses_dropout(self) -> bool:
        return self.training and isinstance(self.dropout, nn.Dropout) and self.dropout.p > 0


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
        if self.merged:
            return self.base_layer(x)
        if any(b.uses_dropout for b in self.lora.values()):
            return self._branchwise(x, self.base_layer(x))  # each branch needs its own dropout mask
        # All branches in two GEMMs: h = x [A_1; A_2; ...]ᵀ, then y += h B_blockᵀ, where B_block holds each
        # branch's α·γ·B in its output rows. Same result as summing branch outputs, without per-branch
        # full-size deltas or in-place slice writes (their backward copies the whole qkv gradient per
        # branch); one autograd node with the base layer (lora_kernel) also drops the output copy and
        # the separate input-gradient sum.
        branches = list(self.lora.items())
        a = torch.cat([b.lora_A.weight for _, b in branches]) if len(branches) > 1 else branches[0][1].lora_A.weight
        base = self.base_layer
        return fused_lora_linear(x, base.weight, base.bias, a, self._block_B(branches))

    def _block_B(self, branches: list[tuple[str, LoraBranch]]) -> torch.Tensor:
        """[out, Σr] matrix with branch i's α·γ·B in rows ``slices[i]`` and columns of its rank."""
        parts = [br.scaled_B() for _, br in branches]
        spans = [self.slices[name] for name, _ in branches]
        if len(parts) == 1 and spans[0] == (0, self.out_features):
            return parts[0]
        tiles = all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
        if tiles and spans[0][0] == 0 and spans[-1][1] == self.out_features:
            return torch.block_diag(*parts)
        block = parts[0].new_zeros(self.out_features, sum(p.shape[1] for p in parts))
        col = 0
        for (start, end), part in zip(spans, parts):
            block[start:end, col:col + part.shape[1]] = part
            col += part.shape[1]
        return block

    def _branchwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        full = self.out_features
        for name, branch in self.lora.items():
            start, end = self.slices[name]
            delta = branch(x)
            if start == 0 and end == full:
                y = y + delta
            else:
                y = y + torch.nn.functional.pad(delta, (start, full - end))
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


def apply_lora(model: nn.Module, chosen: list[int], cfg: "PeftConfig") -> None:
    """LoRA branches at ``cfg``'s positions of the chosen blocks, α = ``cfg.scale`` (the method's rule)."""
    blocks = vit_blocks(model)
    for idx in chosen:
        _apply_block(blocks[idx], idx, cfg)


def _apply_block(block: nn.Module, idx: int, cfg: "PeftConfig") -> None:
    groups: dict[str, dict[str, Site]] = {}
    for pos in cfg.resolved_positions:
        path, _ = LORA_TARGETS[pos]
        groups.setdefault(path, {})[pos] = Site(idx, pos)
    for path, sites in groups.items():
        base = block.get_submodule(path)
        linear = base.base_layer if isinstance(base, LoraLinear) else base
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"block {idx}: `{path}` is {type(linear).__name__}, LoRA needs nn.Linear")
        slices = {}
        for pos in sites:
            part = LORA_TARGETS[pos][1]
            if part is None:
                slices[pos] = (0, linear.out_features)
            else:
                if linear.out_features % 3:
                    raise TypeError(f"block {idx}: `{path}` is not a fused qkv (out={linear.out_features})")
                width = linear.out_features // 3
                slices[pos] = (part * width, (part + 1) * width)
        wrapped = wrap_lora(base, slices, sites, rank=cfg.rank, scale=cfg.scale, dropout=cfg.dropout,
                            make_modulator=modulator_factory(cfg))
        block.set_submodule(path, like(wrapped, linear))
