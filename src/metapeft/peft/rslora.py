"""rsLoRA: LoRA with the rank-stabilised scale α/√r instead of α/r (Kalajdzievski 2023, arXiv:2312.03732).

With α/r the update B·A shrinks as the rank grows, so higher ranks learn slower and look no better;
α/√r keeps the output's scale stable in r. The modules, sites and merge are LoRA's (``lora.py``):
rsLoRA is only this scale rule plus its entry in the registry. ``peft.alpha`` then means α in α/√r
(None: α = √r, scale 1, the same start as LoRA); ``--grid peft.scale=...`` sets α = scale·√r.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import PeftConfig


def rank_stabilised_divisor(cfg: "PeftConfig") -> float:
    """α is divided by √rank (the registry's scale rule: scale = alpha / divisor)."""
    return math.sqrt(cfg.rank)
