"""Decode image files once into a uint8 tensor [N, C, H, W] (optionally cached as a memory-mapped .npy)."""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..progress import progress
from .roots import DataError

__all__ = ["read_image", "pil_to_array", "rescale_to_uint8", "stack_arrays", "decode_files", "resize_uint8", "cached", "file_stamp"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_GRAY_MODES = {"1", "L", "I", "I;16", "I;16B", "I;16L", "F"}
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # more than 8 bits per pixel


def read_image(path: str | Path) -> Image.Image:
    """Open and fully decode one image; any failure becomes a DataError naming the file."""
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError...) for bad files
        raise DataError(f"cannot decode image {path}: {type(e).__name__}: {e}") from None
    return img


def pil_to_array(img: Image.Image, image_size: int | None = None, *, percentile: float | None = None) -> np.ndarray:
    """PIL image -> uint8 array [H, W, C] with C = 1 (grayscale modes) or 3; optional aspect-keeping square resize.

    16- and 32-bit modes (``I;16*``, ``I``, ``F``: 16-bit PNG/TIFF, SAR amplitudes) are rescaled to
    0..255 by the image's own value range (or its ``percentile`` .. 100 - ``percentile`` range, which
    ignores a few bright outliers) instead of PIL's ``convert("L")``, which clips everything above 255.
    """
    if img.mode in _WIDE_MODES:
        img = Image.fromarray(rescale_to_uint8(np.asarray(img), percentile))
    elif img.mode in _GRAY_MODES or img.mode == "LA":
        img = img.convert("L")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    if image_size is not None and img.size != (image_size, image_size):
        # Aspect kept: the shorter side becomes image_size, then a centre crop makes it square (a square
        # image is resized exactly as before). Pillow's BICUBIC antialiases when it shrinks (the same
        # resampling as the bundled arrays).
        w, h = img.size
        scale = image_size / min(w, h)
        nw, nh = max(image_size, round(w * scale)), max(image_size, round(h * scale))
        box = ((nw - image_size) // 2, (nh - image_size) // 2)
        img = img.resize((nw, nh), Image.BICUBIC)
        if (nw, nh) != (image_size, image_size):
            img = img.crop((box[0], box[1], box[0] + image_size, box[1] + image_size))
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def rescale_to_uint8(values: np.ndarray, percentile: float | None = None) -> np.ndarray:
    """Map an image's value range (or a percentile range) linearly onto 0..255; NaN/inf count as the minimum."""
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros(x.shape, dtype=np.uint8)
    lo, hi = (np.percentile(finite, [percentile, 100 - percentile]) if percentile else (finite.min(), finite.max()))
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.uint8)
    x = np.where(np.isfinite(x), x, lo)
    return np.round((np.clip(x, lo, hi) - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def stack_arrays(arrays: list[np.ndarray], names: Sequence[str]) -> torch.Tensor:
    """Stack [H, W, C] arrays into [N, C, H, W]; mixed gray/RGB becomes RGB; sizes must agree.

    The list is emptied while copying, so peak memory stays near one copy of the data.
    """
    if not arrays:
        return torch.empty(0, 3, 1, 1, dtype=torch.uint8)
    h0, w0 = arrays[0].shape[:2]
    for a, n in zip(arrays, names):
        if a.shape[:2] != (h0, w0):
            raise DataError(
                f"images differ in size: {names[0]} is {w0}x{h0} but {n} is {a.shape[1]}x{a.shape[0]} (WxH); "
                "pass image_size=... to resize every image on decode"
            )
    c = 3 if any(a.shape[2] == 3 for a in arrays) else 1
    out = np.empty((len(arrays), h0, w0, c), dtype=np.uint8)
    for i in range(len(arrays)):
        out[i] = arrays[i]  # broadcasting turns a 1-channel image into 3 identical channels
        arrays[i] = None
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def worker_threads(n: int) -> int:
    return max(1, min(8, os.cpu_count() or 1, n))


def decode_files(
    paths: Sequence[str | Path],
    *,
    image_size: int | None = None,
    names: Sequence[str] | None = None,
    percentile: float | None = None,
) -> torch.Tensor:
    """Decode ``paths`` in a thread pool into a uint8 tensor [N, C, H, W].

    Args:
        paths: image files.
        image_size: resize every image to this square size (required when sizes differ).
        names: display names for errors (default: the paths).
        percentile: 16/32-bit images map their [p, 100 - p] percentile range to 0..255 (default: min..max).
    """
    names = [str(p) for p in paths] if names is None else list(names)
    with ThreadPoolExecutor(worker_threads(len(paths))) as pool:
        decoded = pool.map(lambda p: pil_to_array(read_image(p), image_size, percentile=percentile), paths)
        arrays = list(progress(decoded, "decode", total=len(paths), unit="images"))
    return stack_arrays(arrays, names)


def cached(
    cache_dir: str | Path | None, key_parts: Sequence[object], build: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """Return ``build()``, memoised as ``<cache_dir>/metapeft-<hash>.npy`` (memory-mapped on reuse).

    The hash covers ``key_parts`` (callers pass file names, sizes, mtimes and the image size), so an
    edited file or another image size gives a fresh cache entry.
    """
    if cache_dir is None:
        return build()
    h = hashlib.sha1()
    for part in key_parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    path = Path(cache_dir) / f"metapeft-{h.hexdigest()[:20]}.npy"
    if path.is_file():
        try:  # copy-on-write map: writable tensor, file untouched, pages loaded on demand
            arr = np.load(path, mmap_mode="c")
            if arr.dtype != np.uint8 or arr.ndim != 4:
                raise ValueError(f"holds {arr.dtype} {arr.shape}, not uint8 [N, C, H, W]")
            return torch.from_numpy(arr)
        except (ValueError, OSError, EOFError) as e:  # a truncated or foreign file: rebuild, never fail forever
            warnings.warn(f"decode cache {path} is unreadable ({e}): rebuilding it", stacklevel=2)
            path.unlink(missing_ok=True)
    images = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, images.numpy())
    with open(tmp, "rb") as f:  # durable before it is published: a crash never leaves a truncated entry
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return images


def file_stamp(paths: Sequence[str | Path]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) per file, for cache keys."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((str(p), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(p), -1, -1))
    return out


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bilinear resize of a uint8 batch [N, C, H, W] to [N, C, size, size] (chunked)."""
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty(images.shape[0], images.shape[1], size, size, dtype=torch.uint8)
    for s in range(0, images.shape[0], 1024):
        x = images[s:s + 1024].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[s:s + 1024] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out
