"""List-file datasets: lines ``relpath label`` (Places-LT, ImageNet-LT, FUSRS, the official ``LT_Dataset``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .formats_folder import decode_to_imageset
from .groups import shipped_classes, shipped_groups
from .imageset import RawData, harmonise_splits
from .roots import DataError, resolve_data_root

__all__ = ["read_list_file", "read_classes_file", "load_listfile", "load_fusrs"]


def read_list_file(path: Path, num_classes: int | None = None) -> list[tuple[str, int, int]]:
    """Parse ``relpath label`` lines into (relpath, label, line number). Blank lines and ``#`` comments are skipped.

    The path is everything before the last whitespace-separated token, so paths may contain spaces.
    """
    if not path.is_file():
        raise DataError(f"list file not found: {path}")
    out = []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{path}:{no}: expected 'relpath label', got {line!r}")
        try:
            label = int(parts[1])
        except ValueError:
            raise DataError(f"{path}:{no}: label {parts[1]!r} is not an integer") from None
        if label < 0 or (num_classes is not None and label >= num_classes):
            raise DataError(f"{path}:{no}: label {label} is outside the class list (0..{(num_classes or 0) - 1})")
        out.append((parts[0], label, no))
    if not out:
        raise DataError(f"list file {path} has no entries")
    return out


def read_classes_file(path: Path) -> list[str]:
    """Class names, line i = label i. A line ``id name`` (Places-LT, ImageNet-LT) gives ``name``."""
    if not path.is_file():
        raise DataError(f"classes file not found: {path}")
    names = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            parts = line.split(maxsplit=1)
            names.append(parts[-1])
    if not names:
        raise DataError(f"classes file {path} is empty")
    return names


def _resolve(base: Path, p: str | Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else base / p


def load_listfile(
    root: str | Path | None,
    *,
    train_list: str | Path = "train.txt",
    test_list: str | Path | None = "test.txt",
    classes_file: str | Path | None = None,
    classes: Sequence[str] | None = None,
    image_root: str | Path | None = None,
    image_size: int | None = None,
    cache_dir: str | Path | None = None,
    ram_budget_gb: float | None = None,
) -> RawData:
    """Load images named by list files.

    Args:
        root: dataset directory; list and classes files are relative to it unless absolute.
        train_list / test_list: list files (``relpath label`` per line). ``test_list=None``: no test split
            (``load_dataset`` makes a seeded stratified one).
        classes_file: one class per line (``name`` or ``id name``). Default: ``classes.txt`` or
            ``classnames.txt`` in root if present.
        classes: class names given directly (wins over a classes file).
        image_root: directory the relpaths are relative to (default: root).
        image_size: resize on decode (required when images differ in size).
        cache_dir: memory-mapped cache for the decoded arrays.
        ram_budget_gb: a split above this decoded size (default: a quarter of the RAM) is read lazily.

    Without class names, classes are ``"0" .. str(max label)``.
    """
    if root is None:
        raise DataError("listfile needs root=DIR holding the list files "
                        "(train.txt / test.txt with 'relpath label' lines)")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    img_root = _resolve(root, image_root) if image_root is not None else root
    if classes is None:
        if classes_file is not None:
            classes = read_classes_file(_resolve(root, classes_file))
        else:
            found = next((root / n for n in ("classes.txt", "classnames.txt") if (root / n).is_file()), None)
            classes = read_classes_file(found) if found else None
    num_classes = len(classes) if classes is not None else None
    entries = {"train": read_list_file(_resolve(root, train_list), num_classes)}
    if test_list is not None:
        entries["test"] = read_list_file(_resolve(root, test_list), num_classes)
    if classes is None:
        top = max(lab for rows in entries.values() for _, lab, _ in rows)
        classes = [str(i) for i in range(top + 1)]
    sets = {}
    for split, rows in entries.items():
        lst = _resolve(root, train_list if split == "train" else test_list)
        files = [img_root / rel for rel, _, _ in rows]
        for f, (rel, _, no) in zip(files, rows):
            if not f.is_file():
                raise DataError(f"{lst}:{no}: image file not found: {f}")
        sets[split] = decode_to_imageset(files, [lab for _, lab, _ in rows], image_size=image_size, cache_dir=cache_dir,
                                           ram_budget_gb=ram_budget_gb)
    train, test = sets["train"], sets.get("test")
    if test is not None:
        train, test = harmonise_splits(train, test)
    info = {"root": str(root), "split": "official (list files)" if test is not None else "none in source"}
    return RawData(train, test, list(classes), info=info)


def load_fusrs(root: str | Path | None = None, *, version: str = "v17", **kwargs) -> RawData:
    """FUSRS SAR ship chips: ``train.txt`` / ``test.txt`` with ``L416_2.png 2`` lines (flat image folder).

    Class names default to the official label order (v1.7: cargo, other, fishing, tanker, dredger;
    v2.5: cargo, fishing, tanker, dredger) unless a classes file is present; many/medium/few come from
    the shipped ``groups/fusrs_<version>.yaml`` (no medium group: medium accuracy is NaN).
    """
    version = version.lower().replace(".", "")
    if version not in ("v17", "v25"):
        raise DataError(f"FUSRS version must be 'v17' or 'v25'; got {version!r}")
    if root is None:
        root = resolve_data_root(None) / f"fusrs{version}"
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"FUSRS {version} not found at {root}: expected train.txt, test.txt and the image files "
                        "(HF dataset doem1997/rs_lt, fusrs.tar.gz). Pass root=DIR / data.root or set METAPEFT_DATA.")
    if "classes" not in kwargs and "classes_file" not in kwargs and not any(
            (root / n).is_file() for n in ("classes.txt", "classnames.txt")):
        kwargs["classes"] = shipped_classes(f"fusrs_{version}")
    raw = load_listfile(root, **kwargs)
    raw.groups = shipped_groups(f"fusrs_{version}", raw.classes)
    raw.info["version"] = version
    return raw
