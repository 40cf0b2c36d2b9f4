"""Installable into an existing environment: ranges in pyproject, pins in the lock, presets in the wheel
(issue 13, item 10)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

from metapeft.config import RunConfig
from metapeft.config_presets import PRESET_DIR, resolve_config_path

REPO = Path(__file__).resolve().parents[1]


def _locked() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_pyproject_ranges_admit_the_locked_versions_and_pin_nothing():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + sum(project["optional-dependencies"].values(), [])]
    locked = _locked()
    for r in reqs:
        assert not any(s.operator == "==" for s in r.specifier), f"{r} pins an exact version"
        name = r.name.lower().replace("_", "-")
        assert name in locked, f"{name} is not in requirements.lock"
        assert r.specifier.contains(locked[name]), f"locked {name}=={locked[name]} is outside {r.specifier}"


def test_presets_by_name_and_by_repository_path():
    assert resolve_config_path("demo") == PRESET_DIR / "demo_aid_lt.yaml"
    assert RunConfig.load("demo").meta.mode == "stepsize"
    assert RunConfig.load("configs/aid_lt_lora.yaml").meta.enabled is False   # dev.sh / README paths
    assert (REPO / "configs").resolve() == PRESET_DIR                          # one source of truth


def test_wheel_ships_the_presets(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", str(REPO),
                          "-w", str(tmp_path), "-q"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("metapeft-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for preset in PRESET_DIR.glob("*.yaml"):
        assert f"metapeft/configs/{preset.name}" in names
    assert "metapeft/data/groups/dota.yaml" in names
