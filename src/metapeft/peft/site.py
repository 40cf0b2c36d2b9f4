"""Sites: the (block, position) addresses that additive PEFT modules occupy."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .modulator import Modulator


class Site(NamedTuple):
    block: int
    position: str

    def __str__(self) -> str:
        return f"{self.block}.{self.position}"


class SiteModule(nn.Module):
    """Base class of an additive PEFT branch living at one site.

    Subclasses compute Δ(x); the base applies the fixed scale α and the modulator γ,
    so every additive method shares one code path for ``α · γ · Δ(x)``.
    """

    def __init__(self, site: Site, scale: float, modulator: Modulator | None) -> None:
        super().__init__()
        self.site = site
        self.scale = float(scale)
        self.modulator: nn.Module = modulator if modulator is not None else nn.Identity()

    @property
    def gamma_modulator(self) -> Modulator | None:
        """The site's γ module (``None`` without γ); its raw parameter is ``gamma_modulator.gamma``."""
        return self.modulator if isinstance(self.modulator, Modulator) else None

    def modulate(self, delta: torch.Tensor) -> torch.Tensor:
        return self.modulator(delta * self.scale)

    def extra_repr(self) -> str:
        return f"site={self.site}, scale={self.scale:g}"
