"""One training step: φ's optimizer step over the micro-batches, with γ's meta step when it is due.

The whole protocol of the bi-level loop is :meth:`TrainStep.step`, top to bottom. The trainer calls
it once per optimizer step; ``bench/meta_step_cost.py`` and ``bench/profile_meta_step.py`` call the
same method, so what they time is what a run does.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from ..backbones import unfused_attention
from ..config import TrainConfig
from ..meta import MetaLearner, MetaStepResult
from ..meta.stepsize import StepSizeLearner
from . import guard
from .distributed import DistEnv
from .precision import Precision, resolve_precision
from .runlog import RunLog
from .state import EpochStats, TrainState

Batch = tuple[torch.Tensor, torch.Tensor]
FLUSH_EVERY = 50  # sync-free steps read back together (one host transfer per this many steps)


@dataclass
class _Pending:
    """A sync-free step whose values are still on the device."""

    step: int
    values: torch.Tensor          # guard.device_probe: losses..., grad norm, max |w|, max |state|
    sizes: list[int]              # images per micro-batch (all ranks)
    stats: EpochStats | None
    lr: float


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
                 env: DistEnv | None = None, log: RunLog | None = None, precision: Precision | None = None) -> None:
        self.net, self.phi_named, self.phi = net, phi, list(phi.values())
        self.optimizer, self.scheduler, self.criterion = optimizer, scheduler, criterion
        self.cfg, self.state, self.meta, self.sizer = cfg, state, meta, sizer
        self.env = env or DistEnv()
        self.log = log or RunLog(Path("."), tensorboard=False, quiet=True)  # writes no file
        device = self.phi[0].device if self.phi else torch.device("cpu")  # the weights' device
        if precision is None:  # built from the config
            precision = Precision(resolve_precision(cfg.precision, cfg.bf16, device), device)
        self.precision = precision
        # What an ordinary inner step calls: the compiled model with train.compile (exact up to float rounding;
        # look-ahead steps differentiate twice and toggle γ's requires_grad, so they always run eager).
        self.forward = torch.compile(net) if cfg.compile else net
        self.channels_last = bool(cfg.channels_last)
        if self.channels_last:
            net.to(memory_format=torch.channels_last)  # only 4-d weights change: the patch-embedding conv
        if meta is not None:
            meta.precision = precision  # meta steps run in the same precision (and fp16 loss scale)
        # train.sync_free: ordinary steps leave their checks on the device (see _sync_free_update).
        self.sync_free = guard.resolve_sync_free(cfg.sync_free, device) and sizer is None and precision.scaler is None
        self._pending: list[_Pending] = []
        self.late_skips = 0  # sync-free steps found bad after the fact (their schedule step was taken)

    def step(self, micro_batches: Sequence[Batch], val_batches: Iterator[Batch] | None = None,
             stats: EpochStats | None = None) -> None:
        """One optimizer step of φ over ``micro_batches`` (``train.grad_accum`` of them).

        When a meta step is due, it runs on the last micro-batch, before φ moves, with the next
        batch of ``val_batches``. A step with a non-finite loss, gradient or update is skipped.

        Host syncs: an ordinary step reads the device once (:func:`guard.probe`: the losses, the
        gradient norm and the overflow bounds in one transfer); a meta step adds its own few. With
        ``train.sync_free`` an ordinary step reads nothing: see :meth:`_sync_free_update`.
        """
        meta, phi, state, env, prec = self.meta, self.phi, self.state, self.env, self.precision
        # This step's η, also the look-ahead's step size. With a step-size learner the param groups hold the
        # scheduler's train.lr-based values until the learner sets this update's: ask it for the real one.
        lr = (self.optimizer.param_groups[0]["lr"] if self.sizer is None
              else self.sizer.group_lr(0, _schedule_factor(self.scheduler)))
        # Counted from 1: with meta.interval k, γ moves in the k-th, 2k-th, ... step. Not during a range test
        # (gamma mode with meta.calibrate): its climbing lr ends in a divergence that the test then undoes.
        meta_now = meta is not None and meta.is_due(state.step + 1) and not self.calibrating
        if meta_now:
            self.flush()  # earlier sync-free steps' bookkeeping before this step's own reads
        second_order = meta_now and meta.needs_graph
        accum = len(micro_batches)
        result: MetaStepResult | None = None
        losses: list[torch.Tensor] = []
        checked: list[float] | None = None  # the rank-mean losses, when a meta step already read them
        for j, (x, y) in enumerate(micro_batches):
            last = j == accum - 1
            lookahead = second_order and last  # only this micro-batch's graph is differentiated twice
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _lookahead_mode(meta, self.net) if lookahead else contextlib.nullcontext():
                with prec.autocast():
                    loss = self.criterion((self.net if lookahead else self.forward)(x), y)
                losses.append(loss.detach().float())
                if meta_now and last:  # a meta step is never taken after a non-finite loss
                    checked = env.mean_scalars(losses).tolist()  # the mean over ranks: every rank skips alike
                    if not all(map(math.isfinite, checked)):
                        return self._skip_loss(checked, stats, len(y) * env.world)
                if lookahead:
                    # ∇φ L_train with its graph kept: the hypergradient differentiates through it (φ' = φ − η∇φ).
                    raw = torch.autograd.grad(prec.scale(loss), phi, create_graph=True, allow_unused=True)
                    raw = [torch.zeros_like(p) if g is None else g for p, g in zip(phi, raw)]
                    result = meta.step(self.phi_named, prec.unscale_grads(raw), lr, next(val_batches))
                    # The same gradient, detached, is φ's ordinary update: the look-ahead costs no extra forward.
                    _accumulate(phi, [g.detach() / accum for g in raw])
                    del raw  # frees the double-backward graph before the optimizer step
                else:
                    (prec.scale(loss) / accum).backward()  # mean over the step's micro-batches
                    if meta_now and last:  # first_order: ∂L_val/∂γ at the current φ, before φ moves
                        result = meta.step(self.phi_named, None, lr, next(val_batches))
        if result is not None:
            self._log_meta(result)
        loss_vec = torch.stack(losses)
        # Data-parallel: one flat all-reduce averages φ's gradient and (ordinary steps) the step's losses.
        env.mean_([p.grad for p in phi if p.grad is not None] + ([loss_vec] if checked is None else []))
        prec.unscale_(self.optimizer)  # fp16: the clip and the check see true gradients
        # clip_grad None → an infinite bound: the norm is still computed, for the finiteness check.
        norm = torch.nn.utils.clip_grad_norm_(phi, self.cfg.clip_grad or float("inf"))
        if (self.sync_free and checked is None and guard.skips_on_device(self.optimizer, phi)
                and guard.host_bounds_hold(self.optimizer, phi)):
            return self._sync_free_update(loss_vec, norm, micro_batches, stats, lr)
        self.flush()  # the deferred checks of earlier steps come first (their log lines, counters, stats)
        probe = guard.probe(loss_vec if checked is None else torch.tensor(checked), norm, phi, self.optimizer)
        loss_values, norm_value = (checked or probe[:accum]), probe[-3]
        if not all(map(math.isfinite, loss_values)):
            return self._skip_loss(loss_values, stats, len(micro_batches[-1][1]) * env.world)
        if stats is not None:
            for v, (_, y) in zip(loss_values, micro_batches):
                stats.add(v, len(y) * env.world)
        loss_value = loss_values[-1]
        if self.sizer is not None and math.isfinite(norm_value) and self._sizer_update(loss_value):
            # The learner restored a snapshot (range test over, or a loss spike): this gradient belongs to
            # weights that are gone, so it is dropped; the step still counts and the schedule advances.
            self.optimizer.zero_grad(set_to_none=True)
            prec.update()
            self.scheduler.step()
            state.step += 1
            return
        if self.sizer is not None:  # the lr this update uses (the scheduler's own value derives from train.lr)
            lr = self.optimizer.param_groups[0]["lr"]
        if not math.isfinite(norm_value):
            self._skip("fp16 gradient overflow, step skipped (loss scale lowered)" if prec.scaler is not None
                       else "non-finite gradient, step skipped")
        elif not _guarded_step(self.optimizer, phi, probe):
            self._skip("update made weights non-finite, rolled back (optimizer state reset)")
        else:
            self.scheduler.step()  # only a taken step advances the schedule
        prec.update()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        self.log.scalars(state.step, {"train/loss": loss_value, "train/lr": lr})
        if self.sizer is not None and self.sizer.is_due(state.step):  # after φ moved: Δφ includes this step
            # Without the split no validation batch is drawn (the stream has its own generators).
            res = (self.sizer.step(*next(val_batches), self.optimizer, state.step) if self.sizer.cfg.learn_split
                   else self.sizer.keep_snapshot(self.optimizer, state.step))
            if self.sizer.message is not None:  # the probe guard restored the best snapshot
                self.log.info(self.sizer.message)
            if not res.skipped:
                lrs = self.sizer.effective_lrs(_schedule_factor(self.scheduler))
                self.log.scalars(state.step, {"meta/val_loss": res.val_loss, **{f"lr/{k}": v for k, v in lrs.items()}})

    @property
    def calibrating(self) -> bool:
        """The step-size learner's LR range test is still running."""
        return self.sizer is not None and self.sizer.state.calibrating

    def _sync_free_update(self, loss_vec: torch.Tensor, norm: torch.Tensor, micro_batches: Sequence[Batch],
                          stats: EpochStats | None, lr: float) -> None:
        """The update with its checks left on the device: nothing is read, so a GPU's queue never drains.

        :func:`guard.unsafe_flag` is the fused optimizer's ``found_inf``: a step with a non-finite loss or
        gradient, or outside the bounds where an update cannot overflow, is skipped by the kernel itself.
        What Python does with the step's values (epoch loss, log lines, skip counter) waits in
        ``_pending`` until :meth:`flush` reads many steps in one transfer. The price: the schedule and the
        step counter advance before anyone knows a step was bad (synced steps hold both back).
        """
        values = guard.device_probe(loss_vec, norm, self.phi, self.optimizer)
        self.optimizer.found_inf = guard.unsafe_flag(values)
        try:
            self.optimizer.step()
        finally:
            del self.optimizer.found_inf
        self.scheduler.step()
        self.precision.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        sizes = [len(y) * self.env.world for _, y in micro_batches]
        self._pending.append(_Pending(self.state.step, values, sizes, stats, lr))
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Read the pending sync-free steps' values in ONE transfer and do their bookkeeping, in order."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        rows = torch.stack([p.values for p in pending]).tolist()
        for p, values in zip(pending, rows):
            losses, (norm, w, s) = values[:-3], values[-3:]
            if not all(map(math.isfinite, losses)):
                why, good = "non-finite loss", losses[:_first_non_finite(losses)]
            elif not math.isfinite(norm):
                why, good = "non-finite gradient", losses
            elif not max(norm, w, s) < guard.BOUND:
                why, good = f"weights, gradient or optimizer state beyond {guard.BOUND:g} (diverging)", losses
            else:
                why, good = None, losses
            if p.stats is not None:
                for v, n in zip(good, p.sizes):
                    p.stats.add(v, n)
            if why is None:
                self.log.scalars(p.step, {"train/loss": losses[-1], "train/lr": p.lr})
            else:
                self.late_skips += 1
                self._skip(f"{why}, step skipped on the device", step=p.step)

    def current_lr(self) -> float:
        """The lr history.csv reports: param group 0's, or with learned step sizes the highest group's
        (the scheduler rewrites the groups from train.lr after every update; the learner sets the real ones)."""
        if self.sizer is None:
            return self.optimizer.param_groups[0]["lr"]
        return max(self.sizer.effective_lrs(_schedule_factor(self.scheduler)).values())

    def taken_steps(self) -> int:
        """Updates actually applied so far (the schedule's count, less sync-free steps found bad); call
        :meth:`flush` first."""
        return self.scheduler.last_epoch - self.late_skips

    def _skip_loss(self, losses: list[float], stats: EpochStats | None, images: int) -> None:
        """A non-finite loss: no update, no step count (the schedule does not advance); the finite
        micro-batches before it still count in the epoch's loss, as they always did."""
        bad = _first_non_finite(losses)
        if stats is not None:
            for v in losses[:bad]:
                stats.add(v, images)
        self._skip("non-finite loss, step skipped")
        self.optimizer.zero_grad(set_to_none=True)  # drop what earlier micro-batches added
        self.precision.discard()
        if self.sizer is not None:  # ends a range test / trips the guard (restores a snapshot)
            self._sizer_update(losses[bad])

    def _sizer_update(self, loss_value: float) -> bool:
        """Let the step-size learner set this update's lrs; True when it restored a snapshot instead."""
        msg = self.sizer.before_update(loss_value, self.optimizer, _schedule_factor(self.scheduler), self.state.step)
        if msg is not None:
            self.log.info(msg)
        return msg is not None

    def _skip(self, why: str, step: int | None = None) -> None:
        self.state.skipped_steps += 1
        self.log.info(f"step {self.state.step if step is None else step}: {why}")

    def _log_meta(self, res: MetaStepResult) -> None:
        if res.skipped:
            self.log.info(f"meta step {res.step}: skipped ({res.reason})")
            return
        values = {"meta/val_loss": res.val_loss, "meta/hypergrad_norm": res.grad_norm}
        values.update({f"gamma/{s}": g for s, g in zip(self.meta.sites, res.gamma)})  # read with the step
        self.log.scalars(self.state.step, values)


@contextlib.contextmanager
def _lookahead_mode(meta: MetaLearner, net: nn.Module) -> Iterator[None]:
    """γ requires grad (the look-ahead's graph must reach γ) and attention runs unfused (fused SDPA
    has no double backward); both only for this micro-batch, so plain steps keep fused attention."""
    with meta.gamma_grad(), unfused_attention(net):
        yield


def _guarded_step(optimizer: torch.optim.Optimizer, params: list[nn.Parameter], probe: list[float]) -> bool:
    """Step; False (and rolled back) if a weight became non-finite (the divergence of Fig. 1(d)).

    Within :func:`guard.update_is_safe`'s bounds an update cannot overflow, so it needs no backup.
    """
    if guard.update_is_safe(probe, optimizer, params):
        optimizer.step()
        return True
    return guard.checked_step(optimizer, params)


def _first_non_finite(values: list[float]) -> int:
    """Index of the first non-finite micro-batch loss (the ones before it still count in the epoch loss)."""
    return next(i for i, v in enumerate(values) if not math.isfinite(v))


def _schedule_factor(scheduler: torch.optim.lr_scheduler.LambdaLR) -> float:
    """The cosine/warm-up factor the scheduler applies at its current step."""
    return scheduler.lr_lambdas[0](scheduler.last_epoch)


def _accumulate(params: list[nn.Parameter], grads: list[torch.Tensor]) -> None:
    for p, g in zip(params, grads):
        p.grad = g.clone() if p.grad is None else p.grad + g


def micro_batch_groups(batches, accum: int) -> Iterator[list[Batch]]:
    """Group a loader's micro-batches into steps of ``accum``; a last incomplete group is dropped
    (it would otherwise leak its gradient into the next epoch's first step)."""
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) == accum:
            yield group
            group = []
