"""Named grids for the paper's Fig. 1 analyses; they expand to ordinary axes plus fixed overrides.

Fixed overrides sit between the config file and the user's ``--set`` (so ``--set`` wins), and a
user ``--grid`` on the same key replaces the preset's axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from ..peft.config import POSITIONS
from .cellconfig import SCALE_KEY
from .grid import Axis

LORA_POSITIONS: tuple[str, ...] = POSITIONS["lora"]
SCALE_EXPONENTS = tuple(range(-4, 8))   # Fig. 1(d): scale 2^-4 … 2^7
RANKS = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    axes: list[Axis]
    overrides: list[str] = field(default_factory=list)


def scale_values(exponents: tuple[int, ...] = SCALE_EXPONENTS) -> tuple[str, ...]:
    return tuple(f"{2.0 ** k:g}" for k in exponents)


def _fig1c(depth: int) -> Preset:
    return Preset("fig1c", "one LoRA site: position × block (Fig. 1c)",
                  [Axis("peft.positions", LORA_POSITIONS), Axis("peft.blocks", tuple(f"[{b}]" for b in range(depth)))],
                  ["peft.method=lora", "meta.enabled=false"])


def _fig1d(depth: int) -> Preset:
    return Preset("fig1d", "LoRA position × fixed scale 2^k, k = -4..7 (Fig. 1d)",
                  [Axis("peft.positions", LORA_POSITIONS), Axis(SCALE_KEY, scale_values())],
                  ["peft.method=lora", "meta.enabled=false"])


def _rank_scale(depth: int) -> Preset:
    return Preset("rank_scale", "LoRA rank × fixed scale 2^k, k = -4..7",
                  [Axis("peft.rank", tuple(str(r) for r in RANKS)), Axis(SCALE_KEY, scale_values())],
                  ["peft.method=lora", "meta.enabled=false"])


PRESETS = {"fig1c": _fig1c, "fig1d": _fig1d, "rank_scale": _rank_scale}


def build_preset(name: str, depth: int = 12) -> Preset:
    """The preset ``name`` for a backbone of ``depth`` blocks."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    if depth < 1:
        raise ConfigError(f"--depth must be >= 1, got {depth}")
    return PRESETS[name](depth)
