"""Batch augmentation (roi_align crops, flips, gray -> RGB, normalisation) and the seeded BatchLoader."""

import pytest
import torch

from metapeft.data import BatchAugment, BatchLoader, DataError, ImageSet
from metapeft.data.augment import random_resized_crop_boxes

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)


def _norm(x_uint8):
    m, s = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (x_uint8.float() / 255 - m) / s


def _batch(b=6, c=3, h=64, w=64, seed=0):
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_eval_mode_is_normalised_resize():
    x = _batch()
    same = BatchAugment(64, MEAN, STD, train=False)(x)
    assert same.shape == (6, 3, 64, 64) and same.dtype == torch.float32
    torch.testing.assert_close(same, _norm(x))
    const = torch.full((2, 3, 64, 64), 51, dtype=torch.uint8)
    out = BatchAugment(56, MEAN, STD, train=False)(const)
    assert out.shape == (2, 3, 56, 56)
    torch.testing.assert_close(out, _norm(const)[:, :, :56, :56], atol=1e-5, rtol=0)
    crop = BatchAugment(32, MEAN, STD, train=False, eval_crop=0.5)(x)
    torch.testing.assert_close(crop, _norm(x[:, :, 16:48, 16:48]))


def test_full_box_crop_is_identity_and_flip_is_a_flip():
    x = _batch(b=200)
    aug = BatchAugment(64, MEAN, STD, train=True, scale=(1, 1), ratio=(1, 1), hflip=False)
    torch.testing.assert_close(aug(x, torch.Generator().manual_seed(0)), _norm(x), atol=1e-4, rtol=0)
    flip = BatchAugment(64, MEAN, STD, train=True, scale=(1, 1), ratio=(1, 1), hflip=True)
    y = flip(x, torch.Generator().manual_seed(0))
    ref = _norm(x)
    is_same = (y - ref).abs().amax(dim=(1, 2, 3)) < 1e-4
    is_flip = (y - ref.flip(3)).abs().amax(dim=(1, 2, 3)) < 1e-4
    assert bool((is_same ^ is_flip).all())
    assert 60 < int(is_flip.sum()) < 140


def test_random_crop_takes_the_right_pixels():
    x = _batch(b=16)
    aug = BatchAugment(32, MEAN, STD, train=True, scale=(0.25, 0.25), ratio=(1, 1), hflip=False)
    y = aug(x, torch.Generator().manual_seed(3))
    boxes = random_resized_crop_boxes(16, 64, 64, (0.25, 0.25), (1, 1), torch.Generator().manual_seed(3)).long()
    assert bool(((boxes[:, 2] - boxes[:, 0]) == 32).all()) and len(set(boxes[:, 0].tolist())) > 1
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        torch.testing.assert_close(y[i], _norm(x[i:i + 1, :, y1:y2, x1:x2])[0], atol=1e-4, rtol=0)


def test_crop_boxes_follow_the_ranges_and_fallback():
    g = torch.Generator().manual_seed(0)
    b = random_resized_crop_boxes(4000, 48, 64, (0.08, 1.0), (3 / 4, 4 / 3), g)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    assert bool((b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 64).all() and (b[:, 3] <= 48).all())
    area = w * h / (48 * 64)
    assert float(area.min()) >= 0.07 and float(area.max()) <= 1.0 and float(area.std()) > 0.1
    assert float((w / h).min()) > 0.7 and float((w / h).max()) < 1.4
    # impossible ranges -> torchvision's centred fallback
    fb = random_resized_crop_boxes(3, 40, 40, (1.0, 1.0), (2.0, 3.0), g)
    assert fb.tolist() == [[0.0, 10.0, 40.0, 30.0]] * 3


def test_gray_to_rgb_determinism_and_bad_input():
    x = _batch(c=1)
    aug = BatchAugment(40, (0.5,) * 3, (0.5,) * 3, train=True)
    y = aug(x, torch.Generator().manual_seed(1))
    assert y.shape == (6, 3, 40, 40) and torch.equal(y[:, 0], y[:, 2])
    assert torch.equal(y, aug(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(y, aug(x, torch.Generator().manual_seed(2)))
    with pytest.raises(DataError):
        aug(torch.zeros(2, 2, 8, 8, dtype=torch.uint8))
    with pytest.raises(DataError):
        BatchAugment(8, (0.5, 0.5), (0.5, 0.5))
    cfg = {"mean": MEAN, "std": STD, "input_size": (3, 224, 224)}
    assert BatchAugment.from_pretrained_cfg(cfg).out_size == 224


# ---------------------------------------------------------------- loader

def _indexed_set(n=50):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return ImageSet(images, torch.arange(n) % 5)


def test_loader_epoch_covers_everything_and_is_seeded():
    data = _indexed_set()
    loader = BatchLoader(data, 8, shuffle=True, drop_last=False, seed=0)
    assert len(loader) == 7
    loader.set_epoch(0)
    batches = list(loader)
    ids = torch.cat([x[:, 0, 0, 0] for x, _ in batches]).long()
    assert sorted(ids.tolist()) == list(range(50)) and ids.tolist() != list(range(50))
    assert torch.equal(torch.cat([y for _, y in batches]), ids % 5)
    assert loader.epoch == 1  # a full pass advances the epoch
    second = torch.cat([x[:, 0, 0, 0] for x, _ in loader]).long()
    assert not torch.equal(second, ids)
    loader.set_epoch(0)
    assert torch.equal(torch.cat([x[:, 0, 0, 0] for x, _ in loader]).long(), ids)
    other_seed = BatchLoader(data, 8, shuffle=True, drop_last=False, seed=1)
    assert not torch.equal(torch.cat([x[:, 0, 0, 0] for x, _ in other_seed]).long(), ids)
    dl = BatchLoader(data, 8, shuffle=False, drop_last=True, seed=0)
    assert len(dl) == 6 and torch.cat([x[:, 0, 0, 0] for x, _ in dl]).tolist() == list(range(48))


def test_loader_resume_mid_epoch_replays_augmentation():
    data = ImageSet(_batch(b=40, h=16, w=16), torch.arange(40) % 4)
    aug = BatchAugment(12, MEAN, STD, train=True)
    loader = BatchLoader(data, 8, shuffle=True, drop_last=False, transform=aug, seed=7)
    loader.set_epoch(3)
    full = list(loader)
    loader.set_epoch(3, start_batch=2)
    resumed = list(loader)
    assert len(resumed) == 3
    for (xa, ya), (xb, yb) in zip(full[2:], resumed):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert full[0][0].shape == (8, 3, 12, 12) and full[0][0].dtype == torch.float32


def test_loader_rejects_a_batch_larger_than_the_data_with_drop_last():
    labels = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    data = ImageSet(torch.zeros(100, 1, 2, 2, dtype=torch.uint8), labels)
    with pytest.raises(DataError):
        BatchLoader(data, 200, shuffle=False, drop_last=True)


def test_imageset_and_ltdataset_validation():
    from metapeft.data import LTDataset

    with pytest.raises(DataError, match="uint8"):
        ImageSet(torch.zeros(2, 3, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(DataError, match="labels"):
        ImageSet(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0]))
    with pytest.raises(DataError, match="1 or 3 channels"):
        ImageSet(torch.zeros(2, 2, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]))
    s = ImageSet(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 1]), ["a", "b", "c"])
    sub = s.subset([2, 0])
    assert len(sub) == 2 and sub.files == ["c", "a"] and sub.labels.tolist() == [1, 0]
    with pytest.raises(DataError, match="outside the class list"):
        LTDataset("x", s, s, ["only"], {"many": [0], "medium": [], "few": []})
    with pytest.raises(DataError, match="keys"):
        LTDataset("x", s, s, ["a", "b"], {"many": [0, 1]})
