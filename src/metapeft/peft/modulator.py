"""The learnable modulator γ that MetaPEFT attaches to every additive PEFT module.

A site's output is ``α · γ · Δ(x)``. γ → 0 switches the site off (position and layer
selection), |γ| sets its strength, and for SGD it acts as a module-wise learning rate
(scaling an output by γ trains it like an unscaled module at lr η·γ²).

γ is a separate module type so it can be found by ``isinstance`` — never by the name
"gamma", which timm already uses for LayerScale (``ls1.gamma``).
"""

from __future__ import annotations

import math
from typing import get_args

import torch
import torch.nn.functional as F
from torch import nn

from .gamma_rules import GammaConstraint, GammaShape, gamma_setting_problem  # noqa: F401  (re-exported)

def _softplus_inverse(y: float) -> float:
    if y <= 0:
        raise ValueError(f"softplus-constrained gamma needs init > 0, got {y}")
    return y + math.log(-math.expm1(-y))


class Modulator(nn.Module):
    """Holds γ: one scalar per site by default, or one value per output channel.

    Constraints: ``none`` (raw γ, may cross zero), ``clamp`` (γ ≥ 0, enforced by
    :meth:`project` after each meta step), ``softplus`` (γ = softplus(ρ), always > 0).
    ``max_abs`` bounds |γ| the same way: a meta step can then never push a site past the
    scale at which training collapses (docs/results.md: meta lr 1.0 with train lr 0.03).
    """

    def __init__(
        self,
        channels: int,
        *,
        shape: GammaShape = "scalar",
        init: float = 1.0,
        constraint: GammaConstraint = "none",
        max_abs: float | None = None,
    ) -> None:
        super().__init__()
        if shape not in get_args(GammaShape) or constraint not in get_args(GammaConstraint):
            raise ValueError(f"gamma shape must be one of {get_args(GammaShape)} and constraint one of "
                             f"{get_args(GammaConstraint)}; got {shape!r}, {constraint!r}")
        problem = gamma_setting_problem(init, constraint, max_abs)
        if problem:
            raise ValueError(f"gamma init={init}, constraint={constraint}, max_abs={max_abs}: {problem}")
        self.constraint = constraint
        self.max_abs = max_abs
        raw = _softplus_inverse(init) if constraint == "softplus" else float(init)
        size = () if shape == "scalar" else (channels,)
        # Stored as the raw parameter; `value()` applies the constraint.
        self.gamma = nn.Parameter(torch.full(size, raw))

    def value(self) -> torch.Tensor:
        if self.constraint == "softplus":
            return F.softplus(self.gamma)
        return self.gamma

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        return delta * self.value()

    def site_value(self) -> float:
        """:meth:`site_tensor` as a Python number (one host sync: gather many with ``torch.stack`` instead)."""
        return float(self.site_tensor())

    def site_tensor(self) -> torch.Tensor:
        """The site's γ as one 0-d tensor — the one definition of "a site's γ" / "mean γ" everywhere
        (gamma.json, the γ trace, history.csv, TensorBoard): γ itself when scalar (its sign says
        the branch is inverted), the mean of |γ| over channels when per-channel (signed channel
        values would cancel in a mean and hide the site's strength)."""
        v = self.value().detach()
        return v if v.dim() == 0 else v.abs().mean()

    @torch.no_grad()
    def project(self) -> None:
        """Map γ back onto its feasible set (``clamp``: γ ≥ 0; ``max_abs``: |γ| ≤ max_abs)."""
        if self.constraint == "clamp":
            self.gamma.clamp_(min=0.0)
        if self.max_abs is not None:
            if self.constraint == "softplus":   # softplus(ρ) ≤ m  ⇔  ρ ≤ softplus⁻¹(m)
                self.gamma.clamp_(max=_softplus_inverse(self.max_abs))
            else:
                self.gamma.clamp_(min=-self.max_abs, max=self.max_abs)

    @torch.no_grad()
    def set_value(self, value: float | torch.Tensor) -> None:
        """Set the effective γ (inverting the constraint), e.g. to fix a scale."""
        v = torch.as_tensor(value, dtype=self.gamma.dtype).expand_as(self.gamma)
        if self.constraint == "softplus":
            v = v + torch.log(-torch.expm1(-v))
        self.gamma.copy_(v)

    def extra_repr(self) -> str:
        shape = "scalar" if self.gamma.dim() == 0 else f"channel({self.gamma.numel()})"
        bound = "" if self.max_abs is None else f", max_abs={self.max_abs}"
        return f"{shape}, constraint={self.constraint}{bound}"
