"""``metapeft config [SECTION]``: every configuration key with its type, default, allowed values and help.

Types, defaults and help come from the dataclass fields in ``config.py`` (and ``peft/config.py``); the
enumerated keys' allowed values are read from their ``Literal`` annotations (``CHOICES``; a test checks
each one against the dataclass validation).
"""

from __future__ import annotations

import dataclasses
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .config import SECTIONS, ConfigError
from .peft.config import METHODS

def choices(hint: Any) -> tuple[str, ...]:
    """The allowed values of an enumerated key: the ``Literal`` in its annotation (also inside ``| None``)."""
    if get_origin(hint) is Literal:
        return tuple(str(a) for a in get_args(hint))
    if get_origin(hint) in (Union, UnionType):
        return tuple(c for a in get_args(hint) for c in choices(a))
    return ()


def _all_choices() -> dict[str, tuple[str, ...]]:
    out = {}
    for name, cls in SECTIONS.items():
        for key, hint in get_type_hints(cls).items():
            if choices(hint):
                out[f"{name}.{key}"] = choices(hint)
    out.setdefault("peft.method", tuple(METHODS))
    return out


# Derived from the dataclass annotations (the validation reads the same Literals), so it cannot drift.
CHOICES: dict[str, tuple[str, ...]] = _all_choices()


def type_name(hint: Any) -> str:
    if get_origin(hint) in (Union, UnionType):
        return " | ".join(type_name(a) for a in get_args(hint))
    if hint is type(None):
        return "null"
    if hint is Any:
        return "any"
    origin = get_origin(hint)
    if origin is not None:
        args = ", ".join(type_name(a) for a in get_args(hint))
        return f"{origin.__name__}[{args}]"
    return getattr(hint, "__name__", str(hint))


def describe(section: str | None = None) -> list[dict[str, Any]]:
    """One dict per key: key, type, default, allowed, help."""
    if section is not None and section not in SECTIONS:
        raise ConfigError(f"unknown config section {section!r}; sections: {', '.join(SECTIONS)}")
    rows = []
    for name, cls in SECTIONS.items():
        if section not in (None, name):
            continue
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            key = f"{name}.{f.name}"
            rows.append({"key": key, "type": type_name(hints[f.name]), "default": default,
                         "allowed": list(CHOICES.get(key, ())), "help": f.metadata.get("help", "")})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        default = "null" if r["default"] is None else r["default"]
        allowed = f"  allowed: {' | '.join(r['allowed'])}" if r["allowed"] else ""
        lines.append(f"{r['key']}  ({r['type']}, default {default}){allowed}")
        lines.append(f"    {r['help']}")
    return "\n".join(lines)
