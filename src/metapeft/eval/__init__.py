"""Evaluation metrics for long-tailed classification (``compute_metrics`` -> ``Metrics``)."""

from .metrics import Metrics, compute_metrics

__all__ = ["Metrics", "compute_metrics"]
