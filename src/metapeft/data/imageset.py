"""In-memory containers: ``ImageSet`` (uint8 images + labels) and ``LTDataset`` (train/test/classes/groups)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .roots import DataError

__all__ = ["ImageSet", "LTDataset", "RawData", "GROUP_NAMES", "harmonise_splits"]

GROUP_NAMES = ("many", "medium", "few")


@dataclass
class ImageSet:
    """Decoded images kept in memory (or, above the RAM budget, files decoded on demand).

    Attributes:
        images: uint8 tensor [N, C, H, W], C = 1 (grayscale/SAR) or 3 (RGB), all images one size; or a
            :class:`~metapeft.data.lazy.LazyImages` that decodes the rows it is asked for.
        labels: int64 tensor [N], class indices.
        files: optional source name per row (used to name the culprit in error messages).
    """

    images: torch.Tensor
    labels: torch.Tensor
    files: list[str] | None = None

    def __post_init__(self) -> None:
        tensor = isinstance(self.images, torch.Tensor) and self.images.dtype == torch.uint8 and self.images.dim() == 4
        if not (tensor or self.lazy):
            got = getattr(self.images, "dtype", type(self.images))
            shape = tuple(getattr(self.images, "shape", ()))
            raise DataError(f"ImageSet.images must be a uint8 tensor [N, C, H, W]; got {got} with shape {shape}")
        if self.images.shape[1] not in (1, 3):
            raise DataError(f"ImageSet.images must have 1 or 3 channels; got shape {tuple(self.images.shape)}")
        self.labels = torch.as_tensor(self.labels).long().reshape(-1)
        if self.labels.numel() != self.images.shape[0]:
            raise DataError(f"ImageSet has {self.images.shape[0]} images but {self.labels.numel()} labels")
        if self.files is not None and len(self.files) != self.images.shape[0]:
            raise DataError(f"ImageSet has {self.images.shape[0]} images but {len(self.files)} file names")

    def __len__(self) -> int:
        return int(self.labels.numel())

    @property
    def lazy(self) -> bool:
        """Decoded on demand (:class:`~metapeft.data.lazy.LazyImages`), not held in memory."""
        from .lazy import LazyImages

        return isinstance(self.images, LazyImages)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, idx: torch.Tensor | list[int]) -> ImageSet:
        """Rows ``idx`` (a new ImageSet; images are copied, so the parent can be freed)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        files = [self.files[i] for i in idx.tolist()] if self.files is not None else None
        images = self.images.subset(idx) if self.lazy else self.images[idx].contiguous()
        return ImageSet(images, self.labels[idx].clone(), files)

    def class_counts(self, num_classes: int) -> torch.Tensor:
        """Samples per class, LongTensor [num_classes]."""
        return torch.bincount(self.labels, minlength=num_classes)[:num_classes]


@dataclass
class LTDataset:
    """A long-tailed classification dataset: training set (possibly LT-subsampled) and untouched test set.

    Attributes:
        name: dataset name (registry key or format).
        train: training images.
        test: test images.
        classes: class names, index = label.
        class_groups: {"many", "medium", "few"} -> class indices (a partition of the classes; a group may be empty).
        info: free-form provenance (root, imbalance ratio, seed, class order, split source).
    """

    name: str
    train: ImageSet
    test: ImageSet
    classes: list[str]
    class_groups: dict[str, list[int]]
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.class_groups) != set(GROUP_NAMES):
            raise DataError(f"class_groups must have exactly the keys {GROUP_NAMES}; got {sorted(self.class_groups)}")
        c = len(self.classes)
        for part, s in (("train", self.train), ("test", self.test)):
            if len(s) and (int(s.labels.min()) < 0 or int(s.labels.max()) >= c):
                bad = int(s.labels.max()) if int(s.labels.max()) >= c else int(s.labels.min())
                raise DataError(f"{self.name}: {part} label {bad} is outside the class list (0..{c - 1})")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def train_class_counts(self) -> torch.Tensor:
        return self.train.class_counts(self.num_classes)

    @property
    def test_class_counts(self) -> torch.Tensor:
        return self.test.class_counts(self.num_classes)

    @property
    def imbalance_ratio(self) -> float:
        """Achieved IR of the training set: max / min class count (inf if some class is empty)."""
        counts = self.train_class_counts
        lo = int(counts.min())
        return math.inf if lo == 0 else int(counts.max()) / lo

    def describe(self) -> str:
        """A short text summary: sizes, counts, achieved imbalance ratio, group sizes."""
        tc, ec = self.train_class_counts, self.test_class_counts
        c, h, w = self.train.channels, *self.train.image_size
        groups = ", ".join(f"{g} {len(self.class_groups[g])}" for g in GROUP_NAMES)
        lines = [
            f"{self.name}: {self.num_classes} classes, {c}x{h}x{w} uint8",
            f"  train {len(self.train)} (per class {int(tc.max())}..{int(tc.min())}, IR {self.imbalance_ratio:.1f})",
            f"  test  {len(self.test)} (per class {int(ec.max())}..{int(ec.min())})",
            f"  groups: {groups}",
        ]
        for key in ("imbalance_ratio", "seed", "class_order", "split"):
            if key in self.info:
                lines.append(f"  {key}: {self.info[key]}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"LTDataset(name={self.name!r}, classes={self.num_classes}, train={len(self.train)}, "
                f"test={len(self.test)}, IR={self.imbalance_ratio:.1f})")


@dataclass
class RawData:
    """What a format loader returns before the common steps (split, long tail, groups) in ``load_dataset``.

    Attributes:
        train: all training images (the whole set when the source has no test split).
        test: the source's test split, or None (then ``load_dataset`` makes a seeded stratified split).
        classes: class names, index = label.
        groups: explicit many/medium/few groups (DOTA, FUSRS) or None (then groups come from train counts).
        defaults: per-dataset defaults for ``load_dataset`` options (e.g. ``class_order``).
        info: provenance (root, files, split source).
    """

    train: ImageSet
    test: ImageSet | None
    classes: list[str]
    groups: dict[str, list[int]] | None = None
    defaults: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def harmonise_splits(train: ImageSet, test: ImageSet) -> tuple[ImageSet, ImageSet]:
    """Check that train and test images have one size (else DataError naming a file of each); if one
    split is grayscale and the other RGB, make both RGB."""
    if len(test) and test.image_size != train.image_size:
        (h, w), (th, tw) = train.image_size, test.image_size
        a = train.files[0] if train.files else "a training image"
        b = test.files[0] if test.files else "a test image"
        raise DataError(f"images differ in size: {a} is {w}x{h} but {b} is {tw}x{th} (WxH); "
                        "pass image_size=... to resize every image on decode")
    if train.channels == test.channels:
        return train, test

    def rgb(s: ImageSet) -> ImageSet:
        return s if s.channels == 3 else ImageSet(s.images.expand(-1, 3, -1, -1).contiguous(), s.labels, s.files)

    return rgb(train), rgb(test)
