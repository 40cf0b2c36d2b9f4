"""Class-balanced batch sampling over a training set (meta-learning ``resample`` mode)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .roots import DataError
from .splits import seeded_generator

__all__ = ["ClassBalancedSampler"]


class ClassBalancedSampler:
    """Class-balanced index batches: pick a class uniformly (among classes with samples), then a sample in it.

    Draws are with replacement, so a 1-sample class is as likely as a 1000-sample one.

    Args:
        labels: training labels [N].
        batch_size: indices per batch.
        seed: seed of the internal generator used by iteration (``sample`` may take its own).
        num_classes: total classes (default: max label + 1); classes without samples are never drawn.
    """

    def __init__(self, labels: torch.Tensor, batch_size: int, seed: int = 0, num_classes: int | None = None) -> None:
        labels = torch.as_tensor(labels).long().reshape(-1)
        if labels.numel() == 0:
            raise DataError("ClassBalancedSampler needs at least one sample")
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1; got {batch_size}")
        c = int(num_classes if num_classes is not None else int(labels.max()) + 1)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        counts = torch.bincount(labels, minlength=c)
        self.order = torch.argsort(labels, stable=True)  # sample indices grouped by class
        self.offsets = torch.cumsum(counts, 0) - counts  # start of each class in `order`
        self.counts = counts
        self.present = torch.nonzero(counts > 0).flatten()
        self._gen = seeded_generator(5, self.seed)

    def sample(self, generator: torch.Generator | None = None, batch_size: int | None = None) -> torch.LongTensor:
        """One batch of sample indices [batch_size]."""
        g = self._gen if generator is None else generator
        n = self.batch_size if batch_size is None else int(batch_size)
        cls = self.present[torch.randint(len(self.present), (n,), generator=g)]
        within = (torch.rand(n, generator=g) * self.counts[cls]).long().clamp_max_(self.counts[cls] - 1)
        return self.order[self.offsets[cls] + within]

    def reset(self, seed: int | None = None) -> None:
        """Restart the internal stream (from ``seed`` or the constructor's)."""
        self._gen = seeded_generator(5, self.seed if seed is None else int(seed))

    def __iter__(self) -> Iterator[torch.LongTensor]:
        while True:
            yield self.sample()
