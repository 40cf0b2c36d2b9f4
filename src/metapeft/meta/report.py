"""The γ report: block × position map of γ and α·γ, and the sites γ switched off."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..peft import modulators, site_modules
from ..peft.apply import POSITION_ORDER


@dataclass
class GammaReport:
    positions: list[str]
    blocks: list[int]
    gamma: dict[str, float]            # "block.position" → the site's γ (Modulator.site_value)
    effective_scale: dict[str, float]  # "block.position" → α·γ
    below_threshold: list[str]         # sites whose |γ| fell under the threshold ("not inserted")
    threshold: float

    def to_dict(self) -> dict:
        return {"positions": self.positions, "blocks": self.blocks, "gamma": self.gamma,
                "effective_scale": self.effective_scale, "below_threshold": self.below_threshold,
                "threshold": self.threshold}

    def table(self, values: str = "gamma") -> str:
        """A plain-text block × position grid (rows = blocks)."""
        data = getattr(self, values)
        head = "block " + " ".join(f"{p:>7}" for p in self.positions)
        rows = [head]
        for b in self.blocks:
            cells = [f"{data[f'{b}.{p}']:7.3f}" if f"{b}.{p}" in data else "      -" for p in self.positions]
            rows.append(f"{b:>5} " + " ".join(cells))
        return "\n".join(rows)


def gamma_report(model: nn.Module, threshold: float = 0.1) -> GammaReport:
    gamma, scale, low = {}, {}, []
    sites = site_modules(model)
    for site, mod in modulators(model).items():
        g = mod.site_value()
        key = str(site)
        gamma[key] = g
        scale[key] = sites[site].scale * g
        if abs(g) < threshold:
            low.append(key)
    positions = [p for p in POSITION_ORDER if any(s.position == p for s in sites)]
    blocks = sorted({s.block for s in sites})
    return GammaReport(positions, blocks, gamma, scale, low, threshold)


@torch.no_grad()
def prune_sites(model: nn.Module, sites: list[str]) -> int:
    """Switch the given sites off for good (γ = 0 and frozen)."""
    n = 0
    for site, mod in modulators(model).items():
        if str(site) in sites:
            if mod.constraint == "softplus":
                mod.gamma.fill_(-torch.inf)  # softplus(-inf) = 0 exactly
            else:
                mod.set_value(0.0)
            mod.gamma.requires_grad_(False)
            n += 1
    return n


def gamma_summary(gamma_json: dict, meta_enabled: bool) -> str:
    """What ``metapeft train`` prints about γ: the learned map, or one line saying γ stayed fixed.

    A table of 1.000s titled "learned γ" on a run whose meta-learning was off would claim a result
    that never happened, so a fixed-γ run says so instead.
    """
    data = {k: v for k, v in gamma_json.items() if k != "trace"}
    report = GammaReport(**data)
    if not meta_enabled:
        values = sorted(set(report.gamma.values()))
        shown = f"{values[0]:g}" if len(values) == 1 else "its initial values"
        return f"γ fixed at {shown} (meta.enabled=false: no meta-learning in this run)"
    lines = ["learned γ (block × position):", report.table("gamma")]
    if report.below_threshold:
        lines.append(f"sites with |γ| < {report.threshold} (not inserted): {', '.join(report.below_threshold)}")
    return "\n".join(lines)
