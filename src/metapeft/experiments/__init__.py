"""Experiments on top of single runs: grid sweeps (with the paper's Fig. 1 presets), an Optuna
baseline over the hyperparameters MetaPEFT learns, and reports (figures + markdown)."""

from .grid import Axis, expand, parse_axis, seeds_axis
from .hpo import HpoSpec, run_hpo
from .presets import PRESETS, build_preset
from .report import write_report
from .sweep import SweepSpec, run_sweep

__all__ = ["PRESETS", "Axis", "HpoSpec", "SweepSpec", "build_preset", "expand", "parse_axis", "run_hpo",
           "run_sweep", "seeds_axis", "write_report"]
