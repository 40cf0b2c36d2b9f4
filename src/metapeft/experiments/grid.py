"""Grid syntax: ``--grid key=v1,v2`` axes, their cartesian product, and readable cell slugs.

Syntax (one axis per ``--grid`` argument; each value is parsed as YAML, like ``--set``):

* ``peft.rank=1,2,4`` — commas separate values;
* ``peft.blocks=[0],[1],[2,3]`` — commas inside ``[...]`` / ``{...}`` do not split;
* ``peft.positions=q,v;k;mlp1`` — when the text contains ``;``, only ``;`` splits, so a value may be a
  comma list (``q,v``); a trailing ``;`` makes one comma-list value (``peft.positions=q,v;``).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass

from ..config import ConfigError

Cell = dict[str, str]  # grid key → raw value text (as it would follow ``--set key=``)

SEED_KEY = "train.seed"
_MAX_SLUG = 180
_UNSAFE = re.compile(r"[^A-Za-z0-9._,+=\[\]-]")


@dataclass(frozen=True)
class Axis:
    """One grid dimension: a config key and its values (raw YAML text, order kept)."""

    key: str
    values: tuple[str, ...]


def split_values(raw: str) -> list[str]:
    """Split an axis' value text: on ``;`` if present, else on commas outside brackets."""
    if ";" in raw:
        parts = raw.split(";")
    else:
        parts, depth, start = [], 0, 0
        for i, ch in enumerate(raw):
            if ch in "[{(":
                depth += 1
            elif ch in "]})":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(raw[start:i])
                start = i + 1
        parts.append(raw[start:])
        if depth != 0:
            raise ConfigError(f"grid values {raw!r}: unbalanced brackets")
    return [p.strip() for p in parts if p.strip()]


def parse_axis(text: str) -> Axis:
    """``key=v1,v2`` → ``Axis``; the key must be ``section.field`` (checked when cells are built)."""
    if "=" not in text:
        raise ConfigError(f"--grid {text!r} must look like section.key=v1,v2")
    key, raw = (s.strip() for s in text.split("=", 1))
    if key.count(".") < 1:
        raise ConfigError(f"--grid {text!r}: key must be <section>.<field>")
    values = split_values(raw)
    if not values:
        raise ConfigError(f"--grid {text!r}: no values")
    if len(set(values)) != len(values):
        raise ConfigError(f"--grid {text!r}: repeated values")
    return Axis(key, tuple(values))


def seeds_axis(text: str) -> Axis:
    """``--seeds 0,1,2`` → the ``train.seed`` axis."""
    try:
        seeds = [int(s) for s in split_values(text)]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected comma-separated integers") from None
    if not seeds:
        raise ConfigError("--seeds: no seeds given")
    return Axis(SEED_KEY, tuple(str(s) for s in seeds))


def merge_axes(base: list[Axis], extra: list[Axis]) -> list[Axis]:
    """Axes of ``extra`` replace same-key axes of ``base`` in place; new keys are appended."""
    out = {a.key: a for a in base}
    for a in extra:
        out[a.key] = a
    return list(out.values())


def expand(axes: list[Axis]) -> list[Cell]:
    """Cartesian product in axis order (the last axis varies fastest)."""
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"grid keys repeat: {keys}")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(a.values for a in axes))]


def cell_slug(cell: Cell) -> str:
    """A readable, filesystem-safe directory name, e.g. ``peft.positions=q__peft.blocks=[3]``."""
    if not cell:
        return "base"
    parts = [f"{k}={_UNSAFE.sub('-', v.replace(' ', ''))}" for k, v in cell.items()]
    slug = "__".join(parts)
    if len(slug) > _MAX_SLUG:  # keep it short enough for any filesystem, and still unique
        slug = f"{slug[:_MAX_SLUG]}-{_digest(cell)}"
    return slug


def unique_slugs(cells: list[Cell]) -> list[str]:
    """Slugs of all cells; two cells that sanitise alike both get a hash suffix."""
    slugs = [cell_slug(c) for c in cells]
    seen: dict[str, int] = {}
    for s in slugs:
        seen[s] = seen.get(s, 0) + 1
    return [f"{s}-{_digest(c)}" if seen[s] > 1 else s for s, c in zip(slugs, cells)]


def _digest(cell: Cell) -> str:
    return hashlib.sha1(repr(sorted(cell.items())).encode()).hexdigest()[:8]
