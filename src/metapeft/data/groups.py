"""Many / medium / few class groups: from training counts, or from explicit (shipped) group lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import torch
import yaml

from .imageset import GROUP_NAMES
from .roots import DataError

__all__ = [
    "class_groups_from_counts", "class_groups_from_names", "load_group_file", "shipped_groups", "shipped_classes",
]


def class_groups_from_counts(
    counts: torch.Tensor | Sequence[int], thresholds: tuple[int, int] = (100, 20)
) -> dict[str, list[int]]:
    """Groups by training count: many ``> hi``, medium ``lo..hi`` (inclusive), few ``< lo``.

    Args:
        counts: training samples per class.
        thresholds: ``(hi, lo)``, default (100, 20) as in LIFT / the LT literature.
    """
    hi, lo = int(thresholds[0]), int(thresholds[1])
    if lo > hi:
        raise DataError(f"group thresholds must be (many_above, few_below) with few_below <= many_above; "
                        f"got {thresholds}")
    counts = [int(x) for x in torch.as_tensor(counts).reshape(-1).tolist()]
    return {
        "many": [i for i, n in enumerate(counts) if n > hi],
        "medium": [i for i, n in enumerate(counts) if lo <= n <= hi],
        "few": [i for i, n in enumerate(counts) if n < lo],
    }


def class_groups_from_names(
    spec: Mapping[str, Sequence[str] | None], classes: Sequence[str], source: str = "groups"
) -> dict[str, list[int]]:
    """Map a {many/medium/few: [class names]} spec onto class indices; it must partition ``classes``.

    Names may also be given as integer indices. A missing or null group is empty.
    """
    unknown_keys = set(spec) - set(GROUP_NAMES)
    if unknown_keys:
        raise DataError(f"{source}: unknown group keys {sorted(unknown_keys)}; expected {list(GROUP_NAMES)}")
    index = {name: i for i, name in enumerate(classes)}
    out: dict[str, list[int]] = {}
    seen: dict[int, str] = {}
    for g in GROUP_NAMES:
        out[g] = []
        for item in spec.get(g) or []:
            if isinstance(item, int) and not isinstance(item, bool):
                k = item
                if not 0 <= k < len(classes):
                    raise DataError(f"{source}: class index {k} in group '{g}' is outside 0..{len(classes) - 1}")
            elif str(item) in index:
                k = index[str(item)]
            else:
                raise DataError(f"{source}: class '{item}' in group '{g}' is not one of the classes {list(classes)}")
            if k in seen:
                raise DataError(f"{source}: class '{classes[k]}' is in both '{seen[k]}' and '{g}'")
            seen[k] = g
            out[g].append(k)
        out[g].sort()
    missing = [classes[k] for k in range(len(classes)) if k not in seen]
    if missing:
        raise DataError(f"{source}: classes {missing} are in no group; every class needs one of {list(GROUP_NAMES)}")
    return out


def load_group_file(path: str | Path, classes: Sequence[str]) -> dict[str, list[int]]:
    """Read a group YAML (keys many/medium/few, values lists of class names) and map it onto ``classes``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"group file not found: {path}")
    spec = yaml.safe_load(path.read_text()) or {}
    spec = spec.get("groups", spec)
    if not isinstance(spec, Mapping):
        raise DataError(f"{path}: expected a mapping with keys many/medium/few")
    return class_groups_from_names(spec, classes, source=str(path))


def _shipped_spec(name: str) -> dict:
    res = resources.files("metapeft.data").joinpath("groups", f"{name}.yaml")
    if not res.is_file():
        raise DataError(f"no shipped group file '{name}.yaml' in metapeft/data/groups")
    return yaml.safe_load(res.read_text()) or {}


def shipped_classes(name: str) -> list[str]:
    """The default class list stored with a shipped group file (label order of the official split files)."""
    return [str(c) for c in _shipped_spec(name).get("classes", [])]


def shipped_groups(name: str, classes: Sequence[str]) -> dict[str, list[int]]:
    """The groups shipped with metapeft (``metapeft/data/groups/<name>.yaml``: dota, fusrs_v17, fusrs_v25)."""
    spec = _shipped_spec(name)
    return class_groups_from_names(spec.get("groups", spec), classes, source=f"metapeft/data/groups/{name}.yaml")
