"""The allowed γ settings, torch-free: ``PeftConfig`` (validated at ``import metapeft.config`` time, which
must not load torch) and ``Modulator`` check a setting with the same rule."""

from __future__ import annotations

import math
from typing import Literal

GammaShape = Literal["scalar", "channel"]
GammaConstraint = Literal["none", "clamp", "softplus"]


def gamma_setting_problem(init: float, constraint: str, max_abs: float | None) -> str | None:
    """The one rule for a γ setting (used by PeftConfig and Modulator): what is wrong, or None."""
    if not math.isfinite(init):
        return "the initial γ must be finite"
    if constraint == "softplus" and init <= 0:
        return "softplus-constrained γ needs init > 0"
    if constraint == "clamp" and init < 0:
        return "clamp-constrained γ (γ >= 0) needs init >= 0"
    if max_abs is not None and (max_abs <= 0 or abs(init) > max_abs):
        return "the bound on |γ| must be > 0 and >= |init|"
    return None
