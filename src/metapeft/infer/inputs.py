"""What ``metapeft predict PATH...`` reads: image files, folders (recursive) and list files."""

from __future__ import annotations

from pathlib import Path

from ..data.decode import IMAGE_EXTENSIONS
from ..data.roots import DataError

LIST_SUFFIXES = (".txt", ".lst", ".list", ".csv")


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _from_list(path: Path) -> list[Path]:
    """One image path per line (first comma/whitespace field; '#' comments); relative to the list's folder."""
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        first = line.split(",")[0].strip() if path.suffix.lower() == ".csv" else line.split()[0]
        if first.lower() in ("path", "file", "filename"):  # a header row
            continue
        p = Path(first).expanduser()
        out.append(p if p.is_absolute() else path.parent / p)
    return out


def collect_images(paths: list[str | Path]) -> list[Path]:
    """Expand ``paths`` in order: a folder gives its image files (sorted, recursive), a list file its lines.

    A listed path that is missing stays in the list (it becomes an error row, not a crash); a command-line
    path that does not exist, or no images at all, is bad input (DataError).
    """
    files: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and _is_image(f))
        elif p.is_file() and p.suffix.lower() in LIST_SUFFIXES:
            files += _from_list(p)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"no such file or folder: {p}")
    if not files:
        raise DataError(f"no images found in {', '.join(map(str, paths))} (extensions {', '.join(IMAGE_EXTENSIONS)})")
    return files
