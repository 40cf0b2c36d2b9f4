"""One home for checking configuration values, driven by each field's type and metadata.

Every config dataclass (``DataConfig`` ... ``TrainConfig``, ``PeftConfig``) calls
:func:`validate_fields` from ``__post_init__``, so a value is checked the same way whether it comes
from YAML, ``--set`` or Python. Why generic: choices are read from ``Literal`` annotations and ranges
from ``field(metadata=spec(...))``, so a new field cannot forget its check and no list of allowed
values is written twice. Cross-field rules (e.g. γ's init vs. its bound) stay in the dataclass.

Every message names the key, the value and what is allowed.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import fields
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError

MAX_DEPTH = 16  # nesting of YAML / --set values (dict options); deeper is refused, never a RecursionError


_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def spec(help: str, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
         lt: float | None = None, length: int | None = None, empty: bool = False) -> dict[str, Any]:
    """Field metadata: help text plus the allowed range (applied to each element of a list).

    ``length`` fixes a list's length; lists must be non-empty unless ``empty=True``.
    """
    return {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "length": length, "empty": empty}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def validate_fields(obj: Any, section: str) -> None:
    """Coerce and check every field of dataclass ``obj`` in place (raises ConfigError)."""
    hints = _hints(type(obj))
    for f in fields(obj):
        key = f"{section}.{f.name}"
        value = coerce(key, getattr(obj, f.name), hints[f.name])
        check_range(key, value, f.metadata)
        setattr(obj, f.name, value)


def describe(hint: Any) -> str:
    """A short human description of a type annotation (for error messages)."""
    if get_origin(hint) is Literal:
        return " | ".join(str(a) for a in get_args(hint))
    if get_origin(hint) in (Union, UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in get_args(hint))
    if get_origin(hint) is list:
        (item,) = get_args(hint) or (Any,)
        return f"a list of {describe(item)}"
    if get_origin(hint) is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def coerce(key: str, value: Any, hint: Any) -> Any:
    """Return ``value`` converted to ``hint`` (int → float, "q,v" → list, "1e-3" → float) or raise."""
    options = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    if value is None:
        if type(None) in options or hint is Any:
            return None
        raise ConfigError(f"{key} may not be null; expected {describe(hint)}")
    for t in options:
        ok, out = _try(key, value, t)
        if ok:
            return out
    if get_origin(hint) is Literal:
        raise ConfigError(f"{key}: unknown {key.rsplit('.', 1)[-1]} {value!r}; allowed: {describe(hint)}")
    raise ConfigError(f"{key}: expected {describe(hint)}, got {value!r}")


def _try(key: str, value: Any, t: Any) -> tuple[bool, Any]:
    origin = get_origin(t) or t
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is Any:
        check_depth(key, value)
        return True, value
    if origin is Literal:
        return any(a == value and type(a) is type(value) for a in get_args(t)), value
    if origin is float and (is_num or isinstance(value, str)):
        try:  # YAML 1.1 reads "1e-3" as a string
            out = float(value)
        except (ValueError, OverflowError):
            return False, None
        if not math.isfinite(out):
            raise ConfigError(f"{key} = {value!r}: must be a finite number")
        return True, out
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if origin in (bool, str):
        return isinstance(value, origin), value
    if origin is list:
        if isinstance(value, str):  # "q,v" or "q" from the command line
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            return False, None
        (item,) = get_args(t) or (Any,)
        return True, [coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            return False, None
        check_depth(key, value)
        return True, value
    return False, None


def check_range(key: str, value: Any, meta: Any) -> None:
    """Apply ``spec`` bounds (to a number, or to each number of a list) and list length rules."""
    if value is None:
        return
    if isinstance(value, list):
        if meta.get("length") is not None and len(value) != meta["length"]:
            raise ConfigError(f"{key} = {value!r}: must have exactly {meta['length']} values")
        if not value and not meta.get("empty", False):
            raise ConfigError(f"{key} = []: must not be empty")
        for i, v in enumerate(value):
            check_range(f"{key}[{i}]", v, meta)
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    for op, name in ((">=", "ge"), (">", "gt"), ("<=", "le"), ("<", "lt")):
        bound = meta.get(name)
        if bound is not None and not _OPS[op](value, bound):
            raise ConfigError(f"{key} = {value!r}: must be {op} {bound} ({allowed(meta)})")


def allowed(meta: Any) -> str:
    """'allowed: 0 <= x < 1'-style text of a spec's bounds."""
    lo = f"{meta['ge']} <= " if meta.get("ge") is not None else f"{meta['gt']} < " if meta.get("gt") is not None else ""
    hi = f" <= {meta['le']}" if meta.get("le") is not None else f" < {meta['lt']}" if meta.get("lt") is not None else ""
    return f"allowed: {lo}x{hi}"


def check_depth(key: str, value: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse values nested deeper than ``limit`` or containing themselves (a recursive YAML alias)."""
    _walk(key, value, 0, limit, frozenset())


def _walk(key: str, node: Any, depth: int, limit: int, ancestors: frozenset[int]) -> None:
    if not isinstance(node, (dict, list, tuple)):
        return
    if id(node) in ancestors:
        raise ConfigError(f"{key}: the value contains itself (a recursive YAML alias); write it out in full")
    if depth >= limit:
        raise ConfigError(f"{key}: the value is nested more than {limit} levels deep")
    for child in (node.values() if isinstance(node, dict) else node):
        _walk(key, child, depth + 1, limit, ancestors | {id(node)})
