"""The one atomic writer: all-or-nothing replacement, no temp files left, ordinary file mode."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file

from metapeft.atomic import atomic_save_safetensors, atomic_write, atomic_write_text


def test_text_and_safetensors_land_whole_with_ordinary_mode(tmp_path):
    p = atomic_write_text(tmp_path / "a" / "x.json", "{}\n")
    assert p.read_text() == "{}\n"
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    t = {"w": torch.arange(6.0).view(2, 3).t()}  # non-contiguous: saved as a contiguous copy
    q = atomic_save_safetensors(t, tmp_path / "w.safetensors", metadata={"k": "v"})
    assert torch.equal(load_file(str(q))["w"], t["w"])
    assert sorted(f.name for f in tmp_path.rglob("*") if f.is_file()) == ["w.safetensors", "x.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    p = atomic_write_text(tmp_path / "x.txt", "old")

    def broken(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(p, broken)
    assert p.read_text() == "old" and [f.name for f in tmp_path.iterdir()] == ["x.txt"]
