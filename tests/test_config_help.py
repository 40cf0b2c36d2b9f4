"""`metapeft config` lists every key with type, default, allowed values and help (issue 13, item 6)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from metapeft.cli import main
from metapeft.config import SECTIONS, ConfigError, RunConfig
from metapeft.config_help import CHOICES, describe


def test_every_field_is_listed_with_help():
    rows = describe()
    assert len(rows) == sum(len(dataclasses.fields(c)) for c in SECTIONS.values())
    assert all(r["help"] for r in rows), [r["key"] for r in rows if not r["help"]]
    by_key = {r["key"]: r for r in rows}
    assert by_key["data.imbalance_ratio"]["default"] is None and by_key["train.epochs"]["type"] == "int"


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_listed_choices_are_exactly_what_set_accepts(key):
    extra = {"peft.method": ["meta.enabled=false"]}.get(key, [])
    for value in CHOICES[key]:
        RunConfig.load(None, [f"{key}={value}", *extra])
    with pytest.raises(ConfigError):
        RunConfig.load(None, [f"{key}=no_such_choice", *extra])


def test_cli_config_section_and_json(capsys):
    assert main(["config", "train"]) == 0
    out = capsys.readouterr().out
    assert "train.export_merged" in out and not any(line.startswith("data.") for line in out.splitlines())
    assert main(["config", "--json"]) == 0
    assert {r["key"] for r in json.loads(capsys.readouterr().out)} >= {"meta.enabled", "peft.rank"}
    assert main(["config", "nope"]) == 2
