"""``LazyImages``: image files decoded on demand, for datasets larger than the RAM budget.

A 500k-image set at 224 px is 75 GB as uint8: it cannot be decoded into memory before step 1. A
``LazyImages`` stands where an ``ImageSet`` keeps its uint8 tensor and answers the same indexing
(``images[idx]`` → a uint8 batch [n, 3, S, S]); ``BatchLoader`` then decodes batches in DataLoader
workers. Each image is decoded exactly as the in-memory path decodes it (``pil_to_array``), so the
same seed gives the same augmented batches either way. Always 3 channels: a grayscale file is
broadcast, which ``BatchAugment`` would do to a 1-channel batch anyway (identical model input).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .decode import pil_to_array, read_image
from .roots import DataError

__all__ = ["LazyImages", "decoded_bytes", "default_ram_budget_gb"]


def default_ram_budget_gb() -> float:
    """A quarter of this machine's RAM: room for the model, activations, workers and the page cache."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 4 / 2**30
    except (ValueError, OSError, AttributeError):
        return 8.0


def image_side(files: Sequence[str | Path], image_size: int | None) -> tuple[int, int]:
    """(H, W) every decoded image will have: ``image_size`` squared, else the first file's size."""
    if image_size is not None:
        return image_size, image_size
    with Image.open(files[0]) as im:  # the header only
        w, h = im.size
    return h, w


def decoded_bytes(files: Sequence[str | Path], image_size: int | None) -> int:
    """What decoding ``files`` into memory would take (uint8, 3 channels)."""
    if not files:
        return 0
    h, w = image_side(files, image_size)
    return len(files) * 3 * h * w


class LazyImages:
    """Files + decode settings, indexable like a uint8 [N, 3, H, W] tensor (rows decoded when read)."""

    dtype = torch.uint8

    def __init__(self, files: Sequence[str | Path], image_size: int | None, *, percentile: float | None = None,
                 side: tuple[int, int] | None = None) -> None:
        self.files = [str(f) for f in files]
        self.image_size = image_size
        self.percentile = percentile
        self.side = side if side is not None else image_side(self.files, image_size) if self.files else (1, 1)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), 3, *self.side))

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, idx: torch.Tensor) -> LazyImages:
        """Rows ``idx`` as another lazy set (nothing decoded)."""
        return LazyImages([self.files[i] for i in idx.tolist()], self.image_size, percentile=self.percentile,
                          side=self.side)

    def __getitem__(self, idx) -> torch.Tensor:
        """Decode rows ``idx`` (a tensor or list of indices, or a slice) into a uint8 batch [n, 3, H, W]."""
        if isinstance(idx, slice):
            rows = range(*idx.indices(len(self.files)))
        else:
            rows = torch.as_tensor(idx, dtype=torch.long).reshape(-1).tolist()
        out = np.empty((len(rows), *self.side, 3), dtype=np.uint8)
        for k, i in enumerate(rows):
            arr = pil_to_array(read_image(self.files[i]), self.image_size, percentile=self.percentile)
            if arr.shape[:2] != self.side:
                raise DataError(f"images differ in size: {self.files[i]} is {arr.shape[1]}x{arr.shape[0]} but "
                                f"{self.files[0]} is {self.side[1]}x{self.side[0]} (WxH); pass image_size=... to "
                                "resize every image on decode")
            out[k] = arr  # a 1-channel image broadcasts to 3
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()

    def __repr__(self) -> str:
        return f"LazyImages({len(self.files)} files, {self.side[1]}x{self.side[0]})"
