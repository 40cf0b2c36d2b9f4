"""CIFAR-100 in its python pickle format (``cifar-100-python/{train,test,meta}``), and EuroSAT.

Torchvision downloads either set only when ``download=True`` is passed and a network exists.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from .formats_folder import load_imagefolder
from .imageset import ImageSet, RawData
from .roots import ENV_VAR, DataError, resolve_data_root

__all__ = ["load_cifar100", "load_eurosat", "read_cifar_pickle"]

_CIFAR_SOURCE = ("CIFAR-100, Krizhevsky 2009 (https://www.cs.toronto.edu/~kriz/cifar.html; "
                 "torchvision.datasets.CIFAR100 downloads it)")


def read_cifar_pickle(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR-100 batch file -> (uint8 [N, 3, 32, 32], fine labels [N])."""
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="latin1")
        data, labels = d["data"], d["fine_labels"]
    except FileNotFoundError:
        raise DataError(f"CIFAR-100 file not found: {path}") from None
    except Exception as e:
        raise DataError(f"cannot read CIFAR-100 pickle {path}: {type(e).__name__}: {e}") from None
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != len(labels):
        raise DataError(f"{path}: expected 'data' [N, 3072] uint8 and N fine_labels; "
                        f"got {data.shape}, {len(labels)} labels")
    # Rows are R(1024) G(1024) B(1024), each row-major 32x32: that is already CHW.
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.as_tensor(labels, dtype=torch.long)


def _find_cifar_dir(root: Path) -> Path | None:
    for d in (root, root / "cifar-100-python", root / "cifar100" / "cifar-100-python", root / "cifar100"):
        if (d / "train").is_file() and (d / "test").is_file() and (d / "meta").is_file():
            return d
    return None


def load_cifar100(root: str | Path | None = None, *, image_size: int | None = None, download: bool = False) -> RawData:
    """CIFAR-100 train (50,000) / test (10,000) from ``<root>/cifar-100-python`` (or ``root`` itself)."""
    base = resolve_data_root(root)
    d = _find_cifar_dir(base)
    if d is None and download:
        try:
            import torchvision

            torchvision.datasets.CIFAR100(str(base), train=True, download=True)
        except Exception as e:
            raise DataError(f"CIFAR-100 download into {base} failed ({type(e).__name__}: {e}); "
                            f"fetch {_CIFAR_SOURCE} by hand") from None
        d = _find_cifar_dir(base)
    if d is None:
        raise DataError(
            f"CIFAR-100 not found under {base}: expected cifar-100-python/{{train,test,meta}} (python pickle version). "
            f"Source: {_CIFAR_SOURCE}. Pass root=DIR / data.root or set {ENV_VAR}; "
            "download=True fetches it when a network is available."
        )
    try:
        with open(d / "meta", "rb") as f:
            classes = list(pickle.load(f, encoding="latin1")["fine_label_names"])
    except Exception as e:
        raise DataError(f"cannot read CIFAR-100 meta file {d / 'meta'}: {type(e).__name__}: {e}") from None
    parts = []
    for split in ("train", "test"):
        x, y = read_cifar_pickle(d / split)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(classes)):
            raise DataError(f"{d / split}: label {int(y.max())} is outside the {len(classes)} classes in meta")
        if image_size is not None:
            from .decode import resize_uint8

            x = resize_uint8(x, image_size)
        parts.append(ImageSet(x, y))
    # LIFT's CIFAR-100-LT puts class 0 at the head (n_i by class index); keep that as this set's default.
    return RawData(parts[0], parts[1], classes, defaults={"class_order": "index"},
                   info={"root": str(d), "split": "official (train/test pickles)"})


def load_eurosat(root: str | Path | None = None, *, image_size: int | None = None, download: bool = False,
                 cache_dir: str | Path | None = None) -> RawData:
    """EuroSAT RGB (10 classes, 27,000 64x64 images) as torchvision stores it: ``<root>/eurosat/2750/<class>/*.jpg``.

    The source has no test split, so ``load_dataset`` makes a seeded stratified one.
    """
    base = resolve_data_root(root)
    candidates = [base / "eurosat" / "2750", base / "2750", base / "eurosat"]
    tree = next((c for c in candidates if c.is_dir() and any(p.is_dir() for p in c.iterdir())), None)
    if tree is None and download:
        try:
            import torchvision

            torchvision.datasets.EuroSAT(str(base), download=True)
        except Exception as e:
            raise DataError(f"EuroSAT download into {base} failed ({type(e).__name__}: {e})") from None
        tree = base / "eurosat" / "2750"
    if tree is None:
        raise DataError(
            f"EuroSAT not found under {base}: expected eurosat/2750/<class>/*.jpg. Source: Helber et al., "
            "EuroSAT, IEEE JSTARS 2019 (torchvision.datasets.EuroSAT downloads it with download=True). "
            f"Pass root=DIR / data.root or set {ENV_VAR}."
        )
    raw = load_imagefolder(tree, image_size=image_size, cache_dir=cache_dir, layout="single")
    raw.info["source"] = "EuroSAT (Helber et al. 2019)"
    return raw
