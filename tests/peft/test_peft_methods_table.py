"""Every registered PEFT method × the checks every method must pass (a new method is one row).

The rows are the registry itself (``peft/registry.py``), so a method added there is checked here
without editing this file; ``NOT_NOOP`` lists the methods that legitimately change the output at
init (VPT appends prompt tokens the frozen blocks then attend to).
"""

from __future__ import annotations

import copy

import pytest
import torch

import metapeft as mp
from metapeft.peft.registry import REGISTRY
from metapeft.train.checkpoint import load_trainable_state, trainable_state

NOT_NOOP = {"vpt_shallow", "vpt_deep"}
ROWS = sorted(REGISTRY)
SMALL = {"embed_dim": 48, "num_heads": 2}  # the real timm ViT, narrow: 45 cases stay quick


def _wrapped(make_vit, method: str, seed: int = 0):
    model = make_vit(num_classes=5, seed=0, **SMALL)
    torch.manual_seed(seed)
    return mp.apply_peft(model, mp.PeftConfig(method=method, rank=2, bottleneck=4, vpt_length=3)).eval()


def _perturb(model, seed: int = 1) -> None:
    """Move every trainable weight and γ off its init, so branches contribute and γ matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*mp.inner_parameters(model), *mp.gamma_parameters(model)]:
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def test_every_method_is_a_row():
    assert set(ROWS) == set(mp.peft.METHODS) and len(ROWS) >= 10


@pytest.mark.parametrize("method", ROWS)
def test_noop_at_init(make_vit, images, method):
    frozen = make_vit(num_classes=5, seed=0, **SMALL)
    model = _wrapped(make_vit, method)
    with torch.no_grad():
        same = torch.equal(frozen(images), model(images))
    assert same == (method not in NOT_NOOP)


@pytest.mark.parametrize("method", ROWS)
def test_merge_keeps_outputs(make_vit, images, method):
    model = _wrapped(make_vit, method)
    _perturb(model)
    with torch.no_grad():
        before = model(images)
        merged = mp.merge_peft(copy.deepcopy(model))
        assert torch.allclose(merged(images), before, atol=1e-5)
        kept = mp.unmerge_peft(mp.merge_peft(copy.deepcopy(model), unload=False))  # merge, then undo it
        assert torch.allclose(kept(images), before, atol=1e-5)
    # merging folds LoRA-like branches away entirely
    if REGISTRY[method].apply == REGISTRY["lora"].apply:
        assert not any(isinstance(m, mp.peft.lora.LoraLinear) for m in merged.modules())


@pytest.mark.parametrize("method", ROWS)
def test_save_load_round_trip(make_vit, images, method):
    model = _wrapped(make_vit, method)
    _perturb(model)
    state = trainable_state(model)
    fresh = _wrapped(make_vit, method, seed=7)  # another init: the load must overwrite all of it
    load_trainable_state(fresh, state)
    with torch.no_grad():
        assert torch.equal(fresh(images), model(images))


@pytest.mark.parametrize("method", ROWS)
def test_gamma_gradient(make_vit, images, method):
    model = _wrapped(make_vit, method)
    gammas = mp.gamma_parameters(model)
    if not REGISTRY[method].additive:
        assert gammas == [] and mp.trainable_summary(model).gamma == 0
        return
    _perturb(model)
    loss = torch.nn.functional.cross_entropy(model(images), torch.tensor([0, 1, 2]))
    grads = torch.autograd.grad(loss, gammas)
    assert len(grads) == len(mp.gamma_map(model)) > 0
    assert all(torch.isfinite(g).all() for g in grads) and all(float(g.abs().sum()) > 0 for g in grads)
