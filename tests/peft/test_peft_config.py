"""`PeftConfig` validation and YAML round-trip; the γ modulator's constraints."""

from __future__ import annotations

import pytest
import torch

import metapeft as mp
from metapeft.peft import Modulator


def test_yaml_round_trip():
    cfg = mp.PeftConfig(method="lora", positions=["q", "v"], blocks=[0, 3], rank=8, alpha=4.0,
                        gamma_shape="channel", gamma_constraint="softplus", gamma_init=0.5)
    again = mp.PeftConfig.from_yaml(cfg.to_yaml())
    assert again == cfg and again.scale == 0.5


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "prefix"}, "unknown method"),
    ({"method": "lora", "positions": ["mlp"]}, "unknown position"),
    ({"method": "adapter", "positions": ["q"]}, "unknown position"),
    ({"rank": 0}, "rank"),
    ({"dropout": 1.5}, "dropout"),
    ({"gamma_shape": "matrix"}, "gamma_shape"),
    ({"gamma_constraint": "sigmoid"}, "gamma_constraint"),
    ({"gamma_constraint": "softplus", "gamma_init": 0.0}, "gamma_init"),
    ({"gamma_max": 0.5}, "gamma_max"),                       # below the init of 1
    ({"gamma_max": -2.0}, "gamma_max"),
    ({"blocks": "first"}, "blocks"),
])
def test_bad_values_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mp.PeftConfig(**kwargs)


def test_unknown_key_is_rejected():
    with pytest.raises(ValueError, match="unknown key"):
        mp.PeftConfig.from_dict({"method": "lora", "rnak": 4})


def test_string_forms_from_the_command_line():
    cfg = mp.PeftConfig(positions="q,v", blocks="1,2")
    assert cfg.positions == ["q", "v"] and cfg.blocks == [1, 2]


def test_modulator_constraints():
    soft = Modulator(4, init=0.7, constraint="softplus")
    assert soft.value().item() == pytest.approx(0.7, rel=1e-6)
    soft.set_value(2.5)
    assert soft.value().item() == pytest.approx(2.5, rel=1e-6)
    clamp = Modulator(4, init=0.2, constraint="clamp")
    with torch.no_grad():
        clamp.gamma.fill_(-0.3)
    clamp.project()
    assert clamp.value().item() == 0.0
    raw = Modulator(4, init=1.0)
    with torch.no_grad():
        raw.gamma.fill_(-0.3)
    raw.project()
    assert raw.value().item() == pytest.approx(-0.3)
    chan = Modulator(4, shape="channel", init=2.0)
    assert torch.equal(chan(torch.ones(3, 4)), torch.full((3, 4), 2.0))


@pytest.mark.parametrize("constraint", ["none", "clamp", "softplus"])
def test_gamma_max_bounds_every_constraint(constraint):
    mod = Modulator(4, shape="channel", init=1.0, constraint=constraint, max_abs=2.0)
    with torch.no_grad():
        mod.gamma.copy_(torch.tensor([-9.0, -1.5, 1.5, 9.0]))
    mod.project()
    low = {"none": -2.0, "clamp": 0.0, "softplus": None}[constraint]
    got = mod.value()
    assert got.max().item() == pytest.approx(2.0, rel=1e-5) and (got.abs() <= 2.0 + 1e-5).all()
    if low is not None:
        assert got.min().item() == pytest.approx(low, abs=1e-6)
    assert got[2].item() == pytest.approx(1.5 if constraint != "softplus" else torch.nn.functional.softplus(
        torch.tensor(1.5)).item(), rel=1e-6), "values inside the bound are left alone"


def test_gamma_max_reaches_the_model(make_vit):
    model = mp.apply_peft(make_vit(), mp.PeftConfig(method="lora", positions=["q", "mlp1"], gamma_max=1.5))
    for mod in mp.peft.modulators(model).values():
        with torch.no_grad():
            mod.gamma.fill_(7.0)
    mp.peft.project_gammas(model)   # what the meta learner calls after every γ update
    assert set(mp.gamma_map(model).values()) == {1.5}
