"""``BatchLoader``: batches straight from the in-memory uint8 tensor, augmentation applied per batch.

Order and augmentation are pure functions of (seed, epoch, batch index), so a run resumed at
epoch e, batch k sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from .imageset import ImageSet
from .roots import DataError
from .samplers import ClassBalancedSampler
from .splits import seeded_generator

__all__ = ["BatchLoader"]


class BatchLoader:
    """Iterate (x, y) batches over an ``ImageSet``.

    Args:
        images: the data (uint8 images stay on the CPU; each batch is moved to ``device`` before the transform).
        batch_size: samples per batch.
        shuffle: permute the data each epoch (ignored with a sampler).
        drop_last: drop the last incomplete batch.
        transform: callable ``(uint8 batch, generator) -> float batch`` (e.g. ``BatchAugment``); None
            yields the uint8 images unchanged.
        seed: base seed for order and augmentation.
        sampler: a ``ClassBalancedSampler``: each batch is ``sampler.sample(...)`` (with replacement).
        steps_per_epoch: batches per epoch in sampler mode (default ``ceil(N / batch_size)``).
        device: where batches go (default: stay on the CPU).

    ``set_epoch(e, start_batch=k)`` selects the epoch (and a batch to resume from); a complete pass
    advances the epoch by one, so a plain ``for epoch ...: for x, y in loader`` also varies the order.
    """

    def __init__(
        self,
        images: ImageSet,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        transform: Callable[..., torch.Tensor] | None = None,
        seed: int = 0,
        sampler: ClassBalancedSampler | None = None,
        steps_per_epoch: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1; got {batch_size}")
        if len(images) == 0:
            raise DataError("BatchLoader got an empty ImageSet")
        self.data = images
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.transform = transform
        self.seed = int(seed)
        self.sampler = sampler
        self.device = torch.device(device) if device is not None else None
        n = len(images)
        if sampler is not None:
            self._len = int(steps_per_epoch) if steps_per_epoch is not None else math.ceil(n / self.batch_size)
        else:
            self._len = n // self.batch_size if drop_last else math.ceil(n / self.batch_size)
        if self._len < 1:
            raise DataError(f"{n} samples give no batch of {batch_size} with drop_last=True")
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch whose order is replayed next, starting at batch ``start_batch``."""
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def __len__(self) -> int:
        return self._len

    def batch_indices(self, epoch: int, batch: int) -> torch.Tensor:
        """Sample indices of batch ``batch`` of epoch ``epoch`` (a pure function of seed, epoch, batch)."""
        if self.sampler is not None:
            return self.sampler.sample(seeded_generator(6, self.seed, epoch, batch), self.batch_size)
        return self._order(epoch)[batch * self.batch_size:(batch + 1) * self.batch_size]

    def _order(self, epoch: int) -> torch.Tensor:
        n = len(self.data)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=seeded_generator(8, self.seed, epoch))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, start = self.epoch, self.start_batch
        order = self._order(epoch) if self.sampler is None else None
        for b in range(start, self._len):
            if order is not None:
                idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            else:
                idx = self.batch_indices(epoch, b)
            x, y = self.data.images[idx], self.data.labels[idx]
            if self.device is not None:
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.transform is not None:
                x = self.transform(x, seeded_generator(7, self.seed, epoch, b))
            yield x, y
        self.epoch, self.start_batch = epoch + 1, 0
