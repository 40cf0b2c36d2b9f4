"""The outer loop: one γ update from a validation batch every ``interval`` inner steps.

The learner owns γ's gradient mode: γ is frozen (``requires_grad=False``) except inside
:meth:`MetaLearner.gamma_grad`, so ordinary inner steps never build graph edges to γ and the
trainer never toggles γ itself.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn

from ..config import MetaConfig
from ..peft import gamma_parameters, modulators, project_gammas
from . import hypergradient as hg

ValBatches = Iterator[tuple[torch.Tensor, torch.Tensor]]  # an endless stream of (x_val, y_val)
DEFAULT_INTERVAL = 10


def resolve_interval(interval: int | None, steps_per_epoch: int | None) -> int:
    """``meta.interval``, or (null) 10 shortened so an epoch still gets >= 2 meta steps.

    A small user dataset (7 steps an epoch) would otherwise never take a meta step at 10, and γ would
    silently stay at its init; with >= 20 steps an epoch the default is exactly 10, as before.
    """
    if interval is not None:
        return interval
    if not steps_per_epoch:
        return DEFAULT_INTERVAL
    return max(1, min(DEFAULT_INTERVAL, steps_per_epoch // 2))


@dataclass
class MetaStepResult:
    step: int
    val_loss: float
    grad_norm: float
    skipped: bool = False
    reason: str = ""
    gamma: list[float] = field(default_factory=list)  # each site's γ after the step (read in the same transfer)


@dataclass
class MetaState:
    steps: int = 0
    skipped: int = 0
    trace: list[dict] = field(default_factory=list)   # per meta step: step, val_loss, γ values


class MetaLearner:
    """Owns γ's optimizer and computes hypergradients; φ stays with the main optimizer."""

    def __init__(self, model: nn.Module, cfg: MetaConfig, outer_loss: Callable,
                 reduce: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None,
                 steps_per_epoch: int | None = None) -> None:
        self.model = model
        self.interval = resolve_interval(cfg.interval, steps_per_epoch)
        # Averages hypergradients over data-parallel ranks (identity in one process).
        self.reduce = reduce or (lambda grads: grads)
        self.cfg = cfg
        self.outer_loss = outer_loss
        self.gammas = gamma_parameters(model)
        if not self.gammas:
            raise ValueError("meta-learning needs γ modulators, the model has none")
        self._set_gamma_grad(False)  # γ gets gradients only inside `gamma_grad()`
        self.sites = list(modulators(model))
        if cfg.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(
                self.gammas, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(self.gammas, lr=cfg.lr, momentum=cfg.momentum,
                                             weight_decay=cfg.weight_decay)
        self.state = MetaState()
        self.precision = None  # a train.precision.Precision, set by TrainStep (None: fp32)

    @property
    def needs_graph(self) -> bool:
        """Second-order modes need the train gradient built with ``create_graph=True``."""
        return self.cfg.hypergrad in ("unrolled", "neumann")

    def is_due(self, inner_step: int) -> bool:
        return inner_step % self.interval == 0

    def _set_gamma_grad(self, flag: bool) -> None:
        for p in self.gammas:
            p.requires_grad_(flag)

    @contextlib.contextmanager
    def gamma_grad(self) -> Iterator[None]:
        """γ requires grad inside the block and is frozen again after it (re-entrant).

        A second-order step enters it around the train forward too: the look-ahead's graph must
        reach γ. Everywhere else γ is a constant, so plain steps pay nothing for it.
        """
        before = [p.requires_grad for p in self.gammas]
        self._set_gamma_grad(True)
        try:
            yield
        finally:
            for p, flag in zip(self.gammas, before):
                p.requires_grad_(flag)

    def step(self, phi: dict[str, nn.Parameter], train_grads: list[torch.Tensor] | None,
             inner_lr: float, val_batch: tuple[torch.Tensor, torch.Tensor]) -> MetaStepResult:
        """Compute the hypergradient on ``val_batch`` and update γ (guarded).

        ``train_grads``: the train-loss gradient built with ``create_graph=True`` (second-order
        modes; ``None`` for first_order). ``inner_lr``: η of the look-ahead φ' = φ − η∇φ.
        """
        with self.gamma_grad(), torch.profiler.record_function("MetaLearner.step"):
            return self._step(phi, train_grads, inner_lr, val_batch)

    def _step(self, phi: dict[str, nn.Parameter], train_grads: list[torch.Tensor] | None,
              inner_lr: float, val_batch: tuple[torch.Tensor, torch.Tensor]) -> MetaStepResult:
        x_val, y_val = val_batch
        mode = self.cfg.hypergrad
        prec = self.precision
        # fp16: scale the outer loss so small hypergradients do not underflow. Not in second-order modes: their
        # look-ahead graph already carries the inner loss scale, and the two scales together overflow fp16.
        scale = prec.loss_scale() if prec is not None and mode == "first_order" else 1.0
        outer = self.outer_loss if scale == 1.0 else (lambda z, y: self.outer_loss(z, y) * scale)
        with prec.autocast() if prec is not None else contextlib.nullcontext():
            if mode == "first_order":
                res = hg.first_order(self.model, self.gammas, outer, x_val, y_val)
            elif mode == "unrolled":
                res = hg.unrolled(self.model, phi, self.gammas, train_grads, inner_lr, outer, x_val, y_val)
            else:
                res = hg.neumann(self.model, phi, self.gammas, train_grads, inner_lr, outer, x_val, y_val,
                                 terms=self.cfg.neumann_terms)
        if scale != 1.0:
            res.grads, res.val_loss = [g / scale for g in res.grads], res.val_loss / scale
        self.state.steps += 1
        res.grads = self.reduce([g.clone() for g in res.grads])
        # One transfer: the val loss and each γ gradient's squared norm (summed on the host, as before).
        read = torch.stack([res.val_loss.float().reshape(()), *(g.pow(2).sum() for g in res.grads)]).tolist()
        val_loss, norm = read[0], math.sqrt(sum(read[1:]))
        result = MetaStepResult(self.state.steps, val_loss, norm)
        if not (math.isfinite(norm) and math.isfinite(val_loss)):
            return self._skip(result, "non-finite hypergradient or val loss")
        backup = [g.detach().clone() for g in self.gammas]  # γ: one scalar per site, a copy costs nothing
        for p, g in zip(self.gammas, res.grads):
            p.grad = g.to(p.dtype)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        project_gammas(self.model)
        # One transfer: every site's γ (trace, TensorBoard) and whether all γ are finite.
        finite = torch.stack([torch.isfinite(p).all() for p in self.gammas]).all()
        *gamma, ok = torch.cat([self._gamma_tensor(), finite.to(torch.float32).reshape(1)]).tolist()
        if not ok:
            with torch.no_grad():
                for p, b in zip(self.gammas, backup):
                    p.copy_(b)
            return self._skip(result, "non-finite γ after the update (rolled back)")
        result.gamma = gamma
        self.state.trace.append({"step": result.step, "val_loss": val_loss, "grad_norm": norm, "gamma": gamma})
        return result

    def _skip(self, result: MetaStepResult, reason: str) -> MetaStepResult:
        self.state.skipped += 1
        self.optimizer.zero_grad(set_to_none=True)
        result.skipped, result.reason = True, reason
        return result

    def gamma_values(self) -> list[float]:
        """Each site's γ as one number (:meth:`Modulator.site_value`), in site order (one host transfer)."""
        return self._gamma_tensor().tolist()

    def _gamma_tensor(self) -> torch.Tensor:
        return torch.stack([m.site_tensor().float() for m in modulators(self.model).values()])

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "steps": self.state.steps, "skipped": self.state.skipped,
                "trace": self.state.trace}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.state = MetaState(state["steps"], state["skipped"], list(state["trace"]))
