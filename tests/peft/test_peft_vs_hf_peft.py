"""Our LoRA equals HF peft's LoRA on the same timm layer (γ = 1, α = r)."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model

import metapeft as mp
from metapeft.peft import site_modules


@pytest.mark.parametrize("rank,alpha", [(4, None), (8, 4.0)])
def test_lora_matches_hf_peft_on_timm_mlp(make_vit, images, rank, alpha):
    base = make_vit()
    ours = mp.apply_peft(copy.deepcopy(base), mp.PeftConfig(method="lora", positions=["out", "mlp1", "mlp2"],
                                                            rank=rank, alpha=alpha))
    ref = inject_adapter_in_model(
        LoraConfig(r=rank, lora_alpha=rank if alpha is None else alpha, target_modules=["proj", "fc1", "fc2"],
                   lora_dropout=0.0),
        copy.deepcopy(base),
    )
    g = torch.Generator().manual_seed(0)
    path = {"out": "attn.proj", "mlp1": "mlp.fc1", "mlp2": "mlp.fc2"}
    with torch.no_grad():
        for site, branch in site_modules(ours).items():
            layer = ref.blocks[site.block].get_submodule(path[site.position])
            branch.lora_B.weight.copy_(torch.randn(branch.lora_B.weight.shape, generator=g) * 0.1)
            layer.lora_A["default"].weight.copy_(branch.lora_A.weight)
            layer.lora_B["default"].weight.copy_(branch.lora_B.weight)
            assert layer.scaling["default"] == pytest.approx(branch.scale)
        assert torch.allclose(ours(images), ref(images), atol=1e-6)
