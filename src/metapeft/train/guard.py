"""The step guard: skip a step on a non-finite loss or gradient, roll back an update that made weights
non-finite, with one host transfer per step and no copy of the weights in an ordinary step.

Why not copy and check after the update (the old way): that copied every trainable tensor each step
(a whole model for ``method=full``) and read back one flag per tensor (146 host syncs for LoRA × 72
sites on a GPU). Instead, before the update one fused probe reads, in a single transfer, the step's
losses, the gradient norm and the largest |value| of the weights and the optimizer state
(``torch._foreach_norm`` with ord=∞). When all of them are below :data:`BOUND` and every group's
``lr · (1 + weight_decay)`` is below :data:`LR_BOUND`, an SGD or AdamW update cannot overflow float32
(|Δw| ≤ 1e6 · 1e16 / eps = 1e30 < 3.4e38), so the update is taken without a backup. Only outside that
range (a run already diverging, e.g. lr 1e30) is the old copy-then-check path used, and its check is
one fused reduction too.

Sync-free steps (``train.sync_free``, on by default on CUDA) go one further: the same values stay on
the device, :func:`unsafe_flag` turns them into the ``found_inf`` flag that torch's fused SGD/AdamW
kernels honour (the update is skipped on the device), and the step's Python bookkeeping reads them
later, many steps in one transfer (``TrainStep.flush``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

BOUND = 1e15          # |w|, |grad| norm and |optimizer state| below this: an update cannot overflow
LR_BOUND = 1e6        # lr · (1 + weight_decay) of every param group below this
EXACT_OPTIMIZERS = (torch.optim.SGD, torch.optim.AdamW, torch.optim.Adam)


def max_abs(tensors: list[torch.Tensor]) -> torch.Tensor:
    """max |x| over all tensors as one 0-d device tensor (NaN if any is NaN); no host sync."""
    if not tensors:
        return torch.zeros(())
    norms = torch._foreach_norm(tensors, float("inf"))
    return torch.stack([n.float() for n in norms]).max()


def state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimizer's per-parameter tensors (momentum buffers, Adam moments), float ones only."""
    return [v for st in optimizer.state.values() for v in st.values()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() > 0]


def device_probe(losses: torch.Tensor, norm: torch.Tensor, params: list[nn.Parameter],
                 optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """[losses..., grad norm, max |w|, max |state|] as one device tensor (nothing is read yet)."""
    tail = torch.stack([norm.float().reshape(()), max_abs([p.detach() for p in params]).to(norm.device),
                        max_abs(state_tensors(optimizer)).to(norm.device)])
    return torch.cat([losses.float().reshape(-1).to(norm.device), tail])


def probe(losses: torch.Tensor, norm: torch.Tensor, params: list[nn.Parameter],
          optimizer: torch.optim.Optimizer) -> list[float]:
    """:func:`device_probe` read in ONE host transfer (a synced step's only sync)."""
    return device_probe(losses, norm, params, optimizer).tolist()


def unsafe_flag(values: torch.Tensor) -> torch.Tensor:
    """1.0 (a 0-d float device tensor) when :func:`device_probe`'s values say "skip": a loss or the
    gradient norm is non-finite, or a bound of :func:`update_is_safe` is exceeded; else 0.0. No sync."""
    finite = torch.isfinite(values).all()
    bounded = (values[-3:] < BOUND).all()
    return (~(finite & bounded)).float()


def host_bounds_hold(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> bool:
    """The host half of :func:`update_is_safe` (optimizer kind, float32/64 weights, lr and eps bounds):
    known without reading the device, so a sync-free step checks it every time."""
    if not (isinstance(optimizer, EXACT_OPTIMIZERS) and all(p.dtype in (torch.float32, torch.float64) for p in params)):
        return False
    return all(_as_float(g["lr"]) * (1 + g.get("weight_decay", 0.0)) < LR_BOUND
               and g.get("eps", 1e-8) >= 1e-8 for g in optimizer.param_groups)


def skips_on_device(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> bool:
    """True when ``optimizer.step()`` honours a ``found_inf`` flag on the device: a fused SGD/Adam/AdamW
    whose state exists for every parameter. A fused kernel that skips the FIRST step leaves its freshly
    allocated momentum uninitialised (measured: garbage of 1e34), so that step is never sync-free."""
    if not (isinstance(optimizer, EXACT_OPTIMIZERS) and all(g.get("fused") for g in optimizer.param_groups)):
        return False
    return all(optimizer.state.get(p) for p in params)


def resolve_sync_free(value: bool | None, device: torch.device) -> bool:
    """``train.sync_free``: null = on for CUDA, where a host read drains the queue; off elsewhere."""
    return (device.type == "cuda") if value is None else bool(value)


def update_is_safe(values: list[float], optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> bool:
    """True when this update cannot make a weight non-finite (see the module doc), so no backup is needed."""
    norm, w, s = values[-3:]
    if not all(math.isfinite(v) and v < BOUND for v in (norm, w, s)):
        return False
    return host_bounds_hold(optimizer, params)


def checked_step(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> bool:
    """Step with a backup, and undo it if any weight became non-finite (the divergence of Fig. 1(d))."""
    backup = [p.detach().clone() for p in params]
    optimizer.step()
    if bool(torch.isfinite(max_abs([p.detach() for p in params]))):
        return True
    with torch.no_grad():
        torch._foreach_copy_([p.detach() for p in params], backup)
    optimizer.state.clear()
    return False


def _as_float(v) -> float:
    return float(v) if not isinstance(v, torch.Tensor) else float(v.detach().cpu())
