"""Grid sweeps: every cell is an ordinary run directory under ``DIR/cells/<slug>``.

Resumable by construction: a cell with ``metrics.json`` is skipped, any other cell is (re)started with
``Trainer(resume=True)``, which continues from its last checkpoint or starts fresh. Results are
re-gathered into ``DIR/results.{csv,json}`` after every cell, so a killed sweep still has a table.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import ConfigError, RunConfig
from .cellconfig import build_cell_config, resolve_base, split_derived
from .cells import CellOutcome, describe, run_cell, with_shared_prefix_cache
from .grid import Axis, Cell, expand, unique_slugs
from .manifest import check_compatible, read_manifest, write_manifest
from .results import run_row, write_results

SCHEDULERS = ("local", "ray")  # `metapeft sweep --backend`: who runs the cells (see cells.py)


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


def run_sweep(spec: SweepSpec, out: Path, *, scheduler: str = "local", verbose: bool = False,
              echo: Callable[[str], None] | None = None, ray_options: dict[str, Any] | None = None,
              ) -> list[CellOutcome]:
    """Run the missing cells, then gather the results. Failed cells are recorded, not fatal.

    ``scheduler``: ``local`` runs cells one after another in this process; ``ray`` runs them as Ray
    Tune trials (``ray_options``: see :func:`metapeft.experiments.ray_scheduler.run_cells_on_ray`).
    """
    out = Path(out)
    say = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"unknown backend {scheduler!r}; available: {', '.join(SCHEDULERS)}")
    if scheduler == "ray":
        from .ray_scheduler import check_ray_options

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
    if scheduler == "ray" and pending:
        from .ray_scheduler import run_cells_on_ray

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
