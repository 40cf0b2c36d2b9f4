"""Run presets shipped inside the package (``metapeft/configs/*.yaml``), usable by name.

``--config demo`` or ``--config aid_lt_lora`` finds the packaged YAML, so an installed wheel has the
presets without a checkout; ``configs/`` in the repository is a link to the same folder (one source).
A path that exists always wins over a preset name.
"""

from __future__ import annotations

from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent / "configs"
ALIASES = {"demo": "demo_aid_lt"}


def preset_names() -> list[str]:
    return sorted([p.stem for p in PRESET_DIR.glob("*.yaml")] + list(ALIASES))


def resolve_config_path(spec: str | Path) -> Path | None:
    """The file for ``spec`` (an existing path, or a preset name with or without ``.yaml``); None if neither."""
    p = Path(spec).expanduser()
    if p.is_file():
        return p
    name = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if str(p.parent) in (".", "configs"):
        candidate = PRESET_DIR / f"{ALIASES.get(name, name)}.yaml"
        if candidate.is_file():
            return candidate
    return None
