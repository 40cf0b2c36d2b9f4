"""Running one sweep cell: the pieces every scheduler shares.

A *cell* is one run directory ``SWEEP/cells/<slug>`` trained from one config. A *cell runner*
(:data:`CellRunner`) trains a config into a directory; :func:`train_in_process` is the one metapeft
uses. :func:`run_cell` wraps a runner so that a failure is recorded (``error.txt``) and returned as a
:class:`CellOutcome`, never raised. *Schedulers* decide where and when cells run and all call
:func:`run_cell`: the local loop in :mod:`.sweep`, Ray Tune in :mod:`.ray_scheduler`, the Optuna
loop in :mod:`.hpo` — so a cell behaves the same under each of them.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..atomic import atomic_write_text
from ..config import RunConfig

CellRunner = Callable[[RunConfig, Path, bool], None]  # (config, run dir, quiet) -> trains the cell


def train_in_process(cfg: RunConfig, run_dir: Path, quiet: bool) -> None:
    """Train the cell in this process; ``resume=True`` continues a half-finished cell."""
    from ..train import Trainer

    Trainer(cfg, run_dir, resume=True, quiet=quiet).run()


@dataclass
class CellOutcome:
    slug: str
    status: str      # done | skipped | failed
    seconds: float
    error: str | None = None


def run_cell(slug: str, cfg: RunConfig, run_dir: Path, *, verbose: bool = False,
             runner: CellRunner | None = None) -> CellOutcome:
    """Train one cell into ``run_dir``; a failure is written to ``error.txt`` and returned, not raised."""
    tick = time.perf_counter()
    try:
        (runner or train_in_process)(cfg, run_dir, not verbose)
        (run_dir / "error.txt").unlink(missing_ok=True)
        return CellOutcome(slug, "done", time.perf_counter() - tick)
    except Exception as e:  # one diverged or broken cell must not lose the rest of the sweep
        atomic_write_text(run_dir / "error.txt", traceback.format_exc())
        return CellOutcome(slug, "failed", time.perf_counter() - tick, f"{type(e).__name__}: {e}")


def describe(outcome: CellOutcome, run_dir: Path) -> str:
    if outcome.status == "failed":
        return f"FAILED ({outcome.error}); see {run_dir / 'error.txt'}"
    return f"done in {outcome.seconds:.1f} s"


def with_shared_prefix_cache(cfg: RunConfig, out: Path) -> RunConfig:
    """Cells share cached frozen-prefix tokens in ``SWEEP/prefix_cache`` unless the config names a place."""
    if cfg.train.prefix_cache_dir:
        return cfg
    return replace(cfg, train=replace(cfg.train, prefix_cache_dir=str((Path(out) / "prefix_cache").resolve())))
