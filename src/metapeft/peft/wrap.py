"""Helpers every method's ``apply`` function uses: the blocks of a timm ViT, its head and width,
γ modulators built from the config, and moving a new wrapper to its base layer's device/dtype."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from torch import nn

from .modulator import Modulator

if TYPE_CHECKING:
    from .config import PeftConfig


def vit_blocks(model: nn.Module) -> nn.Sequential:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0:
        raise TypeError(f"{type(model).__name__} has no `.blocks`: metapeft supports timm ViT-style models")
    return blocks


def classifier(model: nn.Module) -> nn.Module:
    head = model.get_classifier() if hasattr(model, "get_classifier") else getattr(model, "head", None)
    if head is None:
        raise TypeError(f"{type(model).__name__} has no classifier head (`get_classifier()` / `.head`)")
    return head


def embed_dim(model: nn.Module) -> int:
    return getattr(model, "embed_dim", None) or getattr(model, "num_features")


def modulator_factory(cfg: "PeftConfig") -> Callable[[int], Modulator | None]:
    """``make(channels)`` → the γ of one site as the config asks (``None`` when the method has no γ)."""
    def make(channels: int) -> Modulator | None:
        if not cfg.has_gamma:
            return None
        return Modulator(channels, shape=cfg.gamma_shape, init=cfg.gamma_init, constraint=cfg.gamma_constraint,
                         max_abs=cfg.gamma_max)
    return make


def like(module: nn.Module, ref: nn.Module) -> nn.Module:
    """``module`` on the device and dtype of ``ref``'s parameters."""
    p = next(ref.parameters())
    return module.to(device=p.device, dtype=p.dtype)
