"""``BatchLoader``: batches straight from the in-memory uint8 tensor, augmentation applied per batch.

Order and augmentation are pure functions of (seed, epoch, batch index), so a run resumed at
epoch e, batch k sees exactly the batches an uninterrupted run would have seen.

A lazy set (``LazyImages``, above the RAM budget) is decoded in ``torch.utils.data.DataLoader``
workers: each worker item is one whole batch (the rows of batch b of this epoch's order), pinned when
the device is a GPU so the copy is asynchronous, and the workers persist across epochs. The augmentation
still runs in the main process on the device with the batch's own seeded generator, so both paths
yield the same batches for the same seed.
"""

from __future__ import annotations

import math
import os
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
        workers: DataLoader worker processes that decode a lazy set's batches (null: min(8, cores − 1), at
            least 1); an in-memory set is indexed in the main process, as before.

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
        workers: int | None = None,
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
        lazy = getattr(images, "lazy", False)
        self.workers = (workers if workers is not None else max(1, min(8, (os.cpu_count() or 2) - 1))) if lazy else 0
        self._pool: torch.utils.data.DataLoader | None = None

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch whose order is replayed next, starting at batch ``start_batch``."""
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def __len__(self) -> int:
        return self._len

    def _order(self, epoch: int) -> torch.Tensor:
        return epoch_order(len(self.data), self.shuffle, self.seed, epoch)

    def _raw_batches(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.workers == 0:
            order = self._order(epoch)
            for b in range(start, self._len):
                idx = order[b * self.batch_size:(b + 1) * self.batch_size]
                yield self.data.images[idx], self.data.labels[idx]
            return
        if self._pool is None:
            pin = self.device is not None and self.device.type == "cuda"
            self._pool = torch.utils.data.DataLoader(
                _BatchRows(self), batch_size=None, sampler=_EpochBatches(self), num_workers=self.workers,
                pin_memory=pin, persistent_workers=True, prefetch_factor=4)
        yield from self._pool

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, start = self.epoch, self.start_batch
        for b, (x, y) in enumerate(self._raw_batches(epoch, start), start):
            if self.device is not None:
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.transform is not None:
                x = self.transform(x, seeded_generator(7, self.seed, epoch, b))
            yield x, y
        self.epoch, self.start_batch = epoch + 1, 0


def epoch_order(n: int, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    """The row order of an epoch: a pure function of (seed, epoch), the same in every process."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=seeded_generator(8, seed, epoch))


class _BatchRows(torch.utils.data.Dataset):
    """Worker side: item (epoch, b) → that batch's uint8 rows (the order is recomputed from the seed)."""

    def __init__(self, loader: BatchLoader) -> None:
        self.data, self.batch_size, self.shuffle, self.seed = loader.data, loader.batch_size, loader.shuffle, loader.seed
        self._orders: dict[int, torch.Tensor] = {}

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, b = key
        if epoch not in self._orders:  # one permutation per epoch and worker
            self._orders = {epoch: epoch_order(len(self.data), self.shuffle, self.seed, epoch)}
        idx = self._orders[epoch][b * self.batch_size:(b + 1) * self.batch_size]
        return self.data.images[idx], self.data.labels[idx]


class _EpochBatches(torch.utils.data.Sampler):
    """Main side: the (epoch, batch) keys of the loader's current epoch, from its resume batch on."""

    def __init__(self, loader: BatchLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[tuple[int, int]]:
        lo = self.loader
        return iter([(lo.epoch, b) for b in range(lo.start_batch, len(lo))])

    def __len__(self) -> int:
        return len(self.loader) - self.loader.start_batch
