"""peft-style calls: save/load an adapter, disable it, merge and unload (issue 13, item 5)."""

from __future__ import annotations

import copy

import torch

import metapeft as mp
from metapeft.config import RunConfig
from metapeft.peft.lora import LoraLinear
from metapeft.train.heads import CosineClassifier
from metapeft.train.model import build_model


def test_save_and_load_roundtrip_onto_fresh_backbone(tmp_path, make_vit, images, perturbed):
    base = make_vit()
    tuned = perturbed(mp.apply_peft(copy.deepcopy(base), mp.PeftConfig(method="lora", rank=2)))
    mp.save_peft(tuned, tmp_path / "adapter")
    loaded = mp.load_peft(copy.deepcopy(base), tmp_path / "adapter").eval()
    assert torch.equal(loaded(images), tuned(images)) and mp.gamma_map(loaded) == mp.gamma_map(tuned)


def test_load_run_export_rebuilds_cosine_head(tmp_path, tiny_run, images, perturbed):
    cfg = RunConfig.load(None, tiny_run)
    run_model = perturbed(build_model(cfg, 7))
    mp.save_peft(run_model, tmp_path / "export")
    torch.manual_seed(cfg.train.seed)
    fresh = mp.create_backbone(cfg.model.name, None, img_size=32, num_classes=7, **cfg.model.options)
    loaded = mp.load_peft(fresh, tmp_path / "export").eval()
    assert isinstance(loaded.get_classifier(), CosineClassifier) and loaded.get_classifier().weight.shape[0] == 7
    assert torch.allclose(loaded(images), run_model(images), atol=1e-6)


def test_disable_peft_gives_the_frozen_backbone_then_restores(make_vit, images, perturbed):
    base = make_vit()
    tuned = perturbed(mp.apply_peft(copy.deepcopy(base), mp.PeftConfig(method="lora", rank=2)))
    tuned.head.load_state_dict(base.head.state_dict())
    before = tuned(images)
    with mp.disable_peft(tuned):
        assert torch.allclose(tuned(images), base(images), atol=1e-6)
    assert torch.equal(tuned(images), before)
    mp.merge_peft(tuned, unload=False)
    with mp.disable_peft(tuned):
        assert torch.allclose(tuned(images), base(images), atol=1e-5)
    assert torch.allclose(tuned(images), before, atol=1e-5)


def test_merge_and_unload_leaves_plain_timm(make_vit, images, perturbed):
    tuned = perturbed(mp.apply_peft(make_vit(), mp.PeftConfig(method="lora", rank=2)))
    before = tuned(images)
    plain = mp.merge_and_unload(tuned)
    assert not any(isinstance(m, LoraLinear) for m in plain.modules())
    assert torch.allclose(plain(images), before, atol=1e-5)
