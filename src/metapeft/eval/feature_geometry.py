"""Feature-space geometry of a long-tailed classifier (the paper's Fig. 1b and Fig. S3).

Fig. 1(b) argues that tail classes sit closer to their neighbours in feature space than head classes,
and that good PEFT pushes them apart. We measure it on test features: features are centred on their
global mean (pretrained ViT features share a large common component that makes every raw cosine ≈ 1,
e.g. 0.01–0.1 distances for DINOv2 on AID), each class is summarised by the L2-normalised mean of its
L2-normalised features, and a class's *separation* is the cosine distance (1 − cos) from its mean to the
nearest other class mean (``nearest``) and to all others on average (``mean``). Group averages
(many / medium / few) make head vs tail comparable across runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ClassSeparation:
    """Per-class cosine distances between class means (``nan`` for a class without samples)."""

    nearest: torch.Tensor      # [C] distance to the closest other class mean
    mean: torch.Tensor         # [C] average distance to the other class means
    neighbour: torch.Tensor    # [C] index of the closest other class (-1 if none)

    def group_means(self, groups: dict[str, list[int]]) -> dict[str, dict[str, float | None]]:
        """``{group: {"nearest": …, "mean": …}}`` averaged over the group's classes with samples."""
        out: dict[str, dict[str, float | None]] = {}
        for name, idx in groups.items():
            row: dict[str, float | None] = {}
            for key in ("nearest", "mean"):
                v = getattr(self, key)[list(idx)] if idx else torch.empty(0)
                v = v[~torch.isnan(v)]
                row[key] = float(v.mean()) if v.numel() else None
            out[name] = row
        return out


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, center: bool = True
                ) -> torch.Tensor:
    """[C, D] unit-norm class means of unit-norm (optionally centred) features; absent classes are ``nan``."""
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"features must be [N, D] with labels [N], got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    f = features.double()
    f = F.normalize(f - f.mean(dim=0, keepdim=True) if center else f, dim=1)
    sums = torch.zeros(num_classes, f.shape[1], dtype=f.dtype).index_add_(0, labels.long(), f)
    counts = torch.bincount(labels.long(), minlength=num_classes)
    means = F.normalize(sums, dim=1)
    means[counts == 0] = float("nan")
    return means


def class_separation(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, center: bool = True
                     ) -> ClassSeparation:
    """Cosine distance of every class mean to the other class means (see the module docstring)."""
    means = class_means(features, labels, num_classes, center=center)
    present = ~torch.isnan(means[:, 0])
    dist = 1.0 - means.nan_to_num(0.0) @ means.nan_to_num(0.0).T
    others = present[None, :] & present[:, None] & ~torch.eye(num_classes, dtype=torch.bool)
    masked = dist.masked_fill(~others, float("inf"))
    nearest, neighbour = masked.min(dim=1)
    has_other = others.any(dim=1)
    mean = (dist * others).sum(dim=1) / others.sum(dim=1).clamp(min=1)
    nan = torch.tensor(float("nan"), dtype=dist.dtype)
    return ClassSeparation(nearest=torch.where(has_other, nearest, nan).float(),
                           mean=torch.where(has_other, mean, nan).float(),
                           neighbour=torch.where(has_other, neighbour, torch.tensor(-1)))


def pca_2d(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Test features projected on their first two principal axes, and those axes' variance shares."""
    x = features.double() - features.double().mean(dim=0, keepdim=True)
    _, s, v = torch.linalg.svd(x, full_matrices=False)
    share = s.pow(2) / s.pow(2).sum().clamp(min=1e-12)
    return (x @ v[:2].T).float(), share[:2].float()
