"""Grid syntax, cartesian expansion, slugs, and how a cell becomes a validated RunConfig (no training)."""

from __future__ import annotations

import pytest

from metapeft.config import ConfigError
from metapeft.experiments.cellconfig import build_cell_config, resolve_base
from metapeft.experiments.grid import (
    Axis, cell_slug, expand, merge_axes, parse_axis, seeds_axis, split_values, unique_slugs,
)
from metapeft.experiments.hpo import HpoSpec
from metapeft.experiments.sweep import SweepSpec, plan


@pytest.mark.parametrize("raw,values", [
    ("1,2,4", ["1", "2", "4"]),
    ("[0],[1],[2,3]", ["[0]", "[1]", "[2,3]"]),            # commas inside brackets do not split
    ("q,v;k;mlp1", ["q,v", "k", "mlp1"]),                  # ';' present: only ';' splits
    ("q,v;", ["q,v"]),                                     # trailing ';' = one comma-list value
    ("{a: 1, b: 2},{a: 3}", ["{a: 1, b: 2}", "{a: 3}"]),
    (" last:4 , all ", ["last:4", "all"]),
])
def test_split_values(raw, values):
    assert split_values(raw) == values


@pytest.mark.parametrize("text,needle", [
    ("peft.rank", "section.key=v1,v2"), ("rank=1,2", "<section>.<field>"), ("peft.rank=", "no values"),
    ("peft.rank=1,1", "repeated"), ("peft.blocks=[0,[1]", "unbalanced"),
])
def test_bad_axis(text, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace(".", r"\.")):
        parse_axis(text)


def test_expand_is_cartesian_with_last_axis_fastest():
    cells = expand([parse_axis("peft.positions=q,v"), parse_axis("peft.blocks=[0],[1]"), seeds_axis("0,1")])
    assert len(cells) == 8
    assert cells[0] == {"peft.positions": "q", "peft.blocks": "[0]", "train.seed": "0"}
    assert cells[1]["train.seed"] == "1"
    assert cells[-1] == {"peft.positions": "v", "peft.blocks": "[1]", "train.seed": "1"}
    assert expand([]) == [{}]


def test_merge_axes_replaces_in_place_and_appends():
    merged = merge_axes([Axis("a.x", ("1",)), Axis("a.y", ("2",))], [Axis("a.x", ("3", "4")), Axis("a.z", ("5",))])
    assert merged == [Axis("a.x", ("3", "4")), Axis("a.y", ("2",)), Axis("a.z", ("5",))]


def test_slugs_are_readable_safe_and_unique():
    assert cell_slug({"peft.positions": "q", "peft.blocks": "[3]", "train.seed": "0"}) == \
        "peft.positions=q__peft.blocks=[3]__train.seed=0"
    assert cell_slug({"peft.blocks": "last:4", "data.root": "/a b/c"}) == "peft.blocks=last-4__data.root=-ab-c"
    twins = unique_slugs([{"p.x": "a/b"}, {"p.x": "a:b"}])
    assert twins[0] != twins[1] and all(s.startswith("p.x=a-b-") for s in twins)
    assert len(cell_slug({"peft.positions": "q," * 200})) < 200


def test_seeds_axis():
    assert seeds_axis("0,1,2") == Axis("train.seed", ("0", "1", "2"))
    with pytest.raises(ConfigError, match="integers"):
        seeds_axis("0,x")


def test_cell_config_values_and_derived_scale():
    base = resolve_base(None, ["peft.rank=8"])
    cfg = build_cell_config(base, {"peft.positions": "q", "peft.blocks": "[3]", "peft.scale": "0.25"})
    assert cfg.peft.positions == ["q"] and cfg.peft.blocks == [3]
    assert cfg.peft.alpha == 2.0 and cfg.peft.scale == 0.25          # LoRA: alpha = rank · scale
    cfg = build_cell_config(base, {"peft.rank": "2", "peft.scale": "4"})
    assert cfg.peft.alpha == 8.0 and cfg.peft.scale == 4.0           # scale follows the cell's own rank
    cfg = build_cell_config(base, {"peft.method": "adapter", "peft.scale": "0.5"})
    assert cfg.peft.scale == 0.5                                     # Adapter: alpha is the scale
    assert base["peft"]["alpha"] is None, "the base dict must not be modified"
    assert build_cell_config(base, {"data.group_thresholds": "[50,10]"}).data.group_thresholds == [50, 10]


@pytest.mark.parametrize("cell,needle", [
    ({"peft.rnk": "2"}, "unknown key"), ({"peft.scale": "-1"}, "must be > 0"), ({"peft.scale": "big"}, "number"),
    ({"peft.positions": "q,x;"}, "unknown position"),
])
def test_bad_cell_values(cell, needle):
    with pytest.raises(ConfigError, match=needle):
        build_cell_config(resolve_base(None, []), cell)


def test_fixed_scale_override_applies_per_cell():
    """``sweep --set peft.scale=4 --grid peft.rank=1,4``: the scale (not α) is what stays fixed."""
    spec = SweepSpec.create(None, ["peft.scale=4", "peft.method=lora"], [Axis("peft.rank", ("1", "4"))])
    [(slug1, _, cfg1), (slug4, _, cfg4)] = plan(spec)
    assert (cfg1.peft.alpha, cfg4.peft.alpha) == (4.0, 16.0) and cfg1.peft.scale == cfg4.peft.scale == 4.0
    assert slug1 == "peft.rank=1", "a fixed override is not part of the cell's name"
    # a cell value wins over the fixed one
    spec = SweepSpec.create(None, ["peft.scale=4"], [Axis("peft.scale", ("0.5",))])
    assert plan(spec)[0][2].peft.scale == 0.5
    with pytest.raises(ConfigError, match="must be > 0"):
        SweepSpec.create(None, ["peft.scale=0"], [Axis("peft.rank", ("1",))])
    with pytest.raises(ConfigError, match="--optuna searches peft.scale"):
        HpoSpec.create(None, ["peft.scale=4"], n_trials=2)
