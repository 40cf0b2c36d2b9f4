"""Class-balanced batch sampling over a training set (meta-learning ``resample`` mode)."""

from __future__ import annotations

import torch

from .roots import DataError

__all__ = ["ClassBalancedSampler"]


class ClassBalancedSampler:
    """Class-balanced index batches: pick a class uniformly (among classes with samples), then a sample in it.

    Draws are with replacement, so a 1-sample class is as likely as a 1000-sample one.

    Args:
        labels: training labels [N].
        batch_size: indices per batch.
        num_classes: total classes (default: max label + 1); classes without samples are never drawn.
    """

    def __init__(self, labels: torch.Tensor, batch_size: int, num_classes: int | None = None) -> None:
        labels = torch.as_tensor(labels).long().reshape(-1)
        if labels.numel() == 0:
            raise DataError("ClassBalancedSampler needs at least one sample")
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1; got {batch_size}")
        c = int(num_classes if num_classes is not None else int(labels.max()) + 1)
        self.batch_size = int(batch_size)
        counts = torch.bincount(labels, minlength=c)
        self.order = torch.argsort(labels, stable=True)  # sample indices grouped by class
        self.offsets = torch.cumsum(counts, 0) - counts  # start of each class in `order`
        self.counts = counts
        self.present = torch.nonzero(counts > 0).flatten()

    def sample(self, generator: torch.Generator, batch_size: int | None = None) -> torch.LongTensor:
        """One batch of sample indices [batch_size]; the caller's generator makes the stream reproducible."""
        g = generator
        n = self.batch_size if batch_size is None else int(batch_size)
        cls = self.present[torch.randint(len(self.present), (n,), generator=g)]
        within = (torch.rand(n, generator=g) * self.counts[cls]).long().clamp_max_(self.counts[cls] - 1)
        return self.order[self.offsets[cls] + within]

