"""Bi-level learning of the γ modulators: hypergradients, the outer loop, the γ report."""

from .hypergradient import first_order, neumann, unrolled
from .learner import MetaLearner, MetaStepResult
from .report import GammaReport, gamma_report, prune_sites

__all__ = ["GammaReport", "MetaLearner", "MetaStepResult", "first_order", "gamma_report", "neumann",
           "prune_sites", "unrolled"]
