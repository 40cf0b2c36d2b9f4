"""Hypergradients against finite differences / an explicit-Hessian reference (float64, tiny ViT)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import metapeft as mp
from metapeft.backbones import set_fused_attention
from metapeft.meta import first_order, neumann, unrolled
from metapeft.peft import modulators, site_modules

ETA = 0.5


def setup(make_vit, positions=("q", "v", "mlp1"), rank=2, train_head=True):
    model = make_vit(num_classes=4, depth=2, img_size=16, patch_size=8, embed_dim=24, num_heads=2)
    set_fused_attention(model, False)
    mp.apply_peft(model, mp.PeftConfig(method="lora", positions=list(positions), rank=rank, train_head=train_head))
    model.double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in site_modules(model).values():
            m.lora_B.weight.copy_(torch.randn(m.lora_B.weight.shape, generator=g, dtype=torch.float64) * 0.3)
        for i, mod in enumerate(modulators(model).values()):
            mod.gamma.fill_(0.6 + 0.1 * i)
    x_tr = torch.randn(6, 3, 16, 16, generator=g, dtype=torch.float64)
    y_tr = torch.randint(0, 4, (6,), generator=g)
    x_va = torch.randn(5, 3, 16, 16, generator=g, dtype=torch.float64)
    y_va = torch.randint(0, 4, (5,), generator=g)
    phi = {n: p for n, p in model.named_parameters() if p.requires_grad and "modulator" not in n}
    return model, phi, mp.gamma_parameters(model), (x_tr, y_tr, x_va, y_va)


def looked_ahead_val_loss(model, phi, batches):
    x_tr, y_tr, x_va, y_va = batches
    grads = torch.autograd.grad(F.cross_entropy(model(x_tr), y_tr), list(phi.values()))
    new = {n: p.detach() - ETA * g for (n, p), g in zip(phi.items(), grads)}
    return F.cross_entropy(functional_call(model, new, (x_va,)), y_va).item()


@pytest.mark.slow
def test_unrolled_matches_central_finite_differences(make_vit):
    model, phi, gammas, batches = setup(make_vit)
    x_tr, y_tr, x_va, y_va = batches
    train_grads = torch.autograd.grad(F.cross_entropy(model(x_tr), y_tr), list(phi.values()), create_graph=True)
    res = unrolled(model, phi, gammas, train_grads, ETA, F.cross_entropy, x_va, y_va)
    eps = 1e-5
    fd = []
    for gam in gammas:
        with torch.no_grad():
            gam += eps
        up = looked_ahead_val_loss(model, phi, batches)
        with torch.no_grad():
            gam -= 2 * eps
        down = looked_ahead_val_loss(model, phi, batches)
        with torch.no_grad():
            gam += eps
        fd.append((up - down) / (2 * eps))
    fd = torch.tensor(fd, dtype=torch.float64)
    ours = torch.stack(res.grads)
    assert torch.allclose(ours, fd, rtol=1e-5, atol=1e-8), (ours, fd)
    # The second-order term matters: first-order differs from the true hypergradient.
    fo = torch.stack(first_order(model, gammas, F.cross_entropy, x_va, y_va).grads)
    assert not torch.allclose(fo, fd, rtol=1e-2)


def test_first_order_is_the_direct_partial_derivative(make_vit):
    model, phi, gammas, (x_tr, y_tr, x_va, y_va) = setup(make_vit)
    res = first_order(model, gammas, F.cross_entropy, x_va, y_va)
    eps = 1e-6
    for gam, g in zip(gammas, res.grads):
        with torch.no_grad():
            gam += eps
            up = F.cross_entropy(model(x_va), y_va).item()
            gam -= 2 * eps
            down = F.cross_entropy(model(x_va), y_va).item()
            gam += eps
        assert g.item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("terms", [0, 2])
def test_neumann_matches_explicit_hessian_series(make_vit, terms):
    model, phi, gammas, (x_tr, y_tr, x_va, y_va) = setup(make_vit, positions=("v",), rank=1, train_head=False)
    names, params = list(phi), list(phi.values())
    train_loss = F.cross_entropy(model(x_tr), y_tr)
    train_grads = torch.autograd.grad(train_loss, params, create_graph=True)
    res = neumann(model, phi, gammas, train_grads, 0.1, F.cross_entropy, x_va, y_va, terms=terms)

    # Reference: explicit flattened Hessian H and mixed derivative M = ∂²L_train/∂γ∂φ.
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    shapes = [p.shape for p in params]

    def unflatten(v):
        out, i = {}, 0
        for n, s in zip(names, shapes):
            out[n] = v[i:i + s.numel()].reshape(s)
            i += s.numel()
        return out

    def train_loss_of(v, gam_values):
        return F.cross_entropy(functional_call(model, {**unflatten(v), **gam_values}, (x_tr,)), y_tr)

    gnames = [n for n, _ in model.named_parameters() if "modulator" in n]
    gvals = {n: p.detach() for n, p in zip(gnames, gammas)}
    H = torch.autograd.functional.hessian(lambda v: train_loss_of(v, gvals), flat, vectorize=True)
    gflat = torch.stack([g.detach() for g in gammas])

    def grad_phi(gv):
        v = flat.clone().requires_grad_(True)
        loss = train_loss_of(v, {n: gv[i] for i, n in enumerate(gnames)})
        return torch.autograd.grad(loss, v, create_graph=True)[0]

    M = torch.autograd.functional.jacobian(grad_phi, gflat, vectorize=True)       # [n_phi, n_gamma]
    val_loss = F.cross_entropy(model(x_va), y_va)
    v = torch.cat([g.reshape(-1) for g in torch.autograd.grad(val_loss, params, retain_graph=True)])
    direct = torch.stack(torch.autograd.grad(val_loss, gammas))
    eye = torch.eye(len(flat), dtype=torch.float64)
    series = sum(torch.linalg.matrix_power(eye - 0.1 * H, k) for k in range(terms + 1)) * 0.1
    expected = direct - M.T @ (series @ v)
    assert torch.allclose(torch.stack(res.grads), expected, rtol=1e-6, atol=1e-10)
