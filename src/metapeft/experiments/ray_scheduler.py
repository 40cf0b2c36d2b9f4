"""A scheduler for sweep cells on Ray Tune: ``metapeft sweep --backend ray``.

Every pending cell becomes one trial of a Tune grid over cell slugs. A trial trains with the same
:func:`~metapeft.experiments.cells.run_cell` as the local scheduler, into the same ``DIR/cells/<slug>``,
so results, resume, failure records and reports do not depend on the backend. Ray only decides
where and how many cells run at once.

Without ``address`` a private Ray instance is started on 127.0.0.1 for the sweep and shut down after
it (nothing listens on other interfaces). With ``address`` (``auto`` or ``HOST:PORT``) the cells go to
an existing cluster; the sweep directory must then be on a filesystem every node sees.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from ..config import ConfigError, RunConfig
from .cells import CellOutcome, run_cell


def _import_ray():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise ConfigError("--backend ray needs Ray Tune, which is not installed: "
                          "pip install 'metapeft[ray]'") from None
    return ray, tune


def check_ray_options(*, address: str | None = None, cpus_per_trial: int = 1, max_concurrent: int | None = None,
                      num_cpus: int | None = None) -> None:
    """Fail before anything is written: Ray missing, or a resource option out of range."""
    if cpus_per_trial < 1:
        raise ConfigError(f"--ray-cpus-per-trial must be >= 1, got {cpus_per_trial}")
    if max_concurrent is not None and max_concurrent < 1:
        raise ConfigError(f"--ray-max-concurrent must be >= 1, got {max_concurrent}")
    if num_cpus is not None and num_cpus < cpus_per_trial:
        raise ConfigError(f"a Ray instance of {num_cpus} CPUs cannot run a trial of {cpus_per_trial} CPUs")
    _import_ray()


def run_cells_on_ray(pending: list[tuple[str, RunConfig]], out: Path, *, verbose: bool = False,
                     address: str | None = None, cpus_per_trial: int = 1, max_concurrent: int | None = None,
                     num_cpus: int | None = None) -> list[CellOutcome]:
    """Run ``(slug, config)`` cells as Ray Tune trials; returns one outcome per cell (failures included).

    ``cpus_per_trial`` is both Ray's resource request and the trial's torch thread count (unless the
    cell sets ``train.threads``), so concurrent trials never oversubscribe the cores Ray hands out.
    ``num_cpus`` sizes a private instance (default: all cores).
    """
    check_ray_options(address=address, cpus_per_trial=cpus_per_trial, max_concurrent=max_concurrent,
                      num_cpus=num_cpus)
    ray, tune = _import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home from an offline sweep
    out = Path(out).resolve()
    configs = {slug: replace(cfg, train=replace(cfg.train, threads=cfg.train.threads or cpus_per_trial))
               for slug, cfg in pending}

    def trial(params: dict) -> dict:
        slug = params["cell"]
        o = run_cell(slug, configs[slug], out / "cells" / slug, verbose=verbose)
        return {"status": o.status, "seconds": o.seconds, "error": o.error or ""}

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=verbose, configure_logging=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     log_to_driver=verbose, configure_logging=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trial, {"cpu": cpus_per_trial}),
            param_space={"cell": tune.grid_search(list(configs))},
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
            run_config=tune.RunConfig(name=time.strftime("sweep-%Y%m%d-%H%M%S"), storage_path=str(out / "ray"),
                                      verbose=1 if verbose else 0),
        )
        outcomes = []
        for result in tuner.fit():
            slug = result.config["cell"]
            m = result.metrics or {}
            if result.error is not None or "status" not in m:  # the worker itself died (OOM, killed)
                outcomes.append(CellOutcome(slug, "failed", 0.0, f"Ray trial error: {result.error}"))
            else:
                outcomes.append(CellOutcome(slug, m["status"], float(m["seconds"]), m["error"] or None))
        return outcomes
    finally:
        if started_here:
            ray.shutdown()
