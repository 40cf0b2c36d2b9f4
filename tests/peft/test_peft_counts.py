"""Trainable-parameter counts against hand-computed values (ViT-Tiny: D=192, MLP 768, 2 blocks)."""

from __future__ import annotations

import pytest
import torch

import metapeft as mp

D, H, C, DEPTH = 192, 768, 5, 2
HEAD = D * C + C
LORA_R4_PER_BLOCK = 3 * (D * 4 + 4 * D) + (D * 4 + 4 * D) + (D * 4 + 4 * H) + (H * 4 + 4 * D)
BOTTLENECK8 = (D * 8 + 8) + (8 * D + D)
CASES = {
    "lora": (DEPTH * LORA_R4_PER_BLOCK, 6 * DEPTH),
    "adaptformer": (DEPTH * BOTTLENECK8, DEPTH),
    "adapter": (2 * DEPTH * BOTTLENECK8, 2 * DEPTH),
    "vpt_shallow": (10 * D, 0),
    "vpt_deep": (DEPTH * 10 * D, 0),
    "ssf": (DEPTH * 2 * (3 * D + D + H + D + D + D), 0),
    "bitfit": (DEPTH * (D + 3 * D + D + D + H + D) + D, 0),   # block biases + final norm bias
    "ln_tune": (DEPTH * 4 * D + 2 * D, 0),
    "linear_probe": (0, 0),
}


@pytest.mark.parametrize("method", list(CASES))
def test_trainable_counts(make_vit, method):
    model = mp.apply_peft(make_vit(num_classes=C, depth=DEPTH), mp.PeftConfig(method=method))
    s = mp.trainable_summary(model)
    peft, gamma = CASES[method]
    assert (s.peft, s.gamma, s.head) == (peft, gamma, HEAD)
    assert s.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    backbone = sum(p.numel() for p in make_vit(num_classes=C, depth=DEPTH).parameters()) - HEAD
    assert s.backbone == backbone
    assert s.percent_of_backbone == pytest.approx(100 * (peft + gamma) / backbone)
    assert "trainable params" in str(s)


def test_full_finetuning_trains_everything(make_vit):
    model = mp.apply_peft(make_vit(num_classes=C), mp.PeftConfig(method="full"))
    s = mp.trainable_summary(model)
    assert s.peft == s.backbone and s.trainable == s.total


def test_channel_gamma_counts(make_vit):
    model = mp.apply_peft(make_vit(num_classes=C), mp.PeftConfig(method="lora", positions=["q", "mlp1"],
                                                                 gamma_shape="channel"))
    assert mp.trainable_summary(model).gamma == DEPTH * (D + H)
    assert all(isinstance(v, list) for v in mp.gamma_map(model).values())


def test_vpt_keeps_token_count_and_trains_prompts(make_vit, images):
    for method, n_prompts in (("vpt_shallow", 1), ("vpt_deep", DEPTH)):
        base = make_vit()
        tokens = base.forward_features(images).shape
        model = mp.apply_peft(make_vit(), mp.PeftConfig(method=method, vpt_length=4))
        assert model.forward_features(images).shape == tokens
        model(images).sum().backward()
        prompts = [p for n, p in model.named_parameters() if n.endswith("prompt")]
        assert len(prompts) == n_prompts and all(p.grad.abs().sum() > 0 for p in prompts)
        with torch.no_grad():
            assert not torch.allclose(model(images), base(images))
