"""Long-tailed subsampling with the exponential (CIFAR-LT) profile n_i = n_max * IR^(-i/(C-1))."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .roots import DataError
from .splits import seeded_generator

__all__ = ["long_tail_counts", "long_tail_indices", "class_order", "default_n_max"]


def long_tail_counts(n_max: int, imbalance_ratio: float, num_classes: int) -> list[int]:
    """Per-rank sample counts ``int(n_max * (1/IR) ** (i / (C-1)))`` for rank i = 0 (head) .. C-1 (tail).

    This is exactly the CIFAR-LT / LIFT recipe: CIFAR-100 (n_max 500) gives 10,847 / 12,608 / 19,573
    images for IR 100 / 50 / 10.
    """
    if imbalance_ratio < 1:
        raise DataError(f"imbalance_ratio must be >= 1; got {imbalance_ratio}")
    if num_classes == 1:
        return [int(n_max)]
    factor = 1.0 / imbalance_ratio
    # The 1e-9 only guards exact integers against float error (150 * 0.02 must give 3, not 2).
    return [int(n_max * factor ** (i / (num_classes - 1.0)) + 1e-9) for i in range(num_classes)]


def default_n_max(min_count: int, imbalance_ratio: float) -> int:
    """Largest head count <= ``min_count`` whose tail count is a whole number, so the achieved
    max/min ratio equals ``imbalance_ratio`` (for integer IR; within one tail sample otherwise).

    Example: AID's smallest training class has 176 images; IR 50 gives n_max 150 (tail 3) instead of
    176 (tail 3, achieved IR 58.7).
    """
    tail = int(min_count / imbalance_ratio + 1e-9)
    if tail < 1:
        return int(min_count)  # the caller reports the empty tail class
    return min(int(min_count), int(tail * imbalance_ratio + 1e-9))


def class_order(num_classes: int, order: str | Sequence[int] = "seeded", seed: int = 0) -> list[int]:
    """Which class gets which rank of the profile: ``order[rank] = class``.

    ``"seeded"``: a permutation fixed by ``seed``; ``"index"``: class 0 is the head (LIFT's CIFAR-100-LT);
    or an explicit sequence of class indices.
    """
    if isinstance(order, str):
        if order == "index":
            return list(range(num_classes))
        if order == "seeded":
            return torch.randperm(num_classes, generator=seeded_generator(3, seed)).tolist()
        raise DataError(f"class_order must be 'seeded', 'index' or a list of class indices; got {order!r}")
    out = [int(c) for c in order]
    if sorted(out) != list(range(num_classes)):
        raise DataError(f"class_order must be a permutation of 0..{num_classes - 1}; got {out}")
    return out


def long_tail_indices(
    labels: torch.Tensor,
    imbalance_ratio: float,
    seed: int = 0,
    *,
    num_classes: int | None = None,
    n_max: int | None = None,
    order: str | Sequence[int] = "seeded",
    names: Sequence[str] | None = None,
) -> torch.Tensor:
    """Indices of a long-tailed subset of ``labels``.

    The class at rank i keeps ``int(n_max * IR^(-i/(C-1)))`` samples, drawn at random (seeded) from
    its samples. ``n_max`` defaults to ``default_n_max(smallest class count, IR)``: every target is
    reachable, and the achieved max/min ratio is IR itself. A larger ``n_max`` that some class cannot
    supply is an error.

    Raises:
        DataError: a class would keep 0 samples (IR too large for n_max), or has too few samples.
    """
    labels = torch.as_tensor(labels).long().reshape(-1)
    c = int(num_classes if num_classes is not None else int(labels.max()) + 1)
    avail = torch.bincount(labels, minlength=c)[:c]
    name = (lambda k: f"{k} ({names[k]})") if names is not None else str
    if int(avail.min()) == 0:
        k = int(torch.nonzero(avail == 0)[0])
        raise DataError(f"class {name(k)} has no training samples to subsample from")
    n_max = default_n_max(int(avail.min()), imbalance_ratio) if n_max is None else int(n_max)
    ranks = class_order(c, order, seed)
    targets = long_tail_counts(n_max, imbalance_ratio, c)
    if min(targets) < 1:
        rank = targets.index(0)
        raise DataError(
            f"imbalance ratio {imbalance_ratio} with n_max {n_max} leaves class {name(ranks[rank])} "
            f"(profile rank {rank}) with 0 training samples; use a smaller imbalance ratio or a larger n_max"
        )
    g = seeded_generator(4, seed)
    keep = []
    for rank, cls in enumerate(ranks):
        idx = torch.nonzero(labels == cls).flatten()
        if idx.numel() < targets[rank]:
            raise DataError(
                f"class {name(cls)} has {idx.numel()} samples but the long-tail profile asks for {targets[rank]} "
                f"(n_max {n_max}); lower n_max"
            )
        keep.append(idx[torch.randperm(idx.numel(), generator=g)[: targets[rank]]])
    return torch.cat(keep).sort().values
