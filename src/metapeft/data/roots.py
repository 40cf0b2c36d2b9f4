"""Where datasets live: the data root resolution and the one error type for bad input."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import MetapeftError

ENV_VAR = "METAPEFT_DATA"

__all__ = ["DataError", "ENV_VAR", "resolve_data_root", "candidate_roots"]


class DataError(MetapeftError, ValueError):
    """Bad or missing input data. The message alone says what is wrong and how to fix it.

    The CLI prints the message and exits with status 2.
    """


def _repo_root() -> Path | None:
    """The checkout this file lives in: the first parent that holds a ``pyproject.toml``."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return None


def candidate_roots() -> list[tuple[str, Path]]:
    """Fallback data roots, in the order they are tried, each with a label for error messages."""
    out: list[tuple[str, Path]] = []
    repo = _repo_root()
    if repo is not None:
        out.append(("sibling of the checkout", repo.parent / "shared" / "data"))
    out.append(("relative to the working directory", Path.cwd().parent / "shared" / "data"))
    return out


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the directory that holds the datasets.

    Order: the explicit ``root`` (config ``data.root``), then the ``METAPEFT_DATA`` environment
    variable, then ``<checkout>/../shared/data``, then ``../shared/data`` relative to the working
    directory. An explicit root or environment value is returned as given (the loader then checks
    the files it needs and names them); the fallbacks are used only if they exist.

    Raises:
        DataError: nothing given and no fallback directory exists.
    """
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    tried = candidate_roots()
    for _, path in tried:
        if path.is_dir():
            return path
    listing = "\n".join(f"  - {p} ({why})" for why, p in tried)
    raise DataError(
        "no data root found. Point metapeft at your datasets with the config field `data.root` "
        f"(or `root=` in load_dataset) or the environment variable {ENV_VAR}. Tried:\n{listing}"
    )
