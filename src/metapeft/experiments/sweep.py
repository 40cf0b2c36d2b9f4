"""Grid sweeps: every cell is an ordinary run directory under ``DIR/cells/<slug>``.

Resumable by construction: a cell with ``metrics.json`` is skipped, any other cell is (re)started with
``Trainer(resume=True)``, which continues from its last checkpoint or starts fresh. Results are
re-gathered into ``DIR/results.{csv,json}`` after every cell, so a killed sweep still has a table.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import ConfigError, RunConfig
from ..train.checkpoint import atomic_write_text
from .cellconfig import build_cell_config, resolve_base
from .grid import Axis, Cell, expand, unique_slugs
from .manifest import check_compatible, read_manifest, write_manifest
from .results import run_row, write_results

Backend = Callable[[RunConfig, Path, bool], None]


def local_backend(cfg: RunConfig, run_dir: Path, quiet: bool) -> None:
    """Run the cell in this process (sequentially); ``resume=True`` continues a half-finished cell."""
    from ..train import Trainer

    Trainer(cfg, run_dir, resume=True, quiet=quiet).run()


BACKENDS: dict[str, Backend] = {"local": local_backend}


@dataclass
class SweepSpec:
    """What to sweep: a resolved base config (file + fixed overrides) and the grid axes."""

    base: dict[str, Any]
    axes: list[Axis]
    config_file: str | None = None
    overrides: list[str] = field(default_factory=list)
    preset: str | None = None

    @classmethod
    def create(cls, config: str | Path | None, overrides: list[str], axes: list[Axis],
               preset: str | None = None) -> "SweepSpec":
        return cls(resolve_base(config, overrides), axes, str(config) if config else None, list(overrides), preset)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "grid", "preset": self.preset, "config_file": self.config_file, "overrides": self.overrides,
                "grid": {a.key: list(a.values) for a in self.axes}, "cells": len(self.cells()), "base": self.base}

    @classmethod
    def load(cls, out: Path) -> "SweepSpec":
        data = read_manifest(out)
        if data is None or data["kind"] != "grid":
            raise ConfigError(f"{out} holds no grid sweep to resume (no sweep.yaml of kind grid)")
        axes = [Axis(k, tuple(str(v) for v in vs)) for k, vs in data["grid"].items()]
        return cls(data["base"], axes, data.get("config_file"), data.get("overrides") or [], data.get("preset"))

    def cells(self) -> list[Cell]:
        return expand(self.axes)


@dataclass
class CellOutcome:
    slug: str
    status: str      # done | skipped | failed
    seconds: float
    error: str | None = None


def plan(spec: SweepSpec) -> list[tuple[str, Cell, RunConfig]]:
    """(slug, cell, config) of every cell; builds them all first so a bad value fails before any training."""
    cells = spec.cells()
    out = []
    for slug, cell in zip(unique_slugs(cells), cells):
        try:
            out.append((slug, cell, build_cell_config(spec.base, cell)))
        except ConfigError as e:
            raise ConfigError(f"grid cell {slug}: {e}") from None
    return out


def run_sweep(spec: SweepSpec, out: Path, *, backend: str = "local", verbose: bool = False,
              echo: Callable[[str], None] | None = None) -> list[CellOutcome]:
    """Run the missing cells in order, then gather the results. Failed cells are recorded, not fatal."""
    out = Path(out)
    say = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    cells = plan(spec)
    check_compatible(out, "grid", spec.base)
    write_manifest(out, spec.to_dict())
    outcomes = []
    for i, (slug, cell, cfg) in enumerate(cells, 1):
        run_dir = out / "cells" / slug
        tag = f"[{i}/{len(cells)}] {slug}"
        if (run_dir / "metrics.json").is_file():
            outcomes.append(CellOutcome(slug, "skipped", 0.0))
            say(f"{tag}: done before, skipped")
            continue
        tick = time.perf_counter()
        try:
            BACKENDS[backend](cfg, run_dir, not verbose)
            (run_dir / "error.txt").unlink(missing_ok=True)
            outcome = CellOutcome(slug, "done", time.perf_counter() - tick)
            say(f"{tag}: done in {outcome.seconds:.1f} s")
        except Exception as e:  # one diverged or broken cell must not lose the rest of the sweep
            atomic_write_text(run_dir / "error.txt", traceback.format_exc())
            outcome = CellOutcome(slug, "failed", time.perf_counter() - tick, f"{type(e).__name__}: {e}")
            say(f"{tag}: FAILED ({outcome.error}); see {run_dir / 'error.txt'}")
        outcomes.append(outcome)
        gather(out, cells)
    gather(out, cells)
    return outcomes


def gather(out: Path, cells: list[tuple[str, Cell, RunConfig]]) -> list[dict[str, Any]]:
    """Re-read every cell directory into ``results.csv`` / ``results.json`` (one row per cell)."""
    rows = [run_row(out / "cells" / slug, cfg, cell, slug) for slug, cell, cfg in cells]
    write_results(out, rows)
    return rows
