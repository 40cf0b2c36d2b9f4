"""DOTA object crops (15 DOTA-v1.0 classes) from list lines naming an image and a horizontal box.

Two line forms are accepted (official ``dota_{train,val}_idx.txt`` style first):

- ``val/small-vehicle/P0053_763_349_787_375.png 10``: the crop file's stem is ``<image_id>_<x1>_<y1>_<x2>_<y2>``.
  If the crop file exists under root it is used as is; otherwise the box is cut from the full image
  ``<root>/<first path part>/images/<image_id>.<ext>`` or ``<root>/<images_dir>/<image_id>.<ext>``.
- ``P0053 763_349_787_375 10``: image id, box, label; the box is cut from the full image
  (``<root>/<images_dir>/``, ``<root>/images/``, ``<root>/`` or any ``<root>/*/images/``).

Every crop is resized to ``image_size`` (default 64). Many/medium/few come from ``groups/dota.yaml``.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .decode import pil_to_array, read_image, stack_arrays, worker_threads
from .formats_list import read_classes_file
from .groups import shipped_classes, shipped_groups
from .imageset import ImageSet, RawData, harmonise_splits
from .roots import DataError, resolve_data_root

__all__ = ["load_dota", "parse_dota_line"]

_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def parse_dota_line(line: str, where: str) -> tuple[str | None, str, tuple[int, int, int, int], int]:
    """-> (crop relpath or None, image id, box (x1, y1, x2, y2), label)."""
    parts = line.split()
    try:
        if len(parts) == 2:
            rel, label = parts[0], int(parts[1])
            stem = Path(rel).stem
            image_id, *coords = stem.rsplit("_", 4)
        elif len(parts) == 3:
            rel, image_id, label = None, parts[0], int(parts[2])
            coords = parts[1].split("_")
        else:
            raise ValueError
        if len(coords) != 4:
            raise ValueError
        x1, y1, x2, y2 = (int(float(c)) for c in coords)
    except ValueError:
        raise DataError(f"{where}: expected 'dir/<image_id>_x1_y1_x2_y2.png label' or 'image_id x1_y1_x2_y2 label', "
                        f"got {line!r}") from None
    if x2 <= x1 or y2 <= y1:
        raise DataError(f"{where}: empty box {x1}_{y1}_{x2}_{y2} (need x2 > x1 and y2 > y1)")
    return rel, image_id, (x1, y1, x2, y2), label


def _find_full_image(root: Path, rel: str | None, image_id: str, images_dir: str | None) -> Path | None:
    dirs = [root / images_dir] if images_dir else []
    if rel is not None and len(Path(rel).parts) > 1:
        dirs.append(root / Path(rel).parts[0] / "images")
    dirs += [root / "images", root]
    dirs += sorted(d for d in root.glob("*/images") if d.is_dir())  # DOTA image ids are unique across splits
    for d in dirs:
        for ext in _EXTS:
            p = d / f"{image_id}{ext}"
            if p.is_file():
                return p
    return None


def _read_split(root: Path, list_path: Path, num_classes: int, image_size: int, images_dir: str | None) -> ImageSet:
    if not list_path.is_file():
        raise DataError(f"DOTA list file not found: {list_path}")
    jobs: dict[Path, list[tuple[int, tuple[int, int, int, int] | None]]] = defaultdict(list)
    labels, names = [], []
    for no, line in enumerate(list_path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{list_path}:{no}"
        rel, image_id, box, label = parse_dota_line(line, where)
        if not 0 <= label < num_classes:
            raise DataError(f"{where}: label {label} is outside the class list (0..{num_classes - 1})")
        i = len(labels)
        labels.append(label)
        if rel is not None and (root / rel).is_file():
            jobs[root / rel].append((i, None))  # ready-made crop
            names.append(str(root / rel))
            continue
        full = _find_full_image(root, rel, image_id, images_dir)
        if full is None:
            raise DataError(f"{where}: neither the crop {root / rel if rel else '(none)'} nor a full image "
                            f"'{image_id}.png|jpg|tif' under {root} (images/ or <split>/images/) exists")
        jobs[full].append((i, box))
        names.append(f"{full}[{box[0]}_{box[1]}_{box[2]}_{box[3]}]")
    if not labels:
        raise DataError(f"DOTA list file {list_path} has no entries")

    def crop_all(path: Path) -> list[tuple[int, np.ndarray]]:
        img = read_image(path)  # a full image is decoded once for all of its boxes
        out = []
        for i, box in jobs[path]:
            if box is None:
                out.append((i, pil_to_array(img, image_size)))
                continue
            x1, y1, x2, y2 = max(box[0], 0), max(box[1], 0), min(box[2], img.width), min(box[3], img.height)
            if x2 <= x1 or y2 <= y1:
                raise DataError(f"{names[i]}: box lies outside the {img.width}x{img.height} image")
            out.append((i, pil_to_array(img.crop((x1, y1, x2, y2)), image_size)))
        return out

    arrays: list[np.ndarray | None] = [None] * len(labels)
    with ThreadPoolExecutor(worker_threads(len(jobs))) as pool:
        for chunk in pool.map(crop_all, list(jobs)):
            for i, a in chunk:
                arrays[i] = a
    return ImageSet(stack_arrays(arrays, names), torch.as_tensor(labels, dtype=torch.long), names)


def load_dota(
    root: str | Path | None = None,
    *,
    train_list: str = "dota_train_idx.txt",
    test_list: str = "dota_val_idx.txt",
    classes_file: str | None = None,
    images_dir: str | None = None,
    image_size: int | None = 64,
) -> RawData:
    """DOTA object-crop classification; test = the official val crops (the DOTA test labels are not public)."""
    if root is None:
        root = resolve_data_root(None) / "dota"
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"DOTA not found at {root}: expected {train_list}, {test_list} and the crops or full images "
                        "(HF dataset doem1997/rs_lt, dota.tar). Pass root=DIR / data.root or set METAPEFT_DATA.")
    if image_size is None:
        image_size = 64  # crops come in every size; a fixed size is required
    if classes_file is not None:
        classes = read_classes_file(root / classes_file)
    elif (root / "classnames.txt").is_file():
        classes = read_classes_file(root / "classnames.txt")
    else:
        classes = shipped_classes("dota")
    train = _read_split(root, root / train_list, len(classes), image_size, images_dir)
    test = _read_split(root, root / test_list, len(classes), image_size, images_dir)
    train, test = harmonise_splits(train, test)
    return RawData(train, test, classes, groups=shipped_groups("dota", classes),
                   info={"root": str(root), "split": f"official ({train_list}, {test_list})"})
