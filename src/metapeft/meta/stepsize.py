"""The ``stepsize`` meta mode: learned step sizes for head, input and output matrices.

The paper's γ (``meta.mode=gamma``) scales a site's output, which for SGD is a step size of that
site's zero-initialised matrix only, and never reaches the classifier head (DESIGN.md §6). This mode
makes "module-wise learning rate" literal, in three parts:

1. **Calibration** (``meta.calibrate``): the first ``calib_steps`` steps are an exponential LR range
   test used as warm-up: the reference LR ρ climbs from ``calib_range[0]`` to ``calib_range[1]``
   while the loss of a fixed class-balanced probe batch is watched (``calib_probe`` batches; 0 watches
   the smoothed train loss, whose batch-to-batch noise moved the cliff 2× between seeds). Where it
   rises past ``1 + calib_rise`` times its minimum (or turns non-finite) the cliff is found:
   ρ becomes ``ρ_cliff / calib_safety`` and the parameters are restored to the last snapshot trained
   only below that LR. The run therefore does not depend on the starting ``train.lr`` at all.
   With ``meta.calib_restart`` ``initial`` / ``warm`` the test runs on batches of its own before the run
   (``train/range_test.py``) and :meth:`StepSizeLearner.restart` then starts the run from θ₀ / from the
   restored weights with its whole schedule.
2. **Hypergradient refinement** (``meta.learn_split=true``; off by default, because on the training
   hold-out it tied the range test alone on AID-LT and lost 2.7 pt balanced / 12.5 pt few on MSTAR-LT,
   docs/results.md): every ``meta.interval`` steps one backward of the outer loss on a
   class-balanced validation batch gives, per group g, ``dL_val/d log s_g = ⟨∇_g L_val, Δφ_g⟩``
   (Δφ_g: g's update since the last meta step; it is linear in s_g). Its normalised form, the cosine
   between −∇_g L_val and Δφ_g, is bounded and scale-free, so ``log s_g += meta.lr · tanh(cos/τ)``
   is a clipped, sign-aware step on the log step size (not Adam's ±lr whatever the signal), bounded
   to ``[min_mult, max_mult]`` × ρ so no group is ever pushed past the measured cliff.
3. **Guard**: a train-loss spike (smoothed loss > ``guard_spike`` × its minimum and × half its first
   value, or non-finite) restores a snapshot and halves every multiplier. With ``meta.guard=probe`` (the
   default) every snapshot also reads the range test's probe loss: past ``1 + CALIB_TOLERANCE`` times its
   best (and that × half its first value) at ``GUARD_PATIENCE`` snapshots in a row, the run goes back to the
   snapshot with the best probe loss. One high reading is not enough: on MSTAR-LT a single +32 % reading
   that the run recovered from by itself tripped it and cost 4 pt. Without a probe (no range test, or
   ``calib_probe=0``) it acts as ``guard=loss``.
   A slow collapse (the train loss drifting to chance over a few dozen steps, never doubling) damaged the
   newest snapshot too, so restoring that one (``guard=loss``) could not recover the run.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .learner import MetaStepResult
from .step_groups import StepGroup, learned_name
from .stepsize_settings import StepSizeSettings
from .stepsize_state import GUARD_FLOOR, LossWatch as _LossWatch, Snapshot as _Snapshot, StepSizeState

__all__ = ["CALIBRATED_GAMMA", "StepSizeLearner", "StepSizeSettings", "stepsize_summary"]

CALIBRATED_GAMMA = "gamma+calibrate"   # report()["mode"] when γ learns beside the range test (meta.mode=gamma)

DEFAULT_RANGES = {"sgd": (1e-3, 1.0), "adamw": (1e-5, 1e-1)}
CALIB_TOLERANCE = 0.3  # guard=probe: a probe reading above (1 + this) × its best is high (the test: calib_rise)
STEP_TAU = 0.1         # log step size += lr · tanh(cos / STEP_TAU): a cosine of 0.1 is already a strong signal
MIN_MULT = 1 / 16      # lowest learned multiplier of a group's lr
GUARD_PATIENCE = 2     # guard=probe trips after this many high probe readings in a row (one is noise)


class StepSizeLearner:
    """Owns the step-size multipliers of ``groups``; the trainer calls it around each update."""

    def __init__(self, model: nn.Module, groups: list[StepGroup], cfg: StepSizeSettings, *, base_lr: float,
                 optimizer_name: str, outer_loss: Callable,
                 reduce: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None) -> None:
        self.model, self.groups, self.cfg, self.outer_loss = model, groups, cfg, outer_loss
        self.reduce = reduce or (lambda grads: grads)
        self.names: list[str] = list(dict.fromkeys(learned_name(g) for g in groups))
        self.index = [self.names.index(learned_name(g)) for g in groups]
        self.log_mult = [0.0] * len(self.names)
        self.params = [p for g in groups for p in g.params]
        lo, hi = cfg.calib_range or DEFAULT_RANGES[optimizer_name]
        self.range = (float(lo), float(hi))
        self.state = StepSizeState(rho=self.range[0] if cfg.calibrate else base_lr, calibrating=cfg.calibrate)
        self.base_lr = base_lr
        self._ring: list[_Snapshot] = []
        self._anchor: _Snapshot | None = None
        self._best: _Snapshot | None = None   # guard=probe: the snapshot with the lowest probe loss
        self.message: str | None = None       # what the last due step's guard did (the trainer logs it)
        self.probe: tuple[torch.Tensor, torch.Tensor] | None = None
        self.tracked: list[torch.Tensor] = []  # γ when the paper's modulators learn beside it (calibrated gamma)
        self._initial: _Snapshot | None = None  # restart "initial": the weights before the test's first update

    def track(self, tensors: list[torch.Tensor]) -> None:
        """Tensors outside φ's optimizer whose values snapshots keep and restores put back: γ in
        ``meta.mode=gamma`` with ``meta.calibrate``. A guard that restored φ but kept the γ learned on the
        damaged trajectory would not undo it. (γ's own optimizer state is not rolled back.)"""
        self.tracked = list(tensors)

    def set_probe(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The fixed batch whose loss the range test watches (the same images at every lr: no batch noise)."""
        self.probe = (x, y)

    def _probe_loss(self) -> float:
        with torch.no_grad():
            loss = self.outer_loss(self.model(self.probe[0]), self.probe[1]).detach()
        return float(self.reduce([loss.reshape(1)])[0])  # the mean over ranks: every rank ends alike

    # ------------------------------------------------------------------ optimizer wiring
    def optimizer_groups(self) -> list[dict]:
        """Param groups for the main optimizer (their lr is rewritten before every update)."""
        return [{"params": g.params, "lr": self.base_lr * g.base_factor} for g in self.groups]

    def multipliers(self) -> dict[str, float]:
        return {n: math.exp(v) for n, v in zip(self.names, self.log_mult)}

    def effective_lrs(self, schedule_factor: float = 1.0) -> dict[str, float]:
        """The LR each group's parameters get now (max over the base factors of a name)."""
        out: dict[str, float] = {}
        for g, i in zip(self.groups, self.index):
            out[self.names[i]] = max(out.get(self.names[i], 0.0), self._group_lr(g, i, schedule_factor))
        return out

    def group_lr(self, k: int, schedule_factor: float) -> float:
        """The lr param group ``k`` gets in an update at ``schedule_factor`` (what _set_lrs would write)."""
        return self._group_lr(self.groups[k], self.index[k], schedule_factor)

    def _group_lr(self, group: StepGroup, index: int, schedule_factor: float) -> float:
        """ρ × schedule × the group's fixed factor × its learned multiplier."""
        return self.state.rho * schedule_factor * group.base_factor * math.exp(self.log_mult[index])

    def _set_lrs(self, optimizer: torch.optim.Optimizer, schedule_factor: float) -> None:
        for pg, g, i in zip(optimizer.param_groups, self.groups, self.index):
            pg["lr"] = self._group_lr(g, i, schedule_factor)

    # ------------------------------------------------------------------ the per-step hook
    def before_update(self, loss: float, optimizer: torch.optim.Optimizer, schedule_factor: float,
                      step: int) -> str | None:
        """Called after the backward of step ``step`` (loss = its train loss), before the update.

        Sets every group's LR for this update. Returns ``None`` to go on with the update, or a
        message when it restored a snapshot instead (the caller then drops this step's gradient).
        """
        s = self.state
        smooth = s.watch.update(loss) if math.isfinite(loss) else math.inf
        if s.calibrating:
            if self.probe is None:
                return self._calibration_step(loss, smooth, s.watch.best, optimizer, schedule_factor, step)
            probe = self._probe_loss()
            s.probe_best = min(s.probe_best, probe)
            return self._calibration_step(loss, probe, s.probe_best, optimizer, schedule_factor, step)
        if self.cfg.guard_spike and s.watch.spiked(smooth, self.cfg.guard_spike):
            return self._guard(optimizer, step, loss)
        self._set_lrs(optimizer, schedule_factor)
        return None

    def _calibration_step(self, loss: float, signal: float, best: float, optimizer, schedule_factor: float,
                          step: int) -> str | None:
        """``signal``: the watched loss (probe or smoothed train loss), ``best`` its minimum so far."""
        s, (lo, hi), steps = self.state, self.range, self.cfg.calib_steps
        diverged = s.calib_index >= 2 and not signal <= (1 + self.cfg.calib_rise) * best
        # `loss` was measured after the updates so far; the newest of them used ρ = last_lr.
        last_lr = self._ring[-1].rho if self._ring else None
        s.calib_trace.append({"step": step, "last_lr": last_lr, "loss": loss, "watched": signal})
        if diverged or not math.isfinite(loss):
            # The loss reflects every update so far; the last one used the previous ρ.
            cliff = self._ring[-1].rho if self._ring else lo
            # Nothing to go back to before the first update (a non-finite first loss): no restore.
            return self._end_calibration(optimizer, schedule_factor, cliff, restore=bool(self._ring))
        if s.calib_index >= steps:
            return self._end_calibration(optimizer, schedule_factor, hi, restore=False)
        s.rho = lo * (hi / lo) ** (s.calib_index / max(steps - 1, 1))
        self._ring.append(self._snapshot(optimizer, s.rho))
        if s.calib_index == 0 and self.cfg.restart == "initial":
            self._initial = self._ring[0]   # θ₀, before any update: what restart() goes back to
        ratio = (hi / lo) ** (1 / max(steps - 1, 1))
        keep = int(math.ceil(math.log(self.cfg.calib_safety) / math.log(ratio))) + 2 if ratio > 1 else 2
        del self._ring[:-keep]
        s.calib_index += 1
        self._set_lrs(optimizer, schedule_factor)
        return None

    def _end_calibration(self, optimizer, schedule_factor: float, cliff: float, *, restore: bool) -> str | None:
        s = self.state
        s.calibrating, s.lr_cliff = False, cliff
        s.rho = cliff / self.cfg.calib_safety
        msg = None
        if restore:
            # Newest snapshot whose parameters saw only updates at LRs <= the new ρ (the ring holds
            # θ_j with ρ_j = the LR θ_j is about to be updated with, so θ_j saw LRs < ρ_j).
            good = [snap for snap in self._ring if snap.rho <= s.rho * (1 + 1e-9)]
            snap = good[-1] if good else self._ring[0]
            self._restore(optimizer, snap)
            msg = (f"LR range test: loss rose at lr {cliff:.3g}; lr set to {s.rho:.3g} "
                   f"(÷{self.cfg.calib_safety:g}), weights restored to the lr {snap.rho:.3g} snapshot")
        self._ring = []
        s.watch = _LossWatch()
        self._anchor = self._snapshot(optimizer, s.rho)
        self._best, s.guard_best, s.guard_start, s.guard_high = None, math.inf, math.nan, 0
        if not restore:
            self._set_lrs(optimizer, schedule_factor)
            return None
        return msg

    def restart(self, optimizer: torch.optim.Optimizer) -> None:
        """``meta.calib_restart``, once the range test has ended. ``initial``: φ (and tracked γ) back to θ₀ with
        no optimizer state, so what follows is a fresh run at the found lr; only the test's outcome (ρ, the
        cliff, the trace) is kept. ``warm``: φ stays where the test's end put it (the last snapshot trained
        below ρ, with its momentum): those updates are the run's warm-up."""
        s = self.state
        if s.calibrating:
            raise RuntimeError("restart() needs a range test that has ended (meta.calib_restart)")
        if self.cfg.restart == "warm":
            start = self._anchor   # _end_calibration's snapshot of the restored weights
        else:   # None: the test ended before its first update (a non-finite first loss), so φ is θ₀
            start = self._initial or self._snapshot(optimizer, s.rho)
        self._restore(optimizer, start)
        self._anchor, self._initial = start, None
        self._ring, self._best = [], None
        s.watch, s.guard_best, s.guard_start, s.guard_high = _LossWatch(), math.inf, math.nan, 0

    def _back_off(self, optimizer, snap: _Snapshot | None) -> None:
        """What every guard trip does: halve every step size, go back to ``snap`` (it becomes the anchor)
        and restart the loss watch from there."""
        s = self.state
        s.guard_restores += 1
        self.log_mult = [v - math.log(2.0) for v in self.log_mult]
        if snap is not None:
            self._restore(optimizer, snap)
            self._anchor = snap
        s.watch = _LossWatch()

    def _guard(self, optimizer, step: int, loss: float) -> str:
        snap, which = (self._best, "best-probe") if self._best is not None else (self._anchor, "last meta-step")
        self._back_off(optimizer, snap)
        return f"step {step}: train loss spiked ({loss:.3g}); restored the {which} snapshot, step sizes halved"

    def _probe_guard(self, optimizer, step: int) -> None:
        """guard=probe, at a snapshot: when the probe loss has been above ``1 + CALIB_TOLERANCE`` ×
        max(its best, GUARD_FLOOR × its first value) at ``GUARD_PATIENCE`` snapshots in a row, back off to
        the best snapshot (``self.message`` says so); else the new snapshot becomes the anchor, and the best
        one when its probe loss is the lowest so far."""
        s = self.state
        probe = self._probe_loss()
        if math.isnan(s.guard_start):
            s.guard_start = probe
        limit = (1 + CALIB_TOLERANCE) * max(s.guard_best, GUARD_FLOOR * s.guard_start)
        s.guard_trace.append({"step": step, "probe": probe, "best": s.guard_best})
        s.guard_high = s.guard_high + 1 if (self._best is not None and not probe <= limit) else 0
        if s.guard_high >= GUARD_PATIENCE:
            s.guard_high = 0
            self._back_off(optimizer, self._best)
            self.message = (f"step {step}: probe loss {probe:.3g} ({GUARD_PATIENCE} readings in a row above "
                            f"{limit:.3g}, best {s.guard_best:.3g}); restored the best-probe snapshot, step sizes halved")
            return
        self._anchor = self._snapshot(optimizer, s.rho)
        if probe <= s.guard_best:
            s.guard_best, self._best = probe, self._anchor

    def _advance_anchor(self, optimizer, step: int) -> None:
        """The snapshot a due step leaves (Δφ is measured from it; the guard restores one)."""
        self.message = None
        if self.cfg.guard == "probe" and self.probe is not None:
            self._probe_guard(optimizer, step)
        else:
            self._anchor = self._snapshot(optimizer, self.state.rho)

    # ------------------------------------------------------------------ the meta step
    def is_due(self, inner_step: int) -> bool:
        return not self.state.calibrating and inner_step % self.cfg.interval == 0

    def keep_snapshot(self, optimizer: torch.optim.Optimizer, step: int = 0) -> MetaStepResult:
        """A due step without the split (``meta.learn_split=false``): only the guard's snapshot moves on;
        no validation batch, no outer loss, no backward."""
        self._advance_anchor(optimizer, step)
        return MetaStepResult(self.state.meta_steps, math.nan, 0.0, skipped=True, reason="meta.learn_split=false")

    def step(self, x_val: torch.Tensor, y_val: torch.Tensor, optimizer: torch.optim.Optimizer,
             inner_step: int = 0) -> MetaStepResult:
        """One outer-loss backward; moves each log multiplier along its normalised hypergradient."""
        s = self.state
        if not self.cfg.learn_split:
            return self.keep_snapshot(optimizer, inner_step)
        loss = self.outer_loss(self.model(x_val), y_val)
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        grads = self.reduce([torch.zeros_like(p) if g is None else g.detach() for p, g in zip(self.params, grads)])
        val_loss = float(loss.detach())
        s.meta_steps += 1
        anchor = self._anchor
        if anchor is None or not math.isfinite(val_loss):
            self._advance_anchor(optimizer, inner_step)
            return MetaStepResult(s.meta_steps, val_loss, 0.0, skipped=True, reason="no update to measure yet")
        dot = [0.0] * len(self.names)
        g2 = [0.0] * len(self.names)
        d2 = [0.0] * len(self.names)
        k = 0
        # One transfer: per parameter (⟨g, Δ⟩, |g|², |Δ|²) stacked, then summed per learned name.
        stats = torch.stack([torch.stack([(g * (p.detach() - a)).sum(), g.pow(2).sum(), (p.detach() - a).pow(2).sum()])
                             for g, p, a in zip(grads, self.params, anchor.params)]).double().cpu().tolist()
        for group, i in zip(self.groups, self.index):
            for _ in group.params:
                dot[i] += stats[k][0]
                g2[i] += stats[k][1]
                d2[i] += stats[k][2]
                k += 1
        lo, hi = math.log(MIN_MULT), math.log(self.cfg.max_mult)
        cosines = [-dot[i] / (math.sqrt(g2[i] * d2[i]) + 1e-30) for i in range(len(self.names))]
        moves = [self.cfg.lr * math.tanh(c / STEP_TAU) for c in cosines]
        if self.cfg.step_relative and len(moves) > 1:
            # Greedy step-size signals are biased towards shrinking (short-horizon bias); the level is the
            # range test's job, so only the allocation between groups is learned: the mean move is removed.
            mean = sum(moves) / len(moves)
            moves = [m - mean for m in moves]
        for i, move in enumerate(moves):
            self.log_mult[i] = min(hi, max(lo, self.log_mult[i] + move))
        self._advance_anchor(optimizer, inner_step)
        norm = math.sqrt(sum(c * c for c in cosines))
        s.trace.append({"step": s.meta_steps, "val_loss": val_loss, "cos": cosines,
                        "mult": [math.exp(v) for v in self.log_mult]})
        return MetaStepResult(s.meta_steps, val_loss, norm)

    # ------------------------------------------------------------------ snapshots
    def _snapshot(self, optimizer: torch.optim.Optimizer, rho: float) -> _Snapshot:
        params = [p.detach().clone() for p in self.params + self.tracked]   # the tracked ones last, no opt state
        opt = [{k: (v.clone() if torch.is_tensor(v) else v) for k, v in optimizer.state.get(p, {}).items()}
               for p in self.params]
        return _Snapshot(rho, params, opt)

    def _restore(self, optimizer: torch.optim.Optimizer, snap: _Snapshot) -> None:
        with torch.no_grad():
            for p, v, st in zip(self.params, snap.params, snap.opt_state):
                p.copy_(v)
                if st:
                    optimizer.state[p] = {k: (t.clone() if torch.is_tensor(t) else t) for k, t in st.items()}
                else:
                    optimizer.state.pop(p, None)
            for p, v in zip(self.tracked, snap.params[len(self.params):]):
                p.copy_(v)

    # ------------------------------------------------------------------ checkpoints and reports
    def report(self) -> dict:
        s = self.state
        return {"mode": CALIBRATED_GAMMA if self.tracked else "stepsize", "groups": self.names,
                "multipliers": self.multipliers(), "reference_lr": s.rho, "lr_cliff": s.lr_cliff, "calib_safety": self.cfg.calib_safety,
                "calibrating": s.calibrating, "calib_restart": self.cfg.restart,
                "effective_lr": self.effective_lrs(), "guard_restores": s.guard_restores,
                "meta_steps": s.meta_steps, "calibration": s.calib_trace, "trace": s.trace,
                "guard": self.cfg.guard, "guard_trace": s.guard_trace}

    def state_dict(self) -> dict:
        s = self.state

        def snap(x: _Snapshot | None):
            return None if x is None else {"rho": x.rho, "params": x.params, "opt_state": x.opt_state}

        return {"log_mult": list(self.log_mult), "rho": s.rho, "calibrating": s.calibrating,
                "calib_index": s.calib_index, "lr_cliff": s.lr_cliff, "probe_best": s.probe_best,
                "meta_steps": s.meta_steps,
                "guard_restores": s.guard_restores,
                "watch": [s.watch.ema, s.watch.n, s.watch.best, s.watch.start], "calib_trace": s.calib_trace, "trace": s.trace,
                "ring": [snap(x) for x in self._ring], "anchor": snap(self._anchor),
                "guard_best": s.guard_best, "guard_start": s.guard_start, "guard_trace": s.guard_trace,
                "guard_high": s.guard_high,
                "best_is_anchor": self._best is not None and self._best is self._anchor,
                "best": None if self._best is self._anchor else snap(self._best)}

    def load_state_dict(self, d: dict) -> None:
        def snap(x):
            return None if x is None else _Snapshot(float(x["rho"]), list(x["params"]), list(x["opt_state"]))

        self.log_mult = [float(v) for v in d["log_mult"]]
        self.state = StepSizeState(rho=float(d["rho"]), calibrating=bool(d["calibrating"]),
                                   calib_index=int(d["calib_index"]), lr_cliff=d["lr_cliff"],
                                   probe_best=float(d.get("probe_best", math.inf)),
                                   meta_steps=int(d["meta_steps"]), guard_restores=int(d["guard_restores"]),
                                   watch=_LossWatch(*d["watch"]), calib_trace=list(d["calib_trace"]),
                                   trace=list(d["trace"]))
        self.state.guard_best = float(d.get("guard_best", math.inf))
        self.state.guard_start = float(d.get("guard_start", math.nan))
        self.state.guard_trace = list(d.get("guard_trace", []))
        self.state.guard_high = int(d.get("guard_high", 0))
        self._ring = [snap(x) for x in d["ring"]]
        self._anchor = snap(d["anchor"])
        self._best = self._anchor if d.get("best_is_anchor") else snap(d.get("best"))


def stepsize_summary(report: dict) -> str:
    """What ``metapeft train`` prints for a stepsize run: the range test's outcome and each group's lr."""
    cliff = report.get("lr_cliff")
    found = (f"loss rose at lr {cliff:.3g}, run lr {report['reference_lr']:.3g}" if cliff is not None
             else f"run lr {report['reference_lr']:.3g} (no range test)")
    if report.get("mode") == CALIBRATED_GAMMA:   # the paper's γ learned on top: no multipliers to list
        return f"LR range test before γ learned: {found}; guard restores: {report['guard_restores']}"
    lines = [f"learned step sizes (γ fixed at its init): {found}; guard restores: {report['guard_restores']}"]
    for name, mult in report["multipliers"].items():
        lines.append(f"  {name:>12s}  × {mult:.3f}   peak lr {report['effective_lr'][name]:.4g}")
    return "\n".join(lines)
