"""ImageFolder trees: ``root/train/<class>/*`` + ``root/test/<class>/*`` (or one ``root/<class>/*`` tree)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .decode import IMAGE_EXTENSIONS, cached, decode_files, file_stamp
from .imageset import ImageSet, RawData, harmonise_splits
from .lazy import LazyImages, decoded_bytes, default_ram_budget_gb
from .roots import DataError

__all__ = ["load_imagefolder", "scan_tree", "decode_to_imageset"]


def _images_in(d: Path) -> list[Path]:
    """Image files anywhere under a class folder (like torchvision's ImageFolder), hidden ones skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(d, followlinks=True):
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        out += [Path(dirpath) / n for n in filenames
                if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(out)


def scan_tree(tree: Path) -> tuple[list[str], list[Path], list[str]]:
    """Class names (sorted subdirectory names), image files (searched recursively), each file's class name."""
    if not tree.is_dir():
        raise DataError(f"image folder not found: {tree}")
    class_dirs = sorted(p for p in tree.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{tree} has no class subdirectories (expected {tree}/<class>/<image files>)")
    files: list[Path] = []
    owners: list[str] = []
    for cd in class_dirs:
        imgs = _images_in(cd)
        files += imgs
        owners += [cd.name] * len(imgs)
    return [cd.name for cd in class_dirs], files, owners


def decode_to_imageset(files: list[Path], labels: list[int], *, image_size: int | None, cache_dir: str | Path | None,
                       names: list[str] | None = None, percentile: float | None = None,
                       ram_budget_gb: float | None = None) -> ImageSet:
    """Decode ``files`` once (thread pool), optionally through the memory-mapped cache; or, when the decoded
    set would exceed ``ram_budget_gb`` (null: a quarter of the RAM), keep the files and decode on demand."""
    names = [str(f) for f in files] if names is None else names
    budget = default_ram_budget_gb() if ram_budget_gb is None else ram_budget_gb
    if files and decoded_bytes(files, image_size) > budget * 2**30:
        return ImageSet(LazyImages(files, image_size, percentile=percentile), torch.as_tensor(labels, dtype=torch.long),
                        names)
    key = ["imageset-v2", image_size, percentile, *file_stamp(files)]  # v2: 16/32-bit images rescaled, not clipped
    images = cached(cache_dir, key, lambda: decode_files(files, image_size=image_size, names=names,
                                                         percentile=percentile))
    return ImageSet(images, torch.as_tensor(labels, dtype=torch.long), names)


def load_imagefolder(
    root: str | Path | None,
    *,
    image_size: int | None = None,
    cache_dir: str | Path | None = None,
    layout: str = "auto",
    train_dir: str = "train",
    test_dir: str | None = None,
    percentile: float | None = None,
    ram_budget_gb: float | None = None,
) -> RawData:
    """Load an ImageFolder dataset.

    Args:
        root: dataset directory.
        image_size: resize every image to this square size on decode (needed when sizes differ).
        cache_dir: keep the decoded uint8 arrays there as memory-mapped ``.npy`` (keyed by files + size).
        layout: ``"split"`` = ``root/train/<class>`` and ``root/test/<class>`` (or ``val``); ``"single"`` =
            one ``root/<class>`` tree (``load_dataset`` then splits it, stratified and seeded);
            ``"auto"`` = ``"split"`` if ``root/<train_dir>`` exists, else ``"single"``.
        train_dir: name of the training subdirectory.
        test_dir: name of the test subdirectory (default: ``test``, else ``val``).
        percentile: 16/32-bit images (SAR, TIFF) are rescaled to 8 bit by their [p, 100 - p] percentile
            range instead of their min..max (a few bright outliers then do not darken the rest).
        ram_budget_gb: a split whose decoded size exceeds this (default: a quarter of the RAM) is not
            decoded up front but read lazily, batch by batch, in DataLoader workers (same batches).

    Classes are the sorted subdirectory names of the training tree; a test class that is not among
    them, or a training class without images, is an error.
    """
    if root is None:
        raise DataError("imagefolder needs root=DIR (DIR/train/<class>/*, DIR/test/<class>/*)")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"imagefolder root not found: {root}")
    if layout == "auto":
        layout = "split" if (root / train_dir).is_dir() else "single"
    if layout not in ("split", "single"):
        raise DataError(f"imagefolder layout must be 'auto', 'split' or 'single'; got {layout!r}")
    train_tree = root / train_dir if layout == "split" else root
    classes, files, owners = scan_tree(train_tree)
    index = {c: i for i, c in enumerate(classes)}
    counts = {c: owners.count(c) for c in classes}
    empty = [c for c in classes if counts[c] == 0]
    if empty:
        raise DataError(f"class(es) {empty} have no images in {train_tree} (extensions {', '.join(IMAGE_EXTENSIONS)})")
    if percentile is not None and not 0 <= percentile < 50:
        raise DataError(f"imagefolder percentile = {percentile}: allowed 0 <= p < 50")
    train = decode_to_imageset(files, [index[o] for o in owners], image_size=image_size, cache_dir=cache_dir,
                               percentile=percentile, ram_budget_gb=ram_budget_gb)
    info = {"root": str(root), "layout": layout}
    if layout == "single":
        return RawData(train, None, classes, info=info)
    names = [test_dir] if test_dir else ["test", "val"]
    test_tree = next((root / n for n in names if (root / n).is_dir()), None)
    if test_tree is None:
        raise DataError(f"no test folder in {root}: expected {' or '.join(str(root / n) for n in names)} "
                        "(or use layout='single' to split one tree)")
    test_classes, test_files, test_owners = scan_tree(test_tree)
    unknown = [c for c in test_classes if c not in index]
    if unknown:
        raise DataError(f"test class folder(s) {unknown} in {test_tree} are outside the class list "
                        f"of {train_tree}: {classes}")
    test = decode_to_imageset(test_files, [index[o] for o in test_owners], image_size=image_size, cache_dir=cache_dir,
                              percentile=percentile, ram_budget_gb=ram_budget_gb)
    train, test = harmonise_splits(train, test)
    return RawData(train, test, classes, info={**info, "split": f"official ({train_dir}/, {test_tree.name}/)"})

