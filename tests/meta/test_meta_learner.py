"""MetaLearner owns γ's gradient mode and takes its validation batch as an argument."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import metapeft as mp
from metapeft.config import MetaConfig
from metapeft.meta import MetaLearner


def _model(make_vit):
    model = make_vit(num_classes=5)
    return mp.apply_peft(model, mp.PeftConfig(method="lora", positions=["q", "v"], rank=2))


def test_gamma_is_frozen_outside_gamma_grad_and_restored_after_nesting(make_vit):
    model = _model(make_vit)
    meta = MetaLearner(model, MetaConfig(enabled=True), F.cross_entropy)
    gammas = mp.gamma_parameters(model)
    assert gammas and not any(g.requires_grad for g in gammas)
    with meta.gamma_grad():
        assert all(g.requires_grad for g in gammas)
        with meta.gamma_grad():
            assert all(g.requires_grad for g in gammas)
        assert all(g.requires_grad for g in gammas), "leaving the inner block must not freeze γ early"
    assert not any(g.requires_grad for g in gammas)


def test_step_uses_the_given_val_batch_and_refreezes_gamma(make_vit, images):
    model = _model(make_vit)
    with torch.no_grad():
        for m in mp.peft.site_modules(model).values():
            m.lora_B.weight.normal_(0, 0.5)  # non-zero branches: γ has a gradient
    meta = MetaLearner(model, MetaConfig(enabled=True, optimizer="sgd", lr=0.1, momentum=0.0), F.cross_entropy)
    gammas = mp.gamma_parameters(model)
    y = torch.tensor([0, 1, 2])
    with meta.gamma_grad():  # the expected SGD update from exactly this batch
        loss = F.cross_entropy(model(images), y)
        grads = torch.autograd.grad(loss, gammas)
    expected = [float(g - 0.1 * d) for g, d in zip(gammas, grads)]
    res = meta.step({}, None, 0.01, (images, y))
    assert not res.skipped and res.val_loss == loss.item()
    assert [float(g) for g in gammas] == expected and meta.state.steps == 1
    assert not any(g.requires_grad for g in gammas)
