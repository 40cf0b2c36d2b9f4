"""Atomic file writes: a temp file in the destination's directory, fsync, then ``os.replace``.

Readers (a resumed run, a concurrent sweep cell, a report) see the old file or the new one, never
a half-written one, and after the call both the data and the rename are on disk (file and folder fsynced). The one place metapeft writes result files from; torch-free at import.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's or a directory's data to disk (a directory: so a rename inside it persists)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` to fill a temp file beside ``path``, then move it into place.

    The file gets the usual ``0o644``-under-umask mode (``mkstemp`` alone would leave it ``0o600``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)  # the rename itself survives an OS crash only once its directory is flushed
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
    return atomic_write(path, write)


def atomic_save_safetensors(tensors: dict, path: str | os.PathLike[str], metadata: dict[str, str] | None = None
                            ) -> Path:
    """``safetensors.torch.save_file`` of contiguous copies, atomically."""
    from safetensors.torch import save_file

    return atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp,
                                                    metadata=metadata))
