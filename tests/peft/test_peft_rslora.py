"""rsLoRA (registered as a LoRA variant): scale α/√r, LoRA's modules, and sweeps invert its rule."""

from __future__ import annotations

import math

import pytest
import torch

import metapeft as mp
from metapeft.config import RunConfig
from metapeft.experiments.cellconfig import alpha_for_scale


@pytest.mark.parametrize("rank,alpha", [(1, None), (4, None), (16, None), (4, 8.0), (16, 8.0)])
def test_scale_is_alpha_over_sqrt_rank(rank, alpha):
    cfg = mp.PeftConfig(method="rslora", rank=rank, alpha=alpha)
    assert cfg.scale == pytest.approx(1.0 if alpha is None else alpha / math.sqrt(rank), rel=1e-12)
    lora = mp.PeftConfig(method="lora", rank=rank, alpha=alpha)
    if alpha is not None and rank > 1:  # same α: rsLoRA's scale is √r times LoRA's
        assert cfg.scale == pytest.approx(lora.scale * math.sqrt(rank))
    assert cfg.has_gamma and mp.peft.POSITIONS["rslora"] == mp.peft.POSITIONS["lora"]


def test_branches_carry_the_rank_stabilised_scale_and_equal_lora_with_the_same_scale(make_vit, images):
    rs = mp.apply_peft(make_vit(num_classes=5), mp.PeftConfig(method="rslora", rank=4, alpha=6.0))
    # LoRA with α chosen to give the same scale: identical model, identical outputs
    lora = mp.apply_peft(make_vit(num_classes=5), mp.PeftConfig(method="lora", rank=4, alpha=6.0 * 4 / 2))
    branches = mp.peft.site_modules(rs)
    assert branches and all(b.scale == pytest.approx(3.0) for b in branches.values())
    torch.manual_seed(3)
    with torch.no_grad():
        for a, b in zip(branches.values(), mp.peft.site_modules(lora).values()):
            b.lora_A.weight.copy_(a.lora_A.weight)
            w = torch.randn_like(a.lora_B.weight)
            a.lora_B.weight.copy_(w)
            b.lora_B.weight.copy_(w)
        assert torch.allclose(rs(images), lora(images), atol=1e-6)


def test_sweep_scale_sets_alpha_scale_times_sqrt_rank():
    cfg = RunConfig.load(None, ["peft.method=rslora", "peft.rank=16"])
    assert alpha_for_scale(cfg.peft, 0.5) == pytest.approx(2.0)  # α = 0.5 · √16
