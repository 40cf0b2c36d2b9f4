"""peft's ``disable_adapter()`` and ``merge_and_unload()`` for metapeft models."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from .apply import merge_peft, site_modules
from .lora import LoraLinear


@contextmanager
def disable_peft(model: nn.Module) -> Iterator[nn.Module]:
    """``with disable_peft(model): model(x)`` computes the frozen backbone (plus the current head).

    Every additive branch (LoRA, Adapter, AdaptFormer) gets output scale 0 inside the block, merged
    LoRA is unmerged first and merged back after. The head is not a PEFT module here and stays the
    trained one (peft would swap back a ``modules_to_save`` copy; metapeft keeps no untrained copy).
    Non-additive methods (VPT, SSF, BitFit, LN-tune) change the backbone itself and cannot be switched off.
    """
    sites = site_modules(model)
    method = getattr(getattr(model, "peft_config", None), "method", None)
    if not sites and method not in (None, "linear_probe"):
        raise TypeError(f"disable_peft: peft.method={method} has no additive branches to switch off")
    merged = [m for m in model.modules() if isinstance(m, LoraLinear) and m.merged]
    for m in merged:
        m.unmerge()
    scales = {s: m.scale for s, m in sites.items()}
    try:
        for m in sites.values():
            m.scale = 0.0
        yield model
    finally:
        for s, m in sites.items():
            m.scale = scales[s]
        for m in merged:
            m.merge()


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Fold LoRA (with α·γ) into the base weights and drop the wrappers: a plain timm model again."""
    return merge_peft(model, unload=True)
