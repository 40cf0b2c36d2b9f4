"""The Fig. 1 presets expand to the paper's grids (checked through the configs they produce)."""

from __future__ import annotations

import pytest

from metapeft.config import ConfigError
from metapeft.experiments.cellconfig import build_cell_config, resolve_base
from metapeft.experiments.grid import expand, merge_axes, parse_axis
from metapeft.experiments.presets import build_preset

POSITIONS = ["q", "k", "v", "out", "mlp1", "mlp2"]
EXPONENTS = range(-4, 8)


def _configs(name: str, depth: int = 12, extra: list[str] = ()):
    p = build_preset(name, depth)
    axes = merge_axes(p.axes, [parse_axis(g) for g in extra])
    base = resolve_base(None, p.overrides)
    return [build_cell_config(base, c) for c in expand(axes)]


def test_fig1c_single_site_per_cell():
    cfgs = _configs("fig1c", depth=12)
    assert len(cfgs) == 6 * 12
    assert {(c.peft.positions[0], c.peft.blocks[0]) for c in cfgs} == {(p, b) for p in POSITIONS for b in range(12)}
    assert all(len(c.peft.positions) == 1 and len(c.peft.blocks) == 1 for c in cfgs)
    assert not any(c.meta.enabled for c in cfgs) and {c.peft.method for c in cfgs} == {"lora"}
    assert len(_configs("fig1c", depth=2)) == 12


def test_fig1d_position_times_scale():
    cfgs = _configs("fig1d")
    assert len(cfgs) == 6 * 12
    assert sorted({c.peft.scale for c in cfgs}) == [2.0 ** k for k in EXPONENTS]
    assert all(c.peft.alpha == c.peft.rank * c.peft.scale for c in cfgs)


def test_rank_scale_keeps_scale_fixed_across_ranks():
    cfgs = _configs("rank_scale")
    assert len(cfgs) == 5 * 12
    assert {(c.peft.rank, c.peft.scale) for c in cfgs} == {(r, 2.0 ** k) for r in (1, 2, 4, 8, 16) for k in EXPONENTS}
    assert all(c.peft.alpha == c.peft.rank * c.peft.scale for c in cfgs)


def test_user_grid_overrides_preset_axis():
    cfgs = _configs("fig1d", extra=["peft.scale=1,2", "peft.rank=2,4"])
    assert len(cfgs) == 6 * 2 * 2 and {c.peft.scale for c in cfgs} == {1.0, 2.0}


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset"):
        build_preset("fig9")
