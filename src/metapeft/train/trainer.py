"""The training run: inner loop on φ, outer loop on γ, checkpoints, final evaluation.

Reads top to bottom: ``Trainer(cfg, out_dir).run()`` → :meth:`~Trainer._set_up` (data, model, head
init, optimizers) → :meth:`~Trainer._resume` if asked → :meth:`~Trainer._epoch` per epoch (each a
loop of :meth:`TrainStep.step <metapeft.train.step.TrainStep.step>`) → :meth:`~Trainer._finish`
(evaluate, write results, export). Single process by default; under ``torchrun`` it trains
data-parallel (see ``distributed.py``).
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ..config import RunConfig
from ..data import BatchLoader, DataError
from ..errors import ConfigError, TrainingError
from ..eval import Metrics
from ..meta import GammaReport, MetaLearner, gamma_report, prune_sites
from ..meta.learner import resolve_interval
from ..meta.step_groups import build_step_groups
from ..meta.stepsize import StepSizeLearner, StepSizeSettings
from ..meta.stepsize_settings import gamma_calibration, too_short
from .meta_states import MetaStates
from ..peft import TrainableSummary, gamma_parameters, trainable_summary
from . import checkpoint as ckpt
from . import guard
from . import rundir
from .distributed import DistEnv
from .evaluate import evaluate
from .heads import init_head_from_class_means
from .losses import build_loss
from .model import build_run, extract_features, resolve_device
from .optim import build_optimizer, cosine_schedule, head_param_groups, layer_decay_groups
from .pipeline import RunData, calibration_probe, eval_loader, meta_val_batches, train_loader
from .precision import enable_tf32
from .prefix_cache import SuffixModel, cache_prefix, cacheable_prefix
from .probe import ProbeFit, fit_probe
from .range_test import RANGE_TEST_STREAM, run_range_test
from .runlog import RunLog
from .selection import ModelSelection
from .state import EpochStats, TrainState
from .step import Batch, TrainStep, micro_batch_groups

SUMMARY_KEYS = ("overall", "balanced", "many", "medium", "few")


@dataclass
class RunResult:
    out_dir: Path
    metrics: Metrics
    gamma: dict[str, float]
    wall_time_s: float


@dataclass
class RunParts:
    """What :meth:`Trainer._set_up` builds and the later phases use (no attribute appears later)."""

    env: DistEnv
    device: torch.device
    log: RunLog
    started: float
    data: RunData
    model: nn.Module           # the whole model (checkpoints, γ report, export)
    net: nn.Module             # what steps and evaluations call: the model, or its suffix on cached tokens
    prefix_blocks: int         # frozen blocks whose output is cached (0: none)
    summary: TrainableSummary
    loader: BatchLoader        # the training micro-batches
    step: TrainStep
    state: TrainState
    preflight: rundir.Preflight   # the run-directory checks' findings (resume checkpoint, notes)
    selector: ModelSelection      # best-by-validation epoch (with train.val_holdout), or a no-op
    resuming: bool
    head_fit: ProbeFit | None = None  # the probe fit of model.head_init=probe (fresh starts only)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: RunConfig, out_dir: str | Path, *, resume: bool = False, quiet: bool = False) -> None:
        self.cfg = cfg
        self.out = Path(out_dir)
        self.resume = resume
        self.quiet = quiet

    def run(self) -> RunResult:
        env, device_name = DistEnv.setup(self.cfg.train.device)
        try:
            with rundir.RunLock(self.out, enabled=env.is_main) as lock:  # one writer per run directory
                if lock.taken_over and not self.quiet:
                    print(f"{lock.path}: taken over from pid {lock.taken_over} (no longer running)", file=sys.stderr)
                run = self._set_up(env, resolve_device(device_name))
                if run.resuming:
                    self._resume(run)
                self._begin_writing(run)
                if not run.resuming:
                    self._separate_range_test(run)
                for epoch in range(run.state.epoch, self.cfg.train.epochs):
                    self._epoch(run, epoch)
                return self._finish(run)
        finally:
            env.close()

    def _set_up(self, env: DistEnv, device: torch.device) -> RunParts:
        """Check, seed, build data and model (prefix cache, head init), then the step's optimizers."""
        cfg, t = self.cfg, self.cfg.train
        for name, size in (("train.batch_size", t.batch_size // t.grad_accum),
                           ("meta.val_batch_size", cfg.meta.val_batch_size)):
            if size % env.world:
                raise ConfigError(f"{name} per step ({size}) must divide over {env.world} ranks")
        pre = rundir.preflight(self.out, cfg, self.resume)  # every run-dir check; no write before _begin_writing
        if t.threads:
            torch.set_num_threads(t.threads)
        enable_tf32(device, t.tf32)
        seed_everything(t.seed)
        log = RunLog(self.out, tensorboard=t.tensorboard and env.is_main, quiet=self.quiet or not env.is_main)
        started = time.perf_counter()
        for note in pre.notes if env.is_main else ():  # a fallback is said even with --quiet
            print(f"warning: {note}", file=sys.stderr)
        ds, model, data = build_run(cfg, device)
        log.info(ds.describe())
        summary = trainable_summary(model)
        log.info(str(summary))
        net: nn.Module = model
        start = cacheable_prefix(model, cfg)
        if start:
            data = cache_prefix(data, model, start, device, cfg)
            net = SuffixModel(model, start)
            log.info(f"frozen prefix cached: blocks 0..{start - 1} run once per image, not every step")
        resuming = pre.saved is not None
        head_fit = None  # only on a fresh start: a resumed run loads its head from the checkpoint
        if not resuming and cfg.model.head_init in ("class_mean", "probe"):
            feats, labels = extract_features(net, eval_loader(data.train, data, cfg, device))
            if cfg.model.head_init == "probe":  # LP-FT: a probe fitted to convergence first (train/probe.py)
                m = cfg.model
                head_fit = fit_probe(model.get_classifier(), feats, labels, l2=m.probe_l2, loss=m.probe_loss,
                                     iters=m.probe_iters)
                log.info(f"head init: probe fit ({head_fit.head}, {head_fit.loss}, l2 {head_fit.l2:g}) loss "
                         f"{head_fit.loss_before:.4f} -> {head_fit.loss_after:.4f}, train balanced "
                         f"{100 * head_fit.train_balanced:.1f} % in {head_fit.wall_s:.1f} s")
            else:
                init_head_from_class_means(model.get_classifier(), feats, labels)
        loader = train_loader(data, cfg, device)
        if len(loader) // t.grad_accum < 1:
            raise DataError(f"train set of {len(data.train)} images gives no full step of batch {t.batch_size}")
        step = self._build_step(model, net, data, len(loader) // t.grad_accum, env, device, log)
        selector = ModelSelection(cfg, data.selection, self.out, is_main=env.is_main)
        return RunParts(env, device, log, started, data, model, net, start, summary, loader, step, step.state,
                        pre, selector, resuming, head_fit)

    def _build_step(self, model: nn.Module, net: nn.Module, data: RunData, steps_per_epoch: int, env: DistEnv,
                    device: torch.device, log: RunLog) -> TrainStep:
        """φ (trainable, γ excluded), its optimizer and schedule, the losses, and the meta learner."""
        cfg, t = self.cfg, self.cfg.train
        gamma_ids = {id(g) for g in gamma_parameters(model)}
        phi = {n: p for n, p in net.named_parameters() if p.requires_grad and id(p) not in gamma_ids}
        counts = data.ds.train_class_counts
        criterion = build_loss(t.loss, counts, tau=t.la_tau, focal_gamma=t.focal_gamma).to(device)
        meta, sizer, stepsize = None, None, cfg.meta.enabled and cfg.meta.mode == "stepsize"
        outer = build_loss(cfg.meta.outer_loss, counts, tau=t.la_tau).to(device) if cfg.meta.enabled else None
        if cfg.meta.enabled and not stepsize:  # the learner freezes γ itself; it gets gradients only in meta steps
            meta = MetaLearner(net, cfg.meta, outer, reduce=env.mean_, steps_per_epoch=steps_per_epoch)
        else:  # without γ learning γ is a constant (its init)
            for g in gamma_parameters(model):
                g.requires_grad_(False)
        planned, interval = t.epochs * steps_per_epoch, resolve_interval(cfg.meta.interval, steps_per_epoch)
        method = cfg.peft.method
        settings = (StepSizeSettings.from_config(cfg.meta, interval, planned, t.epochs, method) if stepsize
                    else gamma_calibration(cfg.meta, interval, planned, t.epochs, method) if meta is not None else None)
        short = too_short(planned, cfg.meta.calib_steps or StepSizeSettings.calib_steps)  # test > 1/3 of the run
        if short and settings is None and meta is not None and cfg.meta.calibrate is None:
            log.info(f"{planned} steps are too few for the LR range test; γ learns at train.lr {t.lr:g} (the paper)")
        if settings is not None:  # φ's optimizer gets one param group per step group
            if short:
                log.info(f"stepsize: {planned} steps are too few for the {settings.calib_steps}-step LR range test; "
                         + (f"it is off and the run uses train.lr {t.lr:g}" if not settings.calibrate else
                            "it runs because meta.calibrate=true, and may not end before the run does"))
            groups = build_step_groups(model, phi, by=settings.groups, scale_invariant=settings.scale_invariant,
                                       head_lr_mult=t.head_lr_mult)
            sizer = StepSizeLearner(net, groups, settings, base_lr=t.lr, optimizer_name=t.optimizer,
                                    outer_loss=outer, reduce=env.mean_)
            if meta is not None:  # gamma mode with the range test: a guard's restore puts γ back too
                sizer.track(meta.gammas)
            if settings.calibrate and settings.calib_probe:
                x, y = calibration_probe(data, cfg, device, settings.calib_probe)
                sizer.set_probe(env.shard(x), env.shard(y))
        if sizer:
            groups = sizer.optimizer_groups()
        elif t.layer_decay is not None:  # the full fine-tune recipe: per-block lrs
            groups = layer_decay_groups(phi, model, t)
        else:
            groups = head_param_groups(list(phi.values()), model.get_classifier(), t)
        # train.sync_free: a fused optimizer, which can skip a bad step on the device (train/guard.py)
        optimizer = build_optimizer(groups, t, fused=guard.resolve_sync_free(t.sync_free, device) and not sizer)
        scheduler = cosine_schedule(optimizer, t.epochs * steps_per_epoch, t.warmup_steps)
        step = TrainStep(net, phi, optimizer, scheduler, criterion, t, TrainState(), meta=meta, sizer=sizer,
                         env=env, log=log)  # it resolves train.precision on the weights' device
        if step.precision.name != "fp32":
            log.info(f"precision: {step.precision.name} autocast (weights, losses and γ in fp32)")
        return step

    # ------------------------------------------------------------------ resume
    def _resume(self, run: RunParts) -> None:
        """Load the checkpoint preflight chose (and already read) into the model, optimizers, schedule, state.

        Nothing is written yet: a checkpoint that does not fit this run is refused with the dir untouched.
        """
        step = run.step
        saved = rundir.restore(run.preflight, run.model, step.optimizer, step.scheduler,
                               MetaStates(step.meta, step.sizer))
        run.state = step.state = TrainState.from_dict(saved)
        step.precision.load_state_dict(run.state.loss_scaler or {})  # fp16: resume with the scale it had
        run.log.info(f"resumed from {run.preflight.checkpoint} (epoch {run.state.epoch}, step {run.state.step})")

    def _begin_writing(self, run: RunParts) -> None:
        """The first write into the run directory, after every check (clean-up, config.yaml, history)."""
        if run.env.is_main:
            rundir.begin_writing(self.out, self.cfg, run.preflight)
            if run.resuming:
                run.log.rewrite_csv("history.csv", run.state.history)
        run.env.barrier()

    # ------------------------------------------------------------------ the range test before the run
    def _separate_range_test(self, run: RunParts) -> None:
        """``meta.calib_restart``: the LR range test on batches of its own; the run then starts with its whole
        schedule from θ₀ (``initial``) or from the test's restored weights (``warm``)."""
        sizer, t = run.step.sizer, self.cfg.train
        if sizer is None or not sizer.state.calibrating or sizer.cfg.restart == "inline" or t.epochs == 0:
            return
        run.net.train()
        val = self._val_batches(run, RANGE_TEST_STREAM)
        taken = run_range_test(run.step, run.loader, val, run.env, lambda k: seed_everything(t.seed * 1000 + k))
        start = "its initial weights" if sizer.cfg.restart == "initial" else "the weights the test restored"
        run.log.info(f"LR range test: {taken} steps on batches of their own; the run starts from {start} with its "
                     f"whole schedule at lr {sizer.state.rho:.3g}")

    # ------------------------------------------------------------------ epochs
    def _epoch(self, run: RunParts, epoch: int) -> None:
        """One pass over the training set in steps of ``grad_accum`` micro-batches, then the epoch's row."""
        t, env = self.cfg.train, run.env
        seed_everything(t.seed * 1000 + epoch)  # dropout etc.: a function of (seed, epoch) for exact resume
        run.loader.set_epoch(epoch)
        val = self._val_batches(run, epoch)
        run.net.train()
        stats, good_steps = EpochStats(), run.step.taken_steps()
        bar = _progress(run.loader, f"epoch {epoch + 1}/{t.epochs}", t.progress and not self.quiet and env.is_main)
        for group in micro_batch_groups(bar, t.grad_accum):
            run.step.step([(env.shard(x), env.shard(y)) for x, y in group], val, stats)
            if hasattr(bar, "set_postfix") and stats.losses:
                bar.set_postfix(loss=f"{stats.mean_loss:.3f}", img_s=f"{stats.images_per_s:.1f}")
        run.step.flush()  # sync-free steps' deferred checks: the epoch's loss and skips are known from here on
        if run.step.taken_steps() == good_steps:  # no step taken: stop before the checkpoint replaces the last good one
            raise TrainingError(rundir.all_skipped_message(epoch, self.out))
        self._end_epoch(run, epoch, self._epoch_row(run, epoch, stats))

    def _val_batches(self, run: RunParts, epoch: int) -> Iterator[Batch] | None:
        """This epoch's meta-validation stream (a pure function of seed and epoch), sharded over ranks."""
        if run.step.meta is None and run.step.sizer is None:
            return None
        return ((run.env.shard(x), run.env.shard(y)) for x, y in meta_val_batches(run.data, self.cfg, run.device, epoch))

    def _epoch_row(self, run: RunParts, epoch: int, stats: EpochStats) -> dict:
        """The epoch's history.csv row, with validation (hold-out) and, when asked, test metrics."""
        t, step = self.cfg.train, run.step
        elapsed = time.perf_counter() - stats.started
        row = {"epoch": epoch + 1, "step": run.state.step, "train_loss": stats.mean_loss,
               "lr": step.current_lr(), "epoch_time_s": elapsed, "images_per_s": stats.seen / elapsed}
        if step.meta is not None:
            g = step.meta.gamma_values()
            row.update(gamma_mean=float(np.mean(g)), gamma_min=min(g), gamma_max=max(g))
        scores = run.selector.epoch_end(epoch, epoch + 1 == t.epochs, run.model, lambda s: evaluate(
            run.net, eval_loader(s, run.data, self.cfg, run.device), run.data.ds, run.env,
            step.precision.autocast).to_dict(), run.data.test)
        row.update(scores)
        run.log.scalars(run.state.step, {k.replace("val_", "val/") if k.startswith("val_") else f"test/{k}": v
                                         for k, v in scores.items()})
        return row

    def _end_epoch(self, run: RunParts, epoch: int, row: dict) -> None:
        """Record the row in the state and history.csv, then write the epoch's checkpoint."""
        state, step = run.state, run.step
        state.history.append(row)
        state.epoch = epoch + 1
        state.scheduler = step.scheduler.state_dict()
        state.loss_scaler = step.precision.state_dict() or None
        if run.env.is_main:
            run.log.append_csv("history.csv", row)
            meta = MetaStates(step.meta, step.sizer)
            ckpt.save_checkpoint(self.out / "checkpoints", epoch + 1, model=run.model, optimizer=step.optimizer,
                                 state=state.to_dict(),
                                 meta_optimizer_state=meta.state_dict() if meta else None,
                                 keep=self.cfg.train.keep_checkpoints)
        run.log.info("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        run.env.barrier()

    # ------------------------------------------------------------------ results
    def _finish(self, run: RunParts) -> RunResult:
        """Best-by-validation model, γ report (and pruning), final evaluation, gamma.json / export / metrics.json."""
        cfg = self.cfg
        if cfg.train.epochs == 0:  # nothing trained: the initialised head (e.g. a probe fit) is the model
            chosen = {"model": "head_init", "epoch": 0,
                      "reason": f"train.epochs=0 (model.head_init={cfg.model.head_init})"}
        else:
            chosen = run.selector.restore(run.model, cfg.train.epochs)  # the best epoch, when there is a hold-out
        report = gamma_report(run.model, cfg.meta.prune_threshold) if cfg.peft.has_gamma else None
        if report is not None and cfg.meta.prune and report.below_threshold:
            run.log.info(f"pruning {prune_sites(run.model, report.below_threshold)} sites with |γ| < "
                         f"{report.threshold}")
        metrics, result = self._final_metrics(run)
        result["model_selection"] = chosen
        if run.env.is_main:
            self._write_results(run, result, report)
            run.log.scalars(run.state.step, {f"test/{k}": result[k] for k in SUMMARY_KEYS})
        run.log.close()
        run.env.barrier()
        return RunResult(self.out, metrics, report.gamma if report is not None else {},
                         result["run"]["wall_time_s"])

    def _final_metrics(self, run: RunParts) -> tuple[Metrics, dict]:
        """Test metrics, the model-selection split's (HPO objectives read it, never test), run info."""
        cfg, t, meta = self.cfg, self.cfg.train, run.step.meta
        autocast = run.step.precision.autocast
        metrics = evaluate(run.net, eval_loader(run.data.test, run.data, cfg, run.device), run.data.ds, run.env,
                           autocast)
        result = metrics.to_dict()
        if run.data.selection is not None:
            val = evaluate(run.net, eval_loader(run.data.selection, run.data, cfg, run.device), run.data.ds,
                           run.env, autocast).to_dict()
            result["val"] = {k: val[k] for k in (*SUMMARY_KEYS, "macro_f1")}
        result["run"] = {"wall_time_s": time.perf_counter() - run.started, "epochs": t.epochs,
                         "steps": run.state.step, "skipped_steps": run.state.skipped_steps,
                         "trainable": run.summary.to_dict(), "meta_steps": meta.state.steps if meta else 0,
                         "meta_interval": meta.interval if meta else None,
                         "meta_skipped": meta.state.skipped if meta else 0, "world_size": run.env.world,
                         "prefix_cached_blocks": run.prefix_blocks}
        if cfg.model.head_init == "probe":
            result["run"]["head_init"] = (run.head_fit.to_dict() if run.head_fit is not None
                                          else {"kind": "probe", "fit": "before the resume (see the first log)"})
        if run.step.sizer is not None:
            rep = run.step.sizer.report()
            result["run"]["stepsize"] = {k: rep[k] for k in ("reference_lr", "lr_cliff", "multipliers", "effective_lr",
                                                              "guard_restores", "meta_steps")}
        return metrics, result

    def _write_results(self, run: RunParts, result: dict, report: GammaReport | None) -> None:
        """gamma.json, the exports, then metrics.json last: its presence means the run is complete."""
        if report is not None:
            meta = run.step.meta
            payload = {**report.to_dict(), "trace": meta.state.trace if meta else []}
            ckpt.atomic_write_text(self.out / "gamma.json", json.dumps(payload, indent=1))
        if run.step.sizer is not None:  # the range test, the learned multipliers and their trace
            ckpt.atomic_write_text(self.out / "stepsize.json", json.dumps(run.step.sizer.report(), indent=1))
        self._export(run)
        ckpt.atomic_write_text(self.out / "metrics.json", json.dumps(result, indent=1))

    def _export(self, run: RunParts) -> None:
        """Adapter + γ + head, and the formats other tools load (metapeft.export)."""
        from ..export import export_run  # lazy: export imports train modules

        pcfg = run.model.pretrained_cfg
        export_run(run.model, self.cfg, self.out, run.data.ds, pcfg.get("mean"), pcfg.get("std"), log=run.log.info)


def _progress(loader, desc: str, enabled: bool):
    from ..progress import progress  # a bar on a terminal, plain lines every 10 s in a log

    return progress(loader, desc, enabled=enabled, unit="batches", min_s=float("inf"))
