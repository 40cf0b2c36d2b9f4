"""Selective tuning baselines: no module added, some backbone weights made trainable.

BitFit (Zaken et al. 2022) trains the biases, LN-tune the LayerNorms of the chosen blocks (plus the
final norm when every block is chosen).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from torch import nn

from .wrap import vit_blocks

if TYPE_CHECKING:
    from .config import PeftConfig


def _selected_modules(model: nn.Module, chosen: list[int]) -> Iterator[nn.Module]:
    """Modules of the chosen blocks, plus the final norm when every block is chosen."""
    blocks = vit_blocks(model)
    for i in chosen:
        yield from blocks[i].modules()
    if len(chosen) == len(blocks) and isinstance(getattr(model, "norm", None), nn.Module):
        yield from model.norm.modules()


def apply_bitfit(model: nn.Module, chosen: list[int], cfg: "PeftConfig") -> None:
    for module in _selected_modules(model, chosen):
        for name, p in module.named_parameters(recurse=False):
            if name.endswith("bias"):
                p.requires_grad_(True)


def apply_ln_tune(model: nn.Module, chosen: list[int], cfg: "PeftConfig") -> None:
    for module in _selected_modules(model, chosen):
        if isinstance(module, nn.LayerNorm):
            for p in module.parameters():
                p.requires_grad_(True)
