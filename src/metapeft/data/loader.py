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
from .splits import seeded_generator

__all__ = ["BatchLoader"]


class BatchLoader:
    """Iterate (x, y) batches over an ``ImageSet``.

    Args:
        images: the data (uint8 images stay on the CPU; each batch is moved to ``device`` before the transform).
        batch_size: samples per batch.
        shuffle: permute the data each epoch.
        drop_last: drop the last incomplete batch.
        transform: callable ``(uint8 batch, generator) -> float batch`` (e.g. ``BatchAugment``); None
            yields the uint8 images unchanged.
        seed: base seed for order and augmentation.
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
        self.device = torch.device(device) if device is not None else None
        n = len(images)
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

    def _order(self, epoch: int) -> torch.Tensor:
        n = len(self.data)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=seeded_generator(8, self.seed, epoch))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, start = self.epoch, self.start_batch
        order = self._order(epoch)
        for b in range(start, self._len):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x, y = self.data.images[idx], self.data.labels[idx]
            if self.device is not None:
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.transform is not None:
                x = self.transform(x, seeded_generator(7, self.seed, epoch, b))
            yield x, y
        self.epoch, self.start_batch = epoch + 1, 0
