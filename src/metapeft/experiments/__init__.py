"""Experiments on top of single runs: grid sweeps (with the paper's Fig. 1 presets), an Optuna
baseline over the hyperparameters MetaPEFT learns, and reports (figures + markdown).

Names are imported on first use (PEP 562), so the pure-CSV helpers (``aggregate``, ``results``)
load without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

_EXPORTS = {"Axis": ".grid", "expand": ".grid", "parse_axis": ".grid", "seeds_axis": ".grid",
            "HpoSpec": ".hpo", "run_hpo": ".hpo", "PRESETS": ".presets", "build_preset": ".presets",
            "write_report": ".report", "SweepSpec": ".sweep", "run_sweep": ".sweep"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = attach(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .grid import Axis, expand, parse_axis, seeds_axis  # noqa: F401
    from .hpo import HpoSpec, run_hpo  # noqa: F401
    from .presets import PRESETS, build_preset  # noqa: F401
    from .report import write_report  # noqa: F401
    from .sweep import SweepSpec, run_sweep  # noqa: F401
