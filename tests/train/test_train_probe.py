"""The linear probe fit (train/probe.py): standardised, folded exactly, better than class means, deterministic."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metapeft.train.heads import CosineClassifier, init_head_from_class_means
from metapeft.train.losses import ClassBalancedCE
from metapeft.train.probe import feature_stats, fit_probe


def _features(n_per=(40, 20, 6), dim=16, seed=0):
    """Separable classes on a large shared offset with very different per-dimension scales (raw ViT-like)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(len(n_per), dim, generator=g) * 0.5
    scales = torch.logspace(-2, 1, dim)
    xs, ys = [], []
    for c, n in enumerate(n_per):
        xs.append((centres[c] + 0.3 * torch.randn(n, dim, generator=g)) * scales + 20.0)
        ys.append(torch.full((n,), c))
    return torch.cat(xs), torch.cat(ys)


def test_feature_stats_are_the_training_features_mean_and_std():
    x, _ = _features()
    mean, std = feature_stats(x)
    assert torch.allclose(mean, x.double().mean(0)) and torch.allclose(std, x.double().std(0, unbiased=False))
    const = torch.ones(5, 3)  # a constant dimension: σ is floored, z stays finite
    assert (feature_stats(const)[1] > 0).all()


def test_linear_probe_folds_the_standardisation_exactly():
    x, y = _features()
    head = nn.Linear(x.shape[1], 3)
    fit = fit_probe(head, x, y, l2=1e-3)
    mean, std = feature_stats(x)
    with torch.no_grad():
        w_std = head.weight.double() * std  # back in standardised space
        logits = head(x.float()).double()
        z_logits = ((x.double() - mean) / std) @ w_std.T + (head.bias.double() + head.weight.double() @ mean)
        objective = ClassBalancedCE(3)(logits, y) + 1e-3 * w_std.square().sum()
    assert torch.allclose(logits, z_logits, atol=1e-3)
    assert float(objective) == pytest.approx(fit.loss_after, rel=1e-3)
    assert fit.loss_after < fit.loss_before and fit.train_balanced == 1.0


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_probe_beats_the_class_mean_init_on_train_loss(kind):
    x, y = _features()
    make = (lambda: nn.Linear(16, 3)) if kind == "linear" else (lambda: CosineClassifier(16, 3, 25.0))
    ref, fitted = make(), make()
    init_head_from_class_means(ref, x, y)
    fit_probe(fitted, x, y, l2=1e-4)
    loss = ClassBalancedCE(3)
    with torch.no_grad():
        assert loss(fitted(x), y) < 0.5 * loss(ref(x), y)
        assert not torch.equal(fitted.weight, ref.weight)


def test_probe_fit_is_deterministic_and_l2_shrinks_the_weights():
    x, y = _features()
    a, b, strong = nn.Linear(16, 3), nn.Linear(16, 3), nn.Linear(16, 3)
    fit_probe(a, x, y, l2=1e-3)
    fit_probe(b, x, y, l2=1e-3)
    fit_probe(strong, x, y, l2=1.0)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    _, std = feature_stats(x)
    assert (strong.weight.double() * std).norm() < (a.weight.double() * std).norm()


def test_probe_loss_options_and_bias_requirement():
    x, y = _features()
    for loss in ("la", "ce"):
        fit = fit_probe(nn.Linear(16, 3), x, y, loss=loss, iters=20)
        assert fit.loss == loss and fit.iters == 20 and fit.loss_after < fit.loss_before
    with pytest.raises(ValueError, match="bias"):
        fit_probe(nn.Linear(16, 3, bias=False), x, y)
    cos = CosineClassifier(16, 3)
    fit_probe(cos, x, y)
    assert torch.isfinite(F.normalize(cos.weight, dim=-1)).all()
