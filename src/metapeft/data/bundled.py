"""Real datasets shipped as compact numpy arrays under the data root (``aid``, ``mstar_soc``).

Layout per dataset (see each ``SOURCE.md``): ``images.npy`` (uint8 [N, H, W] or [N, H, W, C]),
``labels.npy`` (int64 [N]), ``classes.txt`` (one name per line), optional ``files.txt`` (source file
per row) and ``split.npy`` (0 = train, 1 = test).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .decode import resize_uint8
from .imageset import ImageSet, RawData
from .roots import ENV_VAR, DataError, resolve_data_root

__all__ = ["BUNDLED", "BundledInfo", "load_bundled", "find_bundled_dir"]


@dataclass(frozen=True)
class BundledInfo:
    name: str
    title: str
    source: str
    has_split: bool


BUNDLED: dict[str, BundledInfo] = {
    "aid": BundledInfo(
        "aid",
        "AID aerial scenes (optical RGB, 30 classes, 10,000 images, packed at 64x64)",
        "AID: A Benchmark Dataset for Performance Evaluation of Aerial Scene Classification, "
        "Xia et al., IEEE TGRS 55(7), 2017 (Google Earth imagery; research use)",
        has_split=False,
    ),
    "mstar_soc": BundledInfo(
        "mstar_soc",
        "MSTAR SOC SAR vehicle chips (grayscale, 10 classes, 17/15 deg train/test split, 64x64 crops)",
        "MSTAR public release (Moving and Stationary Target Acquisition and Recognition), AFRL/DARPA, "
        "via AFRL SDMS (research use)",
        has_split=True,
    ),
}

_REQUIRED = ("images.npy", "labels.npy", "classes.txt")


def _missing_message(info: BundledInfo, looked: list[Path], why: str) -> str:
    files = ", ".join(_REQUIRED + (("split.npy",) if info.has_split else ()))
    where = "\n".join(f"  - {p}" for p in looked) or "  (no data root could be resolved)"
    return (
        f"dataset '{info.name}' not found ({why}).\n"
        f"It is {info.title}.\nSource: {info.source}.\n"
        f"Expected files {files} in a directory '{info.name}/' under the data root. Looked in:\n{where}\n"
        f"Point metapeft at your copy with the environment variable {ENV_VAR}=/path/to/data "
        f"or the config field data.root (load_dataset(..., root=...)); see shared/data/{info.name}/SOURCE.md "
        "for how the arrays are packed."
    )


def find_bundled_dir(name: str, root: str | Path | None = None) -> Path:
    """The directory holding dataset ``name`` (``<root>/<name>/`` or ``root`` itself if it holds the files)."""
    info = BUNDLED[name]
    try:
        base = resolve_data_root(root)
    except DataError as e:
        raise DataError(_missing_message(info, [], str(e).split(".")[0])) from None
    looked = [base / name, base]
    for d in looked:
        if all((d / f).is_file() for f in _REQUIRED):
            return d
    raise DataError(_missing_message(info, looked, "missing files"))


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as e:
        raise DataError(f"cannot read {path}: {type(e).__name__}: {e}") from None


def load_bundled(name: str, root: str | Path | None = None, *, image_size: int | None = None) -> RawData:
    """Load a bundled dataset into memory (train = everything if the source has no split)."""
    if name not in BUNDLED:
        raise DataError(f"unknown bundled dataset '{name}'; available: {sorted(BUNDLED)}")
    info = BUNDLED[name]
    d = find_bundled_dir(name, root)
    arr = _load_npy(d / "images.npy", mmap=True)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[3] not in (1, 3)):
        raise DataError(f"{d / 'images.npy'}: expected uint8 [N, H, W] or [N, H, W, 1|3]; got {arr.dtype} {arr.shape}")
    # One copy from the memory map straight into NCHW layout.
    nchw = arr[:, None] if arr.ndim == 3 else arr.transpose(0, 3, 1, 2)
    images = torch.from_numpy(np.array(nchw, order="C"))
    labels = torch.from_numpy(_load_npy(d / "labels.npy").astype(np.int64)).reshape(-1)
    classes = [ln.strip() for ln in (d / "classes.txt").read_text().splitlines() if ln.strip()]
    files_path = d / "files.txt"
    files = files_path.read_text().splitlines() if files_path.is_file() else None
    if labels.numel() != images.shape[0]:
        raise DataError(f"{d}: images.npy has {images.shape[0]} rows but labels.npy has {labels.numel()}")
    if files is not None and len(files) != images.shape[0]:
        files = None  # names are a convenience for messages only
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
        raise DataError(f"{d / 'labels.npy'}: label {int(labels.max())} is outside the {len(classes)} classes "
                        "of classes.txt")
    if image_size is not None:
        images = resize_uint8(images, image_size)
    full = ImageSet(images, labels, files)
    meta = {"root": str(d), "source": info.source}
    if not info.has_split:
        return RawData(full, None, classes, info=meta)
    split_path = d / "split.npy"
    if not split_path.is_file():
        raise DataError(_missing_message(info, [d], "split.npy missing"))
    split = torch.from_numpy(_load_npy(split_path).astype(np.int64)).reshape(-1)
    if split.numel() != len(full) or not bool(((split == 0) | (split == 1)).all()):
        raise DataError(f"{split_path}: expected {len(full)} values of 0 (train) / 1 (test)")
    train = full.subset(torch.nonzero(split == 0).flatten())
    test = full.subset(torch.nonzero(split == 1).flatten())
    return RawData(train, test, classes, info={**meta, "split": "official (split.npy)"})
