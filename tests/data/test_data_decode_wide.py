"""16/32-bit images keep their range (never clipped to white), recursive class folders, decode-cache repair."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metapeft.data import DataError, load_dataset
from metapeft.data import decode
from metapeft.data.formats_folder import load_imagefolder


def ramp(dtype, scale: float, offset: float = 0.0) -> np.ndarray:
    return (np.arange(4096, dtype=np.float64).reshape(64, 64) * scale + offset).astype(dtype)


@pytest.mark.parametrize("fmt,dtype,scale,offset,mode", [
    ("png", np.uint16, 16, 0, "I;16"),       # 16-bit PNG: convert("L") made this all white
    ("tif", np.uint16, 16, 0, "I;16"),
    ("tif", np.int32, 1000, -2_000_000, "I"),
    ("tif", np.float32, 1e-3, -1.0, "F"),  # SAR amplitude / dB as float TIFF
])
def test_wide_modes_are_rescaled_by_their_range(tmp_path, fmt, dtype, scale, offset, mode):
    p = tmp_path / f"x.{fmt}"
    Image.fromarray(ramp(dtype, scale, offset)).save(p)
    img = decode.read_image(p)
    assert img.mode == mode
    a = decode.pil_to_array(img)[:, :, 0].astype(int)
    assert a.min() == 0 and a.max() == 255, "the full value range maps onto 0..255"
    assert np.all(np.diff(a.ravel()) >= 0), "order kept, nothing clipped into a flat block"
    assert abs(a.mean() - 127.5) < 1.5


def test_percentile_ignores_bright_outliers():
    x = ramp(np.float32, 1.0)
    x[0, 0] = 1e9                          # one hot pixel (SAR corner reflector)
    plain = decode.rescale_to_uint8(x)
    robust = decode.rescale_to_uint8(x, percentile=1.0)
    assert plain[1:].max() == 0 and robust.mean() > 100
    assert decode.rescale_to_uint8(np.full((3, 3), np.nan)).max() == 0


def test_imagefolder_scans_class_folders_recursively_and_keeps_16_bit(tmp_path):
    for c in ("sar_a", "sar_b"):
        for i, sub in enumerate(("", "scene1", "scene1/deeper")):
            d = tmp_path / c / sub
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ramp(np.uint16, 16 - 4 * i)).save(d / f"{i}.png")
    (tmp_path / "sar_a" / ".hidden").mkdir()
    Image.fromarray(ramp(np.uint16, 1)).save(tmp_path / "sar_a" / ".hidden" / "skip.png")
    raw = load_imagefolder(tmp_path, layout="single", percentile=0.5)
    assert raw.classes == ["sar_a", "sar_b"] and len(raw.train) == 6
    assert raw.train.images.float().std() > 30 and raw.train.images.float().mean() < 200
    with pytest.raises(DataError, match="percentile"):
        load_imagefolder(tmp_path, layout="single", percentile=60)


def test_fewer_than_two_classes_is_refused(tmp_path):
    (tmp_path / "one").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "one" / "0.png")
    with pytest.raises(DataError, match="at least 2"):
        load_dataset("imagefolder", root=tmp_path)


def test_corrupt_decode_cache_is_rebuilt_with_a_warning(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return decode.torch.zeros(2, 1, 4, 4, dtype=decode.torch.uint8)

    decode.cached(tmp_path, ["k"], build)
    (entry,) = tmp_path.glob("metapeft-*.npy")
    entry.write_bytes(entry.read_bytes()[:20])          # truncated (a killed copy, a full disk)
    with pytest.warns(UserWarning, match="rebuilding"):
        again = decode.cached(tmp_path, ["k"], build)
    assert again.shape == (2, 1, 4, 4) and len(calls) == 2
    assert decode.cached(tmp_path, ["k"], build).shape == (2, 1, 4, 4) and len(calls) == 2  # healthy again
