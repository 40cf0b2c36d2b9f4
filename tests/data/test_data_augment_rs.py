"""Remote-sensing augmentation, eval crop and aspect-keeping decode (issue 13, item 8)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from metapeft.config import RunConfig
from metapeft.data import BatchAugment
from metapeft.data.augment import rs_flip_rotate
from metapeft.data.decode import pil_to_array
from metapeft.train.pipeline import prepare_data

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _batch():
    return torch.randint(0, 256, (6, 3, 24, 24), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_rs_draws_come_after_the_old_stream():
    """Off: the old crop + hflip stream untouched; on: the same crops, then flips/rotations."""
    x = _batch()
    g_plain, g_rs = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    plain = BatchAugment(16, MEAN, STD, scale=(0.5, 1.0))(x, g_plain)
    rs = BatchAugment(16, MEAN, STD, scale=(0.5, 1.0), rs=True)(x, g_rs)
    assert torch.equal(rs, rs_flip_rotate(plain, g_plain))
    assert not torch.equal(rs, plain)


def test_rs_outputs_are_dihedral_transforms_of_the_input():
    x = torch.randn(32, 3, 8, 8)
    out = rs_flip_rotate(x, torch.Generator().manual_seed(1))
    seen = set()
    for i in range(len(x)):
        variants = [torch.rot90(v, k, dims=(1, 2)) for v in (x[i], x[i].flip(1)) for k in range(4)]
        match = [j for j, v in enumerate(variants) if torch.equal(v, out[i])]
        assert match, f"sample {i} is not a flip/rotation of its input"
        seen.add(match[0])
    assert len(seen) >= 6  # all kinds are drawn


def test_eval_crop_and_rs_reach_the_pipeline(tiny_run, data_root):
    cfg = RunConfig.load(None, tiny_run + ["data.eval_crop=0.75", "data.rs_augment=true"])
    data = prepare_data(cfg, MEAN, STD)
    assert data.eval_tf.eval_crop == 0.75 and data.train_tf.rs and not data.eval_tf.rs


def test_decode_keeps_aspect_with_a_centre_crop():
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :10, 0] = 255      # red left quarter
    arr[:, 10:30, 1] = 255    # green middle half
    arr[:, 30:, 2] = 255      # blue right quarter
    out = pil_to_array(Image.fromarray(arr), 10)
    assert out.shape == (10, 10, 3)
    assert out[:, :, 1].min() > 200 and out[:, :, 0].max() < 60 and out[:, :, 2].max() < 60
    square = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(square).resize((10, 10), Image.BICUBIC))
    assert np.array_equal(pil_to_array(Image.fromarray(square), 10), expected)  # square: as before


def test_eval_of_a_non_square_batch_keeps_aspect():
    x = torch.randint(0, 256, (2, 3, 16, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    aug = BatchAugment(8, MEAN, STD, train=False)
    centre = BatchAugment(8, MEAN, STD, train=False)(x[:, :, :, 8:24].contiguous())  # the middle square
    assert torch.allclose(aug(x), centre)
