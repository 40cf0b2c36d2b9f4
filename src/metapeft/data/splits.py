"""Seeded, stratified index splits: dataset train/test split and the meta-learning hold-out."""

from __future__ import annotations

import torch

from .roots import DataError

__all__ = ["stratified_split", "stratified_holdout", "seeded_generator"]


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator whose seed is a fixed function of ``keys`` (e.g. seed, epoch, batch)."""
    h = 0x9E3779B97F4A7C15
    for k in keys:
        # splitmix64-style mixing: nearby keys give unrelated streams.
        h = (h ^ (int(k) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return torch.Generator().manual_seed(h & 0x7FFFFFFFFFFFFFFF)


def _split(labels: torch.Tensor, fraction: float, seed: int, salt: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.as_tensor(labels).long().reshape(-1)
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split fraction must be in (0, 1); got {fraction}")
    g = seeded_generator(salt, seed)
    keep, take = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        n = idx.numel()
        idx = idx[torch.randperm(n, generator=g)]
        # Every class with >= 2 samples lands on both sides; a 1-sample class stays on the first side.
        k = 0 if n < 2 else min(max(int(round(n * fraction)), 1), n - 1)
        take.append(idx[:k])
        keep.append(idx[k:])
    first = torch.cat(keep).sort().values if keep else torch.empty(0, dtype=torch.long)
    second = torch.cat(take).sort().values if take else torch.empty(0, dtype=torch.long)
    return first, second


def stratified_split(
    labels: torch.Tensor, test_fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class seeded split into (train_idx, test_idx), used when a source ships no test split.

    Each class gives ``round(n_c * test_fraction)`` samples to test, at least 1 and at most ``n_c - 1``
    (classes with a single sample stay in train). Indices come back sorted; the result is a pure
    function of (labels, test_fraction, seed).
    """
    return _split(labels, test_fraction, seed, salt=1)


def stratified_holdout(labels: torch.Tensor, ratio: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint, stratified (train_idx, val_idx) split of a training set for the meta-learning hold-out mode.

    Each class with ``n_c >= 2`` samples keeps ``>= 1`` in train and gives ``>= 1`` to val
    (``round(n_c * ratio)`` clamped to ``[1, n_c - 1]``). A class with a single sample stays in train
    only: it has no validation sample in hold-out mode (the ``resample`` meta mode, which draws
    class-balanced batches from the whole training set, covers such classes). Indices are positions
    into ``labels``, sorted.
    """
    return _split(labels, ratio, seed, salt=2)
