"""A cell's run configuration: the sweep's resolved base config plus the cell's values.

Grid keys are ordinary ``--set`` keys, plus one derived key, ``peft.scale``: the fixed module
scale α/r that the paper's Fig. 1(d) varies. It is turned into ``peft.alpha`` after the rest of
the cell is applied, so ``peft.rank × peft.scale`` grids keep the scale (not α) fixed per column.
A sweep's fixed ``--set peft.scale=X`` is applied the same way, per cell, so it holds across a rank axis.
"""

from __future__ import annotations

import copy
from dataclasses import fields
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from ..config import SECTIONS, ConfigError, RunConfig, apply_override
from ..peft.config import PeftConfig
from ..peft.registry import get_method
from .grid import Cell

SCALE_KEY = "peft.scale"
DERIVED_KEYS = (SCALE_KEY,)


def alpha_for_scale(peft: PeftConfig, scale: float) -> float:
    """α giving the module scale ``scale`` (the method's scale rule inverted: LoRA α/r, Adapter α, ...)."""
    return get_method(peft.method).alpha_for_scale(peft, scale)


def split_derived(overrides: list[str]) -> tuple[list[str], dict[str, str]]:
    """(ordinary ``--set`` overrides, derived ones such as ``peft.scale`` as key → raw value)."""
    plain: list[str] = []
    derived: dict[str, str] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if sep and key.strip() in DERIVED_KEYS:
            derived[key.strip()] = raw.strip()
        else:
            plain.append(item)
    return plain, derived


def resolve_base(config: str | Path | None, overrides: list[str]) -> dict[str, Any]:
    """The full base config as a plain dict (every field explicit, so it is stored self-contained).

    Derived overrides are left out here: they depend on the cell (α = scale·r needs the cell's rank),
    so ``plan`` applies them per cell via ``split_derived``.
    """
    plain, derived = split_derived(overrides)
    for key, raw in derived.items():
        _positive_float(key, raw)
    return RunConfig.load(config, plain).to_dict()


def build_cell_config(base: dict[str, Any], cell: Cell) -> RunConfig:
    """Apply a cell's values to a copy of the base dict and validate the result."""
    data = copy.deepcopy(base)
    derived = {k: v for k, v in cell.items() if k in DERIVED_KEYS}
    for key, raw in cell.items():
        if key not in DERIVED_KEYS:
            apply_override(data, f"{key}={raw}")
            _wrap_scalar_list(data, key)
    for key in ("export_merged", "export_onnx"):  # whole-model files per cell fill a disk: opt in per sweep
        if data["train"].get(key) is None:
            data["train"][key] = False
    cfg = RunConfig.from_dict(data)
    if SCALE_KEY in derived:
        scale = _positive_float(SCALE_KEY, derived[SCALE_KEY])
        data["peft"]["alpha"] = alpha_for_scale(cfg.peft, scale)
        cfg = RunConfig.from_dict(data)
    return cfg


def _wrap_scalar_list(data: dict[str, Any], key: str) -> None:
    """``peft.positions=q`` means ``[q]``: a single word for a list-typed field becomes a one-item list."""
    section, _, name = key.partition(".")
    cls = SECTIONS.get(section)
    if cls is None or "." in name or name not in {f.name for f in fields(cls)}:
        return
    hint = get_type_hints(cls)[name]
    options = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    is_list = any((get_origin(t) or t) is list for t in options) and str not in options  # peft.blocks: "last:2"
    value = data[section][name]
    if is_list and isinstance(value, (str, int, float)) and not isinstance(value, bool) and "," not in str(value):
        data[section][name] = [value]


def _positive_float(key: str, raw: str) -> float:
    try:
        value = float(yaml.safe_load(raw))
    except (TypeError, ValueError, yaml.YAMLError):
        raise ConfigError(f"{key}={raw!r}: expected a number") from None
    if value <= 0:
        raise ConfigError(f"{key} must be > 0, got {value}")
    return value
