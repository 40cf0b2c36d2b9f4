"""Data for a run: the dataset, the meta-validation source, and the batch iterators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..config import RunConfig
from ..data import (
    BatchAugment, BatchLoader, ClassBalancedSampler, ImageSet, LTDataset, accepts_option, load_dataset,
    seeded_generator, stratified_holdout,
)


@dataclass
class RunData:
    ds: LTDataset
    train: ImageSet           # what φ trains on (all of train, or train minus the hold-out)
    meta_val: ImageSet | None  # where γ's validation batches come from
    selection: ImageSet | None  # held out for model selection (train.val_holdout), never trained on
    train_tf: Callable[..., torch.Tensor]   # (uint8 batch, generator) -> model input
    eval_tf: BatchAugment
    val_tf: Callable[..., torch.Tensor]     # meta-validation batches (train_tf when meta.val_augment)
    test: ImageSet                          # what is evaluated (ds.test, or its cached prefix tokens)


def load_run_dataset(cfg: RunConfig) -> LTDataset:
    d = cfg.data
    extra = dict(d.options)
    if d.ram_budget_gb is not None and accepts_option(d.name, "ram_budget_gb"):  # bundled arrays: not decoded
        extra.setdefault("ram_budget_gb", d.ram_budget_gb)
    return load_dataset(d.name, d.root, imbalance_ratio=d.imbalance_ratio, seed=d.split_seed,
                        test_fraction=d.test_fraction, group_thresholds=tuple(d.group_thresholds),
                        max_per_class=d.max_per_class, image_size=d.image_size, **extra)


def split_train(cfg: RunConfig, train):
    """(φ's train set, γ's meta-val source, model-selection hold-out) from the full training set.

    Works on anything with ``labels`` and ``subset`` (images or cached prefix tokens), so a cached run
    splits its tokens exactly as an uncached run splits its images.
    """
    meta_val, selection = None, None
    if cfg.train.val_holdout > 0:  # same split for every training seed: HPO trials are comparable
        keep, held = stratified_holdout(train.labels, cfg.train.val_holdout, seed=cfg.data.split_seed + 7919)
        train, selection = train.subset(keep), train.subset(held)
    if cfg.meta.enabled:
        if cfg.meta.val_mode == "holdout":
            keep, held = stratified_holdout(train.labels, cfg.meta.holdout_ratio, seed=cfg.train.seed)
            train, meta_val = train.subset(keep), train.subset(held)
        else:
            meta_val = train
    return train, meta_val, selection


def prepare_data(cfg: RunConfig, mean, std, ds: LTDataset | None = None) -> RunData:
    ds = ds if ds is not None else load_run_dataset(cfg)
    train, meta_val, selection = split_train(cfg, ds.train)
    size = cfg.model.img_size
    train_tf = BatchAugment(size, mean, std, train=cfg.data.augment, scale=tuple(cfg.data.crop_scale),
                            rs=bool(cfg.data.rs_augment))
    eval_tf = BatchAugment(size, mean, std, train=False, eval_crop=cfg.data.eval_crop or 1.0)
    val_tf = train_tf if cfg.meta.val_augment else eval_tf
    return RunData(ds, train, meta_val, selection, train_tf, eval_tf, val_tf, ds.test)


def train_loader(data: RunData, cfg: RunConfig, device: torch.device) -> BatchLoader:
    micro = cfg.train.batch_size // cfg.train.grad_accum
    return BatchLoader(data.train, micro, shuffle=True, drop_last=True, transform=data.train_tf,
                       seed=cfg.train.seed, device=device, workers=cfg.data.workers)


def eval_loader(images: ImageSet, data: RunData, cfg: RunConfig, device: torch.device) -> BatchLoader:
    return BatchLoader(images, cfg.train.eval_batch_size, shuffle=False, transform=data.eval_tf, device=device,
                       workers=cfg.data.workers)


def calibration_probe(data: RunData, cfg: RunConfig, device: torch.device, batches: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The range test's fixed probe: ``batches`` class-balanced val batches from a stream of their own,
    so drawing it does not shift the meta steps' val stream."""
    stream = meta_val_batches(data, cfg, device, PROBE_STREAM)
    xs, ys = zip(*(next(stream) for _ in range(batches)))
    return torch.cat(xs), torch.cat(ys)


PROBE_STREAM = -1  # the probe's "epoch" in meta_val_batches' seeding: no real epoch is negative


def meta_val_batches(data: RunData, cfg: RunConfig, device: torch.device, epoch: int
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless class-balanced val batches; the stream is a pure function of (seed, epoch)."""
    assert data.meta_val is not None
    sampler = ClassBalancedSampler(data.meta_val.labels, cfg.meta.val_batch_size, num_classes=data.ds.num_classes)
    tf = data.val_tf
    g_idx = seeded_generator(11, cfg.train.seed, epoch)
    g_aug = seeded_generator(12, cfg.train.seed, epoch)
    while True:
        idx = sampler.sample(g_idx)
        x = data.meta_val.images[idx].to(device)
        yield tf(x, g_aug), data.meta_val.labels[idx].to(device)
