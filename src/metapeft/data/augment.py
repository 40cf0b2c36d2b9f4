"""Batch-level tensor augmentation: per-sample random resized crop + flip in one ``roi_align`` call.

Remote-sensing option (``rs=True``): aerial and SAR scenes have no canonical "up", so a vertical flip and
a random multiple of 90° rotation (the dihedral group with the horizontal flip) are drawn per sample
after the crop. Their random numbers are drawn only when the option is on, so runs without it keep
exactly the old random stream.

No per-sample Python or PIL work: a uint8 batch [B, C, H, W] goes in, a normalised float batch
[B, 3, S, S] comes out, on whatever device the batch is on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from .roots import DataError

__all__ = ["BatchAugment", "random_resized_crop_boxes", "rs_flip_rotate"]


def rs_flip_rotate(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per sample of a square batch [B, C, S, S]: vertical flip with p = 0.5, then rotation by k·90°."""
    b = x.shape[0]
    vflip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    k = torch.randint(0, 4, (b,), generator=generator).to(x.device)
    x = torch.where(vflip[:, None, None, None], x.flip(2), x)
    out = x.clone()
    for turns in (1, 2, 3):
        sel = k == turns
        if bool(sel.any()):
            out[sel] = torch.rot90(x[sel], turns, dims=(2, 3))
    return out


def random_resized_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
    attempts: int = 10,
) -> torch.Tensor:
    """Boxes [B, 4] (x1, y1, x2, y2 in pixel-edge coordinates) drawn like torchvision's RandomResizedCrop.

    Each sample tries ``attempts`` (area, aspect) draws at once and keeps the first that fits; if none
    fits it falls back to the largest centred crop with a clamped aspect ratio, as torchvision does.
    """
    area = height * width
    u = torch.rand(batch, attempts, 4, generator=generator)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[..., 1]
    aspect = torch.exp(log_r)
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.int().argmax(dim=1)  # index of the first valid attempt (0 if none)
    rows = torch.arange(batch)
    w, h = w[rows, first], h[rows, first]
    y = torch.floor(u[rows, first, 2] * (height - h + 1))
    x = torch.floor(u[rows, first, 3] * (width - w + 1))
    # fallback: whole image cropped to the nearest allowed aspect ratio, centred
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    none = ~ok.any(dim=1)
    w = torch.where(none, torch.tensor(float(fw)), w)
    h = torch.where(none, torch.tensor(float(fh)), h)
    x = torch.where(none, torch.tensor(float((width - fw) // 2)), x)
    y = torch.where(none, torch.tensor(float((height - fh) // 2)), y)
    return torch.stack([x, y, x + w, y + h], dim=1)


@dataclass
class BatchAugment:
    """Callable uint8 batch [B, C, H, W] -> normalised float batch [B, 3, out_size, out_size].

    Args:
        out_size: output side length (the backbone's input size).
        mean / std: per-channel normalisation in [0, 1] units, from the backbone's pretrained config.
        train: True = random resized crop + horizontal flip; False = (optional centre crop) + resize.
        scale / ratio: RandomResizedCrop area-fraction and aspect-ratio ranges (torchvision defaults).
        hflip: flip each sample with probability 0.5 in train mode.
        eval_crop: fraction of the shorter side kept by the eval centre crop (1.0 = plain resize;
            0.875 = the "Resize(256) + CenterCrop(224)" recipe); non-square inputs are always cropped to a
            centred square first, so their aspect ratio is kept.
        rs: remote-sensing augmentation in train mode: vertical flip (p = 0.5) and rotation by
            k·90°, k uniform in {0, 1, 2, 3}, per sample.

    A 1-channel (SAR / grayscale) batch is repeated to 3 channels. The crop uses
    ``torchvision.ops.roi_align(aligned=True)`` with adaptive sampling, i.e. bilinear with area-like
    averaging when a crop is shrunk.
    """

    out_size: int
    mean: Sequence[float]
    std: Sequence[float]
    train: bool = True
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True
    eval_crop: float = 1.0
    rs: bool = False

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise DataError(f"BatchAugment needs 3 mean and 3 positive std values; "
                            f"got mean={self.mean}, std={self.std}")
        if not (0 < self.scale[0] <= self.scale[1] <= 1) or not (0 < self.ratio[0] <= self.ratio[1]):
            raise DataError(f"bad crop ranges scale={self.scale} ratio={self.ratio}")
        if not 0 < self.eval_crop <= 1:
            raise DataError(f"eval_crop must be in (0, 1]; got {self.eval_crop}")
        std = torch.tensor(self.std, dtype=torch.float32)
        self._mul = (1.0 / (255.0 * std)).view(1, 3, 1, 1)
        self._add = (-torch.tensor(self.mean, dtype=torch.float32) / std).view(1, 3, 1, 1)

    @classmethod
    def from_pretrained_cfg(
        cls, cfg: Mapping, out_size: int | None = None, train: bool = True, **kwargs
    ) -> BatchAugment:
        """Build from a timm ``pretrained_cfg`` / data config (keys ``mean``, ``std``, ``input_size``)."""
        size = out_size if out_size is not None else int(cfg["input_size"][-1])
        return cls(size, tuple(cfg["mean"]), tuple(cfg["std"]), train=train, **kwargs)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise DataError(f"BatchAugment expects a batch [B, 1|3, H, W]; got shape {tuple(images.shape)}")
        b, _, h, w = images.shape
        s = self.out_size
        if self.train:
            from torchvision.ops import roi_align  # lazy: importing torchvision.ops costs seconds

            boxes = random_resized_crop_boxes(b, h, w, self.scale, self.ratio, generator)
            if self.hflip:
                # Flipping the uint8 input (4x less memory than the float crop) is equivalent: the box
                # distribution is mirror-symmetric.
                flip = (torch.rand(b, generator=generator) < 0.5).to(images.device)
                images = torch.where(flip[:, None, None, None], images.flip(3), images)
            rois = torch.cat([torch.arange(b, dtype=torch.float32)[:, None], boxes], dim=1).to(images.device)
            x = roi_align(images.float(), rois, output_size=(s, s), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
            if self.rs:
                x = rs_flip_rotate(x, generator)
        else:
            x = images.float()
            if self.eval_crop < 1.0 or h != w:  # a non-square image is centre-cropped, not stretched
                side = max(1, round(min(h, w) * self.eval_crop))
                top, left = (h - side) // 2, (w - side) // 2
                x = x[:, :, top:top + side, left:left + side]
            if x.shape[-2:] != (s, s):
                x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        # one fused pass: (x / 255 - mean) / std
        return torch.addcmul(self._add.to(x.device), x, self._mul.to(x.device))
