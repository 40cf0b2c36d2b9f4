"""Class separation (Fig. 1b) and PCA (Fig. S3) on hand-made features with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from metapeft.eval.feature_geometry import class_means, class_separation, pca_2d


def _features() -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0 along x, class 1 along y, class 2 on the diagonal; lengths vary (normalised away)."""
    f = torch.tensor([[2.0, 0.0], [0.5, 0.0], [0.0, 3.0], [0.0, 1.0], [1.0, 1.0], [4.0, 4.0]])
    return f, torch.tensor([0, 0, 1, 1, 2, 2])


def test_class_separation_matches_hand_computed_cosines():
    f, y = _features()
    sep = class_separation(f, y, 3, center=False)
    diag = 1 - math.sqrt(0.5)
    torch.testing.assert_close(sep.nearest, torch.tensor([diag, diag, diag]))
    torch.testing.assert_close(sep.mean, torch.tensor([(1 + diag) / 2, (1 + diag) / 2, diag]))
    assert sep.neighbour.tolist() == [2, 2, 0]
    groups = sep.group_means({"many": [0, 1], "medium": [], "few": [2]})
    assert groups["medium"] == {"nearest": None, "mean": None}
    assert groups["few"]["mean"] == pytest.approx(diag)
    assert groups["many"]["mean"] == pytest.approx((1 + diag) / 2)


def test_absent_class_is_nan_and_ignored_by_the_others():
    f, y = _features()
    sep = class_separation(f, y, 4, center=False)  # class 3 has no test samples
    assert math.isnan(sep.nearest[3]) and math.isnan(sep.mean[3]) and sep.neighbour[3] == -1
    torch.testing.assert_close(sep.nearest[:3], class_separation(f, y, 3, center=False).nearest)
    assert torch.isnan(class_means(f, y, 4)[3]).all()


def test_centring_removes_a_shared_offset():
    """A large component common to every feature hides the classes from raw cosines, not from centred ones."""
    g = torch.Generator().manual_seed(0)
    f, y = torch.randn(60, 8, generator=g), torch.arange(60) % 3
    shifted = f + 100 * torch.ones(8)
    assert class_separation(shifted, y, 3, center=False).nearest.max() < 1e-3
    torch.testing.assert_close(class_separation(shifted, y, 3).nearest, class_separation(f, y, 3).nearest,
                               rtol=1e-4, atol=1e-5)


def test_single_class_has_no_neighbour():
    sep = class_separation(torch.randn(5, 3), torch.zeros(5, dtype=torch.long), 1)
    assert math.isnan(sep.nearest[0]) and sep.neighbour.tolist() == [-1]


def test_wrong_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        class_separation(torch.randn(4, 3), torch.zeros(5, dtype=torch.long), 2)


def test_pca_finds_the_dominant_direction():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(200, 1, generator=g)
    direction = torch.tensor([[1.0, 1.0, 0.0]]) / math.sqrt(2)
    x = 5 * t @ direction + 0.01 * torch.randn(200, 3, generator=g)
    xy, share = pca_2d(x)
    assert xy.shape == (200, 2) and share[0] > 0.99 and share[1] < 0.01
    assert abs(torch.corrcoef(torch.stack([xy[:, 0], t[:, 0]]))[0, 1]) > 0.999
