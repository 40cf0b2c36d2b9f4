"""The one validation home: Literal choices, ranges, finite floats, nesting depth, and a fuzzed --set parser."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metapeft as mp
from metapeft.config import SECTIONS, RunConfig, apply_override
from metapeft.errors import ConfigError, MetapeftError
from metapeft.peft import Modulator
from metapeft.peft.modulator import gamma_setting_problem
from metapeft.validation import MAX_DEPTH, check_depth


@pytest.mark.parametrize("init,constraint,gmax,ok", [
    (0.0, "none", 2.0, True),        # valid: |init| <= max (was refused: "must be > 0 and >= |gamma_init|")
    (1.0, "none", 1.0, True),
    (-1.5, "none", 2.0, True),
    (1.0, "none", 0.5, False),       # |init| > max
    (0.0, "none", 0.0, False),       # max <= 0
    (0.5, "none", -1.0, False),
    (-1.0, "clamp", None, False),    # clamp needs init >= 0: the config now says so, not apply_peft
    (0.0, "clamp", None, True),
    (0.0, "softplus", None, False),
])
def test_gamma_rule_is_one_rule_for_config_and_module(init, constraint, gmax, ok):
    assert (gamma_setting_problem(init, constraint, gmax) is None) is ok
    if ok:
        mp.PeftConfig(gamma_init=init, gamma_constraint=constraint, gamma_max=gmax)
        Modulator(4, init=init, constraint=constraint, max_abs=gmax)
    else:
        with pytest.raises(ConfigError, match="peft.gamma_"):
            mp.PeftConfig(gamma_init=init, gamma_constraint=constraint, gamma_max=gmax)
        with pytest.raises(ValueError):
            Modulator(4, init=init, constraint=constraint, max_abs=gmax)


def test_every_literal_field_is_checked_from_its_annotation():
    """No list of choices is written by hand: each Literal field refuses a value outside its type."""
    from typing import Literal, get_origin, get_type_hints
    from dataclasses import fields

    checked = 0
    for name, cls in SECTIONS.items():
        hints = get_type_hints(cls)
        for f in fields(cls):
            if get_origin(hints[f.name]) is Literal:
                with pytest.raises(ConfigError, match=rf"{name}\.{f.name}: unknown {f.name} 'zzz'; allowed"):
                    RunConfig.from_dict({name: {f.name: "zzz"}})
                checked += 1
    assert checked == 11  # model 2, peft 3, meta 4, train 2


@pytest.mark.parametrize("blocks,expect", [
    ("all", "all"), ("last:3", "last:3"), (" last: 2", "last:2"), ("1,2", [1, 2]), (3, [3]), ([0, -1], [0, -1]),
    ("last:0", None), ("last:abc", None), ("first", None), (True, None), ([], None), ([True], None), ([1.7], None),
    ({"a": 1}, None),
])
def test_blocks_are_structured(blocks, expect):
    if expect is None:
        with pytest.raises(ConfigError, match="peft.blocks"):
            mp.PeftConfig(blocks=blocks)
    else:
        assert mp.PeftConfig(blocks=blocks).blocks == expect


def test_nesting_depth_and_recursive_alias_are_refused(tmp_path):
    deep = "[" * 3000 + "]" * 3000
    with pytest.raises(ConfigError, match="nested"):
        RunConfig.load(None, [f"data.options={{x: {deep}}}"])
    with pytest.raises(ConfigError, match="nested"):
        check_depth("k", [[[[1]]]], limit=3)
    check_depth("k", [[1]], limit=MAX_DEPTH)
    cfg = tmp_path / "alias.yaml"
    cfg.write_text("data:\n  options: &a\n    x: *a\n")
    with pytest.raises(ConfigError, match="contains itself"):
        RunConfig.load(cfg)
    shared = tmp_path / "shared.yaml"   # a non-recursive alias used twice is fine
    shared.write_text("data:\n  options:\n    a: &l [1, 2]\n    b: *l\n")
    assert RunConfig.load(shared).data.options == {"a": [1, 2], "b": [1, 2]}


KEYS = [f"{s}.{f}" for s, cls in SECTIONS.items() for f in cls.__dataclass_fields__]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
YAMLISH = st.one_of(
    TEXT, st.integers().map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from([".nan", "-.inf", "null", "~", "[]", "{}", "[1.7]", "last:abc", "{a: 1}", "q,v", ",", "'",
                     "&a [*a]", "!!python/object:os.system", "2001-02-30", "1e400", "0x1F", "[" * 50]),
    st.recursive(st.integers().map(str) | TEXT, lambda c: st.lists(c, max_size=3).map(lambda v: "[" + ",".join(v) + "]"),
                 max_leaves=8),
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.one_of(st.sampled_from(KEYS), TEXT), value=YAMLISH, sep=st.sampled_from(["=", "", "=="]))
def test_set_parser_raises_only_the_tools_own_errors(key, value, sep):
    """Whatever --set gets, the parser and config build either succeed or raise a MetapeftError."""
    try:
        data: dict = {}
        apply_override(data, f"{key}{sep}{value}")
        RunConfig.from_dict(data).to_yaml()
    except MetapeftError:
        pass
