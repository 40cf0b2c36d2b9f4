"""The training run: inner loop on φ, outer loop on γ, checkpoints, final evaluation.

Reads top to bottom: ``Trainer(cfg, out_dir).run()`` → set up (data, model, head init,
optimizers) → resume if asked → epochs of ``_step`` → evaluate → write results.
Single process by default; under ``torchrun`` it trains data-parallel (see ``distributed.py``).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..backbones import unfused_attention
from ..config import RunConfig
from ..data import DataError
from ..errors import ConfigError, TrainingError
from ..eval import Metrics
from ..meta import MetaLearner, gamma_report, prune_sites
from ..peft import gamma_parameters, trainable_summary
from . import checkpoint as ckpt
from . import rundir
from .distributed import DistEnv
from .evaluate import evaluate
from .heads import init_head_from_class_means
from .losses import build_loss
from .model import build_model, extract_features
from .optim import build_optimizer, cosine_schedule
from .pipeline import eval_loader, load_run_dataset, meta_val_batches, prepare_data, train_loader
from .prefix_cache import SuffixModel, cache_prefix, cacheable_prefix
from .runlog import RunLog
from .selection import ModelSelection

SUMMARY_KEYS = ("overall", "balanced", "many", "medium", "few")


@dataclass
class RunResult:
    out_dir: Path
    metrics: Metrics
    gamma: dict[str, float]
    wall_time_s: float


@dataclass
class EpochStats:
    started: float = field(default_factory=time.perf_counter)
    seen: int = 0
    loss_sum: float = 0.0
    losses: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    def __init__(self, cfg: RunConfig, out_dir: str | Path, *, resume: bool = False, quiet: bool = False) -> None:
        self.cfg = cfg
        self.out = Path(out_dir)
        self.resume = resume
        self.quiet = quiet

    # ------------------------------------------------------------------ set-up
    def run(self) -> RunResult:
        cfg, t = self.cfg, self.cfg.train
        env, device_name = DistEnv.setup(t.device)
        self.env = env
        try:
            with rundir.RunLock(self.out, enabled=env.is_main) as lock:  # one writer per run directory
                if lock.taken_over and not self.quiet:
                    print(f"{lock.path}: taken over from pid {lock.taken_over} (no longer running)", file=sys.stderr)
                return self._run(env, resolve_device(device_name))
        finally:
            env.close()

    def _run(self, env: DistEnv, device: torch.device) -> RunResult:
        cfg, t = self.cfg, self.cfg.train
        for name, size in (("train.batch_size", t.batch_size // t.grad_accum), ("meta.val_batch_size",
                                                                                  cfg.meta.val_batch_size)):
            if size % env.world:
                raise ConfigError(f"{name} per step ({size}) must divide over {env.world} ranks")
        pre = rundir.preflight(self.out, cfg, self.resume)  # every run-dir check; no write before begin_writing
        if t.threads:
            torch.set_num_threads(t.threads)
        seed_everything(t.seed)
        log = RunLog(self.out, tensorboard=t.tensorboard and env.is_main, quiet=self.quiet or not env.is_main)
        started = time.perf_counter()
        for note in pre.notes if env.is_main else ():  # a fallback is said even with --quiet
            print(f"warning: {note}", file=sys.stderr)

        ds = load_run_dataset(cfg)
        log.info(ds.describe())
        model = build_model(cfg, ds.num_classes).to(device)
        pcfg = model.pretrained_cfg
        data = prepare_data(cfg, pcfg.get("mean"), pcfg.get("std"), ds)
        summary = trainable_summary(model)
        log.info(str(summary))

        # `net` is what steps and evaluations call: the model, or only its trainable suffix on cached tokens.
        net: nn.Module = model
        start = cacheable_prefix(model, cfg)
        if start:
            data = cache_prefix(data, model, start, device, cfg)
            net = SuffixModel(model, start)
            log.info(f"frozen prefix cached: blocks 0..{start - 1} run once per image, not every step")
        resuming = pre.saved is not None
        if not resuming and cfg.model.head_init == "class_mean":
            feats, labels = extract_features(net, eval_loader(data.train, data, cfg, device))
            init_head_from_class_means(model.get_classifier(), feats, labels)

        loader = train_loader(data, cfg, device)
        steps_per_epoch = len(loader) // t.grad_accum
        if steps_per_epoch < 1:
            raise DataError(f"train set of {len(data.train)} images gives no full step of batch {t.batch_size}")
        gammas = gamma_parameters(model)
        gamma_ids = {id(g) for g in gammas}
        self.phi_named = {n: p for n, p in net.named_parameters() if p.requires_grad and id(p) not in gamma_ids}
        self.phi = list(self.phi_named.values())
        self.gammas = gammas
        self.net = net
        optimizer = build_optimizer(self.phi, t)
        scheduler = cosine_schedule(optimizer, t.epochs * steps_per_epoch, t.warmup_steps)
        counts = data.ds.train_class_counts
        self.criterion = build_loss(t.loss, counts, tau=t.la_tau, focal_gamma=t.focal_gamma).to(device)
        meta = None
        if cfg.meta.enabled:
            outer = build_loss(cfg.meta.outer_loss, counts, tau=t.la_tau).to(device)
            meta = MetaLearner(net, cfg.meta, outer, iter(()), reduce=env.mean_, steps_per_epoch=steps_per_epoch)
        self._gammas_trainable(False)  # γ only gets gradients inside meta steps

        state: dict[str, Any] = {"epoch": 0, "step": 0, "skipped_steps": 0, "history": []}
        if resuming:
            state = rundir.restore(pre, model, optimizer, scheduler, meta)
        if env.is_main:  # the first write into the run directory, after every check
            rundir.begin_writing(self.out, cfg, pre)
            if resuming:
                log.rewrite_csv("history.csv", state["history"])
        if resuming:
            log.info(f"resumed from {pre.checkpoint} (epoch {state['epoch']}, step {state['step']})")

        selector = ModelSelection(cfg, data.selection, self.out, is_main=env.is_main)
        # ------------------------------------------------------------------ epochs
        for epoch in range(state["epoch"], t.epochs):
            seed_everything(t.seed * 1000 + epoch)  # dropout etc.: a function of (seed, epoch) for exact resume
            loader.set_epoch(epoch)
            if meta is not None:
                meta.val_batches = ((env.shard(x), env.shard(y))
                                    for x, y in meta_val_batches(data, cfg, device, epoch))
            net.train()
            stats, good_steps = EpochStats(), scheduler.last_epoch
            bar = _progress(loader, f"epoch {epoch + 1}/{t.epochs}", t.progress and not self.quiet and env.is_main)
            for i, (x, y) in enumerate(bar):
                self._micro_step(i, env.shard(x), env.shard(y), optimizer, scheduler, meta, state, stats, log)
                if hasattr(bar, "set_postfix") and stats.losses:
                    bar.set_postfix(loss=f"{stats.loss_sum / stats.losses:.3f}",
                                    img_s=f"{stats.seen / (time.perf_counter() - stats.started):.1f}")

            if scheduler.last_epoch == good_steps:  # stop before this epoch's checkpoint replaces the last good one
                raise TrainingError(rundir.all_skipped_message(epoch, self.out))
            elapsed = time.perf_counter() - stats.started
            row = {"epoch": epoch + 1, "step": state["step"], "train_loss": stats.loss_sum / max(stats.losses, 1),
                   "lr": optimizer.param_groups[0]["lr"], "epoch_time_s": elapsed,
                   "images_per_s": stats.seen / elapsed}
            if meta is not None:
                g = meta.gamma_values()
                row.update(gamma_mean=float(np.mean(g)), gamma_min=min(g), gamma_max=max(g))
            scores = selector.epoch_end(epoch, epoch + 1 == t.epochs, model, lambda s: evaluate(
                net, eval_loader(s, data, cfg, device), data.ds, env).to_dict(), data.test)
            row.update(scores)
            log.scalars(state["step"], {k.replace("val_", "val/") if k.startswith("val_") else f"test/{k}": v
                                        for k, v in scores.items()})
            state["history"].append(row)
            state["epoch"] = epoch + 1
            state["scheduler"] = scheduler.state_dict()
            if env.is_main:
                log.append_csv("history.csv", row)
                ckpt.save_checkpoint(self.out / "checkpoints", epoch + 1, model=model, optimizer=optimizer,
                                     state=state, meta_optimizer_state=meta.state_dict() if meta else None,
                                     keep=t.keep_checkpoints)
            log.info("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            env.barrier()

        # ------------------------------------------------------------------ results
        chosen = selector.restore(model, t.epochs)  # the best-by-validation epoch, when there is a hold-out
        report = gamma_report(model, cfg.meta.prune_threshold) if cfg.peft.has_gamma else None
        if report is not None and cfg.meta.prune and report.below_threshold:
            log.info(f"pruning {prune_sites(model, report.below_threshold)} sites with |γ| < {report.threshold}")
        metrics = evaluate(net, eval_loader(data.test, data, cfg, device), data.ds, env)
        result = metrics.to_dict()
        if data.selection is not None:  # model-selection split: HPO objectives read this, never test
            val = evaluate(net, eval_loader(data.selection, data, cfg, device), data.ds, env).to_dict()
            result["val"] = {k: val[k] for k in (*SUMMARY_KEYS, "macro_f1")}
        result["model_selection"] = chosen
        wall = time.perf_counter() - started
        result["run"] = {"wall_time_s": wall, "epochs": t.epochs, "steps": state["step"],
                         "skipped_steps": state["skipped_steps"], "trainable": summary.to_dict(),
                         "meta_steps": meta.state.steps if meta else 0,
                         "meta_interval": meta.interval if meta else None,
                         "meta_skipped": meta.state.skipped if meta else 0,
                         "world_size": env.world, "prefix_cached_blocks": start}
        gamma = report.gamma if report is not None else {}
        if env.is_main:  # metrics.json last: its presence means the run is complete
            if report is not None:
                payload = {**report.to_dict(), "trace": meta.state.trace if meta else []}
                ckpt.atomic_write_text(self.out / "gamma.json", json.dumps(payload, indent=1))
            from ..export import export_run  # lazy: export imports train modules

            export_run(model, cfg, self.out, data.ds, pcfg.get("mean"), pcfg.get("std"), log=log.info)
            # Last: its presence means "complete" (gamma.json and the exports are already there).
            ckpt.atomic_write_text(self.out / "metrics.json", json.dumps(result, indent=1))
            log.scalars(state["step"], {f"test/{k}": result[k] for k in SUMMARY_KEYS})
        log.close()
        env.barrier()
        return RunResult(self.out, metrics, gamma, wall)

    # ------------------------------------------------------------------ one micro-batch
    def _micro_step(self, i: int, x: torch.Tensor, y: torch.Tensor, optimizer, scheduler, meta, state, stats,
                    log: RunLog) -> None:
        """Forward/backward one micro-batch; on the last of a step, (meta step and) optimizer step."""
        last_micro = (i + 1) % self.cfg.train.grad_accum == 0
        meta_now = meta is not None and last_micro and meta.is_due(state["step"] + 1)
        second_order = meta_now and meta.needs_graph
        # This step's graph is differentiated twice: plain attention for it, fused SDPA on all others.
        with unfused_attention(self.net) if second_order else contextlib.nullcontext():
            self._train_step(x, y, optimizer, scheduler, meta, state, stats, log, meta_now=meta_now,
                             second_order=second_order, last_micro=last_micro)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor, optimizer, scheduler, meta, state, stats, log: RunLog,
                    *, meta_now: bool, second_order: bool, last_micro: bool) -> None:
        """The body of :meth:`_micro_step` (a step skipped for non-finite values returns early)."""
        t, env, phi = self.cfg.train, self.env, self.phi
        lr = optimizer.param_groups[0]["lr"]
        self._gammas_trainable(second_order)  # the lookahead's graph must reach γ
        with _autocast(t.bf16, x.device):
            loss = self.criterion(self.net(x), y)
        loss_value = env.mean_scalar(loss.item())  # every rank takes the same skip decision
        if not math.isfinite(loss_value):
            state["skipped_steps"] += 1
            log.info(f"step {state['step']}: non-finite loss, step skipped")
            optimizer.zero_grad(set_to_none=True)
            self._gammas_trainable(False)
            return
        res = None
        if second_order:
            grads = torch.autograd.grad(loss, phi, create_graph=True, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(phi, grads)]
            res = meta.step(self.phi_named, grads, lr)
            _accumulate(phi, [g.detach() / t.grad_accum for g in grads])
            del grads
        else:
            (loss / t.grad_accum).backward()
            if meta_now:
                self._gammas_trainable(True)
                res = meta.step(self.phi_named, None, lr)
        self._gammas_trainable(False)
        stats.loss_sum, stats.losses, stats.seen = stats.loss_sum + loss_value, stats.losses + 1, \
            stats.seen + len(y) * env.world
        if res is not None:
            self._log_meta(log, meta, res, state["step"])
        if not last_micro:
            return
        env.mean_([p.grad for p in phi if p.grad is not None])
        norm = torch.nn.utils.clip_grad_norm_(phi, t.clip_grad or float("inf"))
        if not torch.isfinite(norm):
            state["skipped_steps"] += 1
            log.info(f"step {state['step']}: non-finite gradient, step skipped")
        elif not _guarded_step(optimizer, phi):
            state["skipped_steps"] += 1
            log.info(f"step {state['step']}: update made weights non-finite, rolled back (optimizer state reset)")
        else:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        log.scalars(state["step"], {"train/loss": loss_value, "train/lr": lr})

    # ------------------------------------------------------------------ helpers
    def _gammas_trainable(self, flag: bool) -> None:
        for p in self.gammas:
            p.requires_grad_(flag)

    def _log_meta(self, log: RunLog, meta: MetaLearner, res, step: int) -> None:
        if res.skipped:
            log.info(f"meta step {res.step}: skipped ({res.reason})")
            return
        values = {"meta/val_loss": res.val_loss, "meta/hypergrad_norm": res.grad_norm}
        values.update({f"gamma/{s}": g for s, g in zip(meta.sites, meta.gamma_values())})
        log.scalars(step, values)


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


def _accumulate(params: list[nn.Parameter], grads: list[torch.Tensor]) -> None:
    for p, g in zip(params, grads):
        p.grad = g.clone() if p.grad is None else p.grad + g


def _autocast(enabled: bool, device: torch.device):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _progress(loader, desc: str, enabled: bool):
    from ..progress import progress  # a bar on a terminal, plain lines every 10 s in a log

    return progress(loader, desc, enabled=enabled, unit="batches", min_s=float("inf"))
