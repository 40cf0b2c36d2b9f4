"""``DIR/sweep.yaml``: what a sweep (or HPO study) directory was made from, so it can be resumed,
checked against a changed command line, and reported on without the original config file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError
from ..atomic import atomic_write_text

MANIFEST = "sweep.yaml"


def read_manifest(out: Path) -> dict[str, Any] | None:
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or "kind" not in data:
        raise ConfigError(f"{path} is not a metapeft sweep manifest")
    return data


def write_manifest(out: Path, data: dict[str, Any]) -> Path:
    path = Path(out) / MANIFEST
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def check_compatible(out: Path, kind: str, base: dict[str, Any]) -> None:
    """Refuse to mix runs of another base config (or another sweep kind) into an existing directory."""
    old = read_manifest(out)
    if old is None:
        return
    if old["kind"] != kind:
        raise ConfigError(f"{out} holds a {old['kind']} sweep, not {kind}; choose another --out")
    # A field added to the config since the sweep started reads as None in the old manifest, so a new
    # field whose default is None does not block resuming an old sweep.
    diff = _diff(old.get("base") or {}, base)
    if diff:
        raise ConfigError(f"{out} was swept with another base config ({'; '.join(diff[:5])}); "
                          f"finished cells would not be comparable. Choose another --out")


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} → {vb!r}")
    return out
