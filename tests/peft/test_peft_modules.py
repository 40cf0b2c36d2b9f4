"""PEFT modules on a real (tiny) timm ViT: no-op at init, γ semantics, gradients, merge."""

from __future__ import annotations

import copy

import pytest
import torch

import metapeft as mp
from metapeft.peft import Site, modulators, site_modules

LORA_POSITIONS = ["q", "k", "v", "out", "mlp1", "mlp2"]
ADDITIVE_CASES = (
    [("lora", [p]) for p in LORA_POSITIONS]
    + [("lora", None), ("adaptformer", None), ("adapter", ["attn"]), ("adapter", ["mlp"]), ("adapter", None)]
)


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every zero-initialised branch weight a non-zero value so sites have an effect."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in site_modules(model).values():
            for name, p in m.named_parameters():
                if "modulator" not in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("method,positions", ADDITIVE_CASES)
def test_fresh_wrap_computes_the_frozen_backbone_exactly(make_vit, images, method, positions):
    base = make_vit()
    wrapped = mp.apply_peft(copy.deepcopy(base), mp.PeftConfig(method=method, positions=positions))
    with torch.no_grad():
        assert torch.equal(wrapped(images), base(images))
    assert len(mp.gamma_map(wrapped)) == 2 * len(positions or mp.peft.POSITIONS[method])


@pytest.mark.parametrize("method", ["ssf", "bitfit", "ln_tune", "linear_probe", "full"])
def test_identity_baselines_start_at_the_backbone(make_vit, images, method):
    base = make_vit()
    wrapped = mp.apply_peft(copy.deepcopy(base), mp.PeftConfig(method=method))
    with torch.no_grad():
        assert torch.equal(wrapped(images), base(images))
    assert mp.gamma_map(wrapped) == {}


@pytest.mark.parametrize("method,positions", ADDITIVE_CASES)
def test_gamma_zero_switches_a_site_off(make_vit, images, method, positions):
    model = mp.apply_peft(make_vit(), mp.PeftConfig(method=method, positions=positions))
    randomize(model)
    sites = list(site_modules(model))
    target = sites[len(sites) // 2]
    reference = copy.deepcopy(model)
    with torch.no_grad():
        for p in site_modules(reference)[target].parameters():
            p.zero_()  # branch removed entirely
        modulators(model)[target].set_value(0.0)
        out, ref = model(images), reference(images)
        assert torch.allclose(out, ref, atol=1e-6)
        modulators(model)[target].set_value(1.0)
        assert not torch.allclose(model(images), ref, atol=1e-4)  # the site really did something


@pytest.mark.parametrize("method,positions", ADDITIVE_CASES)
def test_gradients_reach_phi_and_gamma_but_not_the_backbone(make_vit, images, method, positions):
    model = mp.apply_peft(make_vit(), mp.PeftConfig(method=method, positions=positions))
    randomize(model)
    model(images).logsumexp(-1).sum().backward()
    phi, gammas = mp.peft_parameters(model), mp.gamma_parameters(model)
    assert {id(p) for p in phi}.isdisjoint({id(p) for p in gammas})
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gammas)
    assert all(p.grad is not None for p in phi)
    trainable = {id(p) for p in phi} | {id(p) for p in gammas}
    frozen = [n for n, p in model.named_parameters() if id(p) not in trainable]
    assert frozen and all(model.get_parameter(n).grad is None for n in frozen)
    assert not any(model.get_parameter(n).requires_grad for n in frozen)


@pytest.mark.parametrize("shape", ["scalar", "channel"])
@pytest.mark.parametrize("positions", [["q", "v"], LORA_POSITIONS])
def test_merge_gives_the_same_outputs(make_vit, images, shape, positions):
    model = mp.apply_peft(make_vit(), mp.PeftConfig(method="lora", positions=positions, gamma_shape=shape))
    randomize(model, seed=3)
    with torch.no_grad():
        for i, mod in enumerate(modulators(model).values()):
            mod.gamma.copy_(torch.rand(mod.gamma.shape) * 2 - 0.5 + i * 0.01)
        before = model(images)
        merged = mp.merge_peft(model)
        assert not any(isinstance(m, mp.peft.lora.LoraLinear) for m in merged.modules())
        assert torch.allclose(merged(images), before, atol=1e-5)


def test_unmerge_restores_the_base_weights(make_vit):
    model = mp.apply_peft(make_vit(), mp.PeftConfig(method="lora"))
    randomize(model)
    qkv = model.blocks[0].attn.qkv
    w0 = qkv.base_layer.weight.detach().clone()
    mp.merge_peft(model, unload=False)
    assert not torch.allclose(qkv.base_layer.weight, w0)
    mp.peft.unmerge_peft(model)
    assert torch.allclose(qkv.base_layer.weight, w0, atol=1e-6)


def test_lora_slices_of_fused_qkv_are_independent(make_vit, images):
    """A q-only branch must leave the k and v thirds of the qkv output untouched."""
    model = mp.apply_peft(make_vit(), mp.PeftConfig(method="lora", positions=["q"]))
    randomize(model)
    layer = model.blocks[0].attn.qkv
    x = torch.randn(2, 5, layer.in_features)
    with torch.no_grad():
        y, y0 = layer(x), layer.base_layer(x)
    d = y.shape[-1] // 3
    assert not torch.allclose(y[..., :d], y0[..., :d])
    assert torch.equal(y[..., d:], y0[..., d:])


def test_blocks_selection(make_vit):
    model = mp.apply_peft(make_vit(depth=4), mp.PeftConfig(method="lora", positions=["v"], blocks=[1, -1]))
    assert list(mp.gamma_map(model)) == [(1, "v"), (3, "v")]
    model = mp.apply_peft(make_vit(depth=4), mp.PeftConfig(method="adaptformer", blocks="last:2"))
    assert list(mp.gamma_map(model)) == [(2, "mlp"), (3, "mlp")]
    with pytest.raises(ValueError, match="outside"):
        mp.apply_peft(make_vit(depth=4), mp.PeftConfig(method="lora", blocks=[4]))


def test_gamma_map_is_ordered_by_block_then_position(make_vit):
    model = mp.apply_peft(make_vit(), mp.PeftConfig(method="lora"))
    assert list(mp.gamma_map(model)) == [(b, p) for b in range(2) for p in LORA_POSITIONS]
    assert set(mp.gamma_map(model).values()) == {1.0}


def test_apply_twice_is_refused(make_vit):
    model = mp.apply_peft(make_vit(), mp.PeftConfig(method="lora"))
    with pytest.raises(RuntimeError, match="already"):
        mp.apply_peft(model, mp.PeftConfig(method="lora"))


def test_no_gamma_option_and_layerscale_is_not_mistaken_for_gamma(make_vit):
    model = mp.apply_peft(make_vit(init_values=1e-5), mp.PeftConfig(method="lora", gamma=False))
    assert mp.gamma_parameters(model) == [] and mp.gamma_map(model) == {}
    assert any(n.endswith("ls1.gamma") for n, _ in model.named_parameters())


def test_scale_is_alpha_over_rank(make_vit):
    model = mp.apply_peft(make_vit(), mp.PeftConfig(method="lora", rank=8, alpha=16))
    assert {m.scale for m in site_modules(model).values()} == {2.0}
    model = mp.apply_peft(make_vit(), mp.PeftConfig(method="lora", rank=8))
    assert {m.scale for m in site_modules(model).values()} == {1.0}
    assert isinstance(next(iter(site_modules(model))), Site)


@pytest.mark.parametrize("positions", [["q", "k", "v"], ["v", "q"], ["k"], ["q", "v", "mlp1"]])
@pytest.mark.parametrize("shape", ["scalar", "channel"])
def test_fused_lora_forward_equals_branch_sum(make_vit, images, positions, shape):
    """The two-GEMM forward gives the same outputs and gradients as summing each branch's α·γ·BAx."""
    model = mp.apply_peft(make_vit(), mp.PeftConfig(method="lora", positions=positions, gamma_shape=shape)).double()
    randomize(model, seed=5)
    with torch.no_grad():
        for mod in modulators(model).values():
            mod.gamma.uniform_(0.2, 1.8)
    x = images.double()
    layers = [m for m in model.modules() if isinstance(m, mp.peft.lora.LoraLinear)]
    fused = model(x)
    fused.sum().backward()
    g_fused = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    for layer in layers:  # reference: explicit per-branch sum
        layer.forward = (lambda l: lambda inp: l._branchwise(inp, l.base_layer(inp)))(layer)
    ref = model(x)
    ref.sum().backward()
    g_ref = [p.grad for p in model.parameters() if p.requires_grad]
    assert torch.allclose(fused, ref, atol=1e-12)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(g_fused, g_ref))


def test_lora_dropout_uses_independent_masks_per_branch(make_vit, images):
    model = mp.apply_peft(make_vit(), mp.PeftConfig(method="lora", positions=["q", "v"], dropout=0.5))
    randomize(model)
    qkv = model.blocks[0].attn.qkv
    with torch.no_grad():  # identical q and v branches: their deltas differ only if their masks do
        qkv.lora["v"].lora_A.weight.copy_(qkv.lora["q"].lora_A.weight)
        qkv.lora["v"].lora_B.weight.copy_(qkv.lora["q"].lora_B.weight)
    x = torch.randn(2, 5, qkv.in_features)
    d = qkv.out_features // 3

    def deltas():
        with torch.no_grad():
            delta = qkv(x) - qkv.base_layer(x)
        return delta[..., :d], delta[..., 2 * d:]

    model.train()
    q, v = deltas()
    assert not torch.allclose(q, v), "q and v branches drew the same dropout mask"
    model.eval()
    q, v = deltas()
    assert torch.allclose(q, v, atol=1e-6)  # no dropout: same weights, same delta
