"""Grid sweeps: every cell is an ordinary run directory under ``DIR/cells/<slug>``.

Resumable by construction: a cell with ``metrics.json`` is skipped, any other cell is (re)started with
``Trainer(resume=True)``, which continues from its last checkpoint or starts fresh. Results are
re-gathered into ``DIR/results.{csv,json}`` after every cell, so a killed sweep still has a table.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..config import ConfigError, RunConfig
from ..atomic import atomic_write_text
from .cellconfig import build_cell_config, resolve_base, split_derived
from .grid import Axis, Cell, expand, unique_slugs
from .manifest import check_compatible, read_manifest, write_manifest
from .results import run_row, write_results

Backend = Callable[[RunConfig, Path, bool], None]


def local_backend(cfg: RunConfig, run_dir: Path, quiet: bool) -> None:
    """Run the cell in this process (sequentially); ``resume=True`` continues a half-finished cell."""
    from ..train import Trainer

    Trainer(cfg, run_dir, resume=True, quiet=quiet).run()


SWEEP_BACKENDS = ("local", "ray")


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
    _, fixed = split_derived(spec.overrides)   # e.g. --set peft.scale=4: α follows each cell's rank
    out = []
    for slug, cell in zip(unique_slugs(cells), cells):
        try:
            out.append((slug, cell, build_cell_config(spec.base, {**fixed, **cell})))
        except ConfigError as e:
            raise ConfigError(f"grid cell {slug}: {e}") from None
    return out


def with_shared_prefix_cache(cfg: RunConfig, out: Path) -> RunConfig:
    """Cells share cached frozen-prefix tokens in ``SWEEP/prefix_cache`` unless the config names a place."""
    if cfg.train.prefix_cache_dir:
        return cfg
    return replace(cfg, train=replace(cfg.train, prefix_cache_dir=str((Path(out) / "prefix_cache").resolve())))


def run_cell(slug: str, cfg: RunConfig, run_dir: Path, *, verbose: bool = False,
             runner: Backend | None = None) -> CellOutcome:
    """Train one cell into ``run_dir``; a failure is written to ``error.txt`` and returned, not raised.

    Backends share this, so a cell behaves the same whether it runs in this process or in a Ray worker.
    """
    tick = time.perf_counter()
    try:
        (runner or local_backend)(cfg, run_dir, not verbose)
        (run_dir / "error.txt").unlink(missing_ok=True)
        return CellOutcome(slug, "done", time.perf_counter() - tick)
    except Exception as e:  # one diverged or broken cell must not lose the rest of the sweep
        atomic_write_text(run_dir / "error.txt", traceback.format_exc())
        return CellOutcome(slug, "failed", time.perf_counter() - tick, f"{type(e).__name__}: {e}")


def describe(outcome: CellOutcome, run_dir: Path) -> str:
    if outcome.status == "failed":
        return f"FAILED ({outcome.error}); see {run_dir / 'error.txt'}"
    return f"done in {outcome.seconds:.1f} s"


def run_sweep(spec: SweepSpec, out: Path, *, backend: str = "local", verbose: bool = False,
              echo: Callable[[str], None] | None = None, ray_options: dict[str, Any] | None = None,
              ) -> list[CellOutcome]:
    """Run the missing cells, then gather the results. Failed cells are recorded, not fatal.

    ``local`` runs cells one after another in this process; ``ray`` runs them as Ray Tune trials
    (``ray_options``: see :func:`metapeft.experiments.ray_backend.run_cells_on_ray`).
    """
    out = Path(out)
    say = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if backend not in SWEEP_BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; available: {', '.join(SWEEP_BACKENDS)}")
    if backend == "ray":
        from .ray_backend import check_ray_options

        check_ray_options(**(ray_options or {}))
    cells = [(slug, cell, with_shared_prefix_cache(cfg, out)) for slug, cell, cfg in plan(spec)]
    check_compatible(out, "grid", spec.base)
    write_manifest(out, spec.to_dict())
    outcomes: dict[str, CellOutcome] = {}
    pending = []
    for i, (slug, cell, cfg) in enumerate(cells, 1):
        if (out / "cells" / slug / "metrics.json").is_file():
            outcomes[slug] = CellOutcome(slug, "skipped", 0.0)
            say(f"[{i}/{len(cells)}] {slug}: done before, skipped")
        else:
            pending.append((slug, cfg))
    if backend == "ray" and pending:
        from .ray_backend import run_cells_on_ray

        for o in run_cells_on_ray(pending, out, verbose=verbose, **(ray_options or {})):
            outcomes[o.slug] = o
            say(f"[ray] {o.slug}: {describe(o, out / 'cells' / o.slug)}")
    else:
        for j, (slug, cfg) in enumerate(pending, 1):
            run_dir = out / "cells" / slug
            o = outcomes[slug] = run_cell(slug, cfg, run_dir, verbose=verbose)
            say(f"[{j}/{len(pending)}] {slug}: {describe(o, run_dir)}")
            gather(out, cells)
    gather(out, cells)
    return [outcomes[slug] for slug, _, _ in cells]


def gather(out: Path, cells: list[tuple[str, Cell, RunConfig]]) -> list[dict[str, Any]]:
    """Re-read every cell directory into ``results.csv`` / ``results.json`` (one row per cell)."""
    rows = [run_row(out / "cells" / slug, cfg, cell, slug) for slug, cell, cfg in cells]
    write_results(out, rows)
    return rows
