"""Hypergradients of the outer (validation) loss with respect to the modulators γ.

Notation: φ = inner parameters (PEFT weights + head), γ = modulators, η = inner lr.

* ``first_order``: ∂L_val(φ, γ)/∂γ at the current φ (ignores how φ depends on γ).
* ``unrolled``: d L_val(φ'(γ), γ)/dγ with φ' = φ − η ∇φ L_train(φ, γ), built
  differentiably with ``torch.func.functional_call``; includes the second-order term
  −η (∂²L_train/∂γ∂φ) ∇φ' L_val.
* ``neumann``: implicit-function-theorem hypergradient at the current φ, with the inverse
  Hessian approximated by the K-term Neumann series η Σ_k (I − ηH)^k.

The train-loss gradient ``train_grads`` must be built with ``create_graph=True`` for the
second-order modes; the caller reuses its detached value for the ordinary φ update, so
the lookahead costs no extra train forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class HypergradResult:
    grads: list[torch.Tensor]   # one per γ parameter
    val_loss: torch.Tensor   # 0-d, on the device: read back with the step's other numbers (one transfer)


def first_order(model: nn.Module, gammas: Sequence[nn.Parameter], outer_loss: Loss,
                x_val: torch.Tensor, y_val: torch.Tensor) -> HypergradResult:
    loss = outer_loss(model(x_val), y_val)
    grads = torch.autograd.grad(loss, list(gammas), allow_unused=True)
    return HypergradResult(_fill(grads, gammas), loss.detach())


def unrolled(model: nn.Module, phi: dict[str, nn.Parameter], gammas: Sequence[nn.Parameter],
             train_grads: Sequence[torch.Tensor], inner_lr: float, outer_loss: Loss,
             x_val: torch.Tensor, y_val: torch.Tensor) -> HypergradResult:
    """One differentiable SGD step on φ, then the exact gradient of L_val through it."""
    looked_ahead = {name: p - inner_lr * g for (name, p), g in zip(phi.items(), train_grads)}
    loss = outer_loss(functional_call(model, looked_ahead, (x_val,)), y_val)
    grads = torch.autograd.grad(loss, list(gammas), allow_unused=True)
    return HypergradResult(_fill(grads, gammas), loss.detach())


def neumann(model: nn.Module, phi: dict[str, nn.Parameter], gammas: Sequence[nn.Parameter],
            train_grads: Sequence[torch.Tensor], inner_lr: float, outer_loss: Loss,
            x_val: torch.Tensor, y_val: torch.Tensor, terms: int = 3) -> HypergradResult:
    """IFT hypergradient: ∂L_val/∂γ − (∂²L_train/∂γ∂φ) H⁻¹ ∂L_val/∂φ, H⁻¹ by Neumann series."""
    params = list(phi.values())
    loss = outer_loss(model(x_val), y_val)
    val_grads = torch.autograd.grad(loss, params + list(gammas), allow_unused=True)
    v = [_zero_if_none(g, p) for g, p in zip(val_grads[: len(params)], params)]
    direct = _fill(val_grads[len(params):], gammas)
    acc = [t.clone() for t in v]
    cur = v
    for _ in range(terms):
        hvp = torch.autograd.grad(train_grads, params, grad_outputs=cur, retain_graph=True, allow_unused=True)
        cur = [c - inner_lr * _zero_if_none(h, p) for c, h, p in zip(cur, hvp, params)]
        acc = [a + c for a, c in zip(acc, cur)]
    mixed = torch.autograd.grad(train_grads, list(gammas), grad_outputs=[inner_lr * a for a in acc],
                                allow_unused=True)
    grads = [d - m for d, m in zip(direct, _fill(mixed, gammas))]
    return HypergradResult(grads, loss.detach())


def _zero_if_none(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if g is None else g.detach()


def _fill(grads: Sequence[torch.Tensor | None], like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [_zero_if_none(g, p) for g, p in zip(grads, like)]
