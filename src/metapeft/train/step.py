"""One training step: φ's optimizer step over the micro-batches, with γ's meta step when it is due.

The whole protocol of the bi-level loop is :meth:`TrainStep.step`, top to bottom. The trainer calls
it once per optimizer step; ``bench/meta_step_cost.py`` and ``bench/profile_meta_step.py`` call the
same method, so what they time is what a run does.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from ..backbones import unfused_attention
from ..config import TrainConfig
from ..meta import MetaLearner, MetaStepResult
from ..meta.stepsize import StepSizeLearner
from .distributed import DistEnv
from .runlog import RunLog
from .state import EpochStats, TrainState

Batch = tuple[torch.Tensor, torch.Tensor]


class TrainStep:
    """Everything one step touches, built once per run: the model, φ and its optimizer, the meta learner.

    ``net`` is what the step calls (the model, or its trainable suffix on cached prefix tokens);
    ``phi`` are the inner parameters by name (trainable, γ excluded); ``meta`` is ``None`` without
    meta-learning; ``sizer`` the step-size learner of ``meta.mode=stepsize`` (sets each param group's lr
    before every update). ``state`` is updated in place (step and skip counters).
    """

    def __init__(self, net: nn.Module, phi: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, criterion: nn.Module, cfg: TrainConfig,
                 state: TrainState, *, meta: MetaLearner | None = None, sizer: StepSizeLearner | None = None,
                 env: DistEnv | None = None, log: RunLog | None = None) -> None:
        self.net, self.phi_named, self.phi = net, phi, list(phi.values())
        self.optimizer, self.scheduler, self.criterion = optimizer, scheduler, criterion
        self.cfg, self.state, self.meta, self.sizer = cfg, state, meta, sizer
        self.env = env or DistEnv()
        self.log = log or RunLog(Path("."), tensorboard=False, quiet=True)  # writes no file

    def step(self, micro_batches: Sequence[Batch], val_batches: Iterator[Batch] | None = None,
             stats: EpochStats | None = None) -> None:
        """One optimizer step of φ over ``micro_batches`` (``train.grad_accum`` of them).

        When a meta step is due, it runs on the last micro-batch, before φ moves, with the next
        batch of ``val_batches``. A step with a non-finite loss, gradient or update is skipped.
        """
        meta, phi, state, env = self.meta, self.phi, self.state, self.env
        lr = self.optimizer.param_groups[0]["lr"]  # this step's η: also the look-ahead's step size
        # Counted from 1: with meta.interval k, γ moves in the k-th, 2k-th, ... step.
        meta_now = meta is not None and meta.is_due(state.step + 1)
        second_order = meta_now and meta.needs_graph
        accum = len(micro_batches)
        result: MetaStepResult | None = None
        for j, (x, y) in enumerate(micro_batches):
            last = j == accum - 1
            lookahead = second_order and last  # only this micro-batch's graph is differentiated twice
            with _lookahead_mode(meta, self.net) if lookahead else contextlib.nullcontext():
                with _autocast(self.cfg.bf16, x.device):
                    loss = self.criterion(self.net(x), y)
                loss_value = env.mean_scalar(loss.item())  # the mean over ranks: every rank skips alike
                if not math.isfinite(loss_value):
                    self._skip("non-finite loss, step skipped")
                    self.optimizer.zero_grad(set_to_none=True)  # drop what earlier micro-batches added
                    if self.sizer is not None:  # ends a range test / trips the guard (restores a snapshot)
                        self._sizer_update(loss_value)
                    return  # no optimizer step, no step count: the schedule does not advance
                if lookahead:
                    # ∇φ L_train with its graph kept: the hypergradient differentiates through it (φ' = φ − η∇φ).
                    grads = torch.autograd.grad(loss, phi, create_graph=True, allow_unused=True)
                    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(phi, grads)]
                    result = meta.step(self.phi_named, grads, lr, next(val_batches))
                    # The same gradient, detached, is φ's ordinary update: the look-ahead costs no extra forward.
                    _accumulate(phi, [g.detach() / accum for g in grads])
                    del grads  # frees the double-backward graph before the optimizer step
                else:
                    (loss / accum).backward()  # mean over the step's micro-batches
                    if meta_now and last:  # first_order: ∂L_val/∂γ at the current φ, before φ moves
                        result = meta.step(self.phi_named, None, lr, next(val_batches))
            if stats is not None:
                stats.add(loss_value, len(y) * env.world)
        if result is not None:
            self._log_meta(result)
        env.mean_([p.grad for p in phi if p.grad is not None])  # data-parallel: average φ's gradient
        # clip_grad None → an infinite bound: the norm is still computed, for the finiteness check.
        norm = torch.nn.utils.clip_grad_norm_(phi, self.cfg.clip_grad or float("inf"))
        if self.sizer is not None and torch.isfinite(norm) and self._sizer_update(loss_value):
            # The learner restored a snapshot (range test over, or a loss spike): this gradient belongs to
            # weights that are gone, so it is dropped; the step still counts and the schedule advances.
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            state.step += 1
            return
        if not torch.isfinite(norm):
            self._skip("non-finite gradient, step skipped")
        elif not _guarded_step(self.optimizer, phi):
            self._skip("update made weights non-finite, rolled back (optimizer state reset)")
        else:
            self.scheduler.step()  # only a taken step advances the schedule
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        self.log.scalars(state.step, {"train/loss": loss_value, "train/lr": lr})
        if self.sizer is not None and self.sizer.is_due(state.step):  # after φ moved: Δφ includes this step
            res = self.sizer.step(*next(val_batches), self.optimizer)
            if not res.skipped:
                lrs = self.sizer.effective_lrs(_schedule_factor(self.scheduler))
                self.log.scalars(state.step, {"meta/val_loss": res.val_loss, **{f"lr/{k}": v for k, v in lrs.items()}})

    def _sizer_update(self, loss_value: float) -> bool:
        """Let the step-size learner set this update's lrs; True when it restored a snapshot instead."""
        msg = self.sizer.before_update(loss_value, self.optimizer, _schedule_factor(self.scheduler), self.state.step)
        if msg is not None:
            self.log.info(msg)
        return msg is not None

    def _skip(self, why: str) -> None:
        self.state.skipped_steps += 1
        self.log.info(f"step {self.state.step}: {why}")

    def _log_meta(self, res: MetaStepResult) -> None:
        if res.skipped:
            self.log.info(f"meta step {res.step}: skipped ({res.reason})")
            return
        values = {"meta/val_loss": res.val_loss, "meta/hypergrad_norm": res.grad_norm}
        values.update({f"gamma/{s}": g for s, g in zip(self.meta.sites, self.meta.gamma_values())})
        self.log.scalars(self.state.step, values)


@contextlib.contextmanager
def _lookahead_mode(meta: MetaLearner, net: nn.Module) -> Iterator[None]:
    """γ requires grad (the look-ahead's graph must reach γ) and attention runs unfused (fused SDPA
    has no double backward); both only for this micro-batch, so plain steps keep fused attention."""
    with meta.gamma_grad(), unfused_attention(net):
        yield


def _guarded_step(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> bool:
    """Step, and undo it if any weight became non-finite (the divergence of Fig. 1(d))."""
    backup = [p.detach().clone() for p in params]
    optimizer.step()
    if all(torch.isfinite(p).all() for p in params):
        return True
    with torch.no_grad():
        for p, b in zip(params, backup):
            p.copy_(b)
    optimizer.state.clear()
    return False


def _schedule_factor(scheduler: torch.optim.lr_scheduler.LambdaLR) -> float:
    """The cosine/warm-up factor the scheduler applies at its current step."""
    return scheduler.lr_lambdas[0](scheduler.last_epoch)


def _accumulate(params: list[nn.Parameter], grads: list[torch.Tensor]) -> None:
    for p, g in zip(params, grads):
        p.grad = g.clone() if p.grad is None else p.grad + g


def _autocast(enabled: bool, device: torch.device):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def micro_batch_groups(batches, accum: int) -> Iterator[list[Batch]]:
    """Group a loader's micro-batches into steps of ``accum``; a last incomplete group is dropped
    (it would otherwise leak its gradient into the next epoch's first step)."""
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) == accum:
            yield group
            group = []
