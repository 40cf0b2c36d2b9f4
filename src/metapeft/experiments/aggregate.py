"""Seed averaging and pivots over sweep result rows (plain dicts from ``results.json``)."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

Row = dict[str, Any]


def finished(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.get("status") == "done"]


def mean_std(values: Sequence[Any]) -> tuple[float, float, int]:
    """Mean, sample std (0 for one value) and count over the non-missing values."""
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not xs:
        return math.nan, math.nan, 0
    return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0, len(xs)


def group(rows: list[Row], keys: Sequence[str]) -> dict[tuple, list[Row]]:
    """Rows by their values of ``keys``, in first-seen order."""
    out: dict[tuple, list[Row]] = {}
    for r in rows:
        out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return out


def pivot(rows: list[Row], row_of: Callable[[Row], Any], col_of: Callable[[Row], Any], row_labels: Sequence[Any],
          col_labels: Sequence[Any], metric: str, scale: float = 100.0) -> np.ndarray:
    """Mean of ``metric`` (× scale) per (row, col) cell — the mean over seeds; NaN where nothing finished."""
    cells: dict[tuple, list[Any]] = {}
    for r in rows:
        cells.setdefault((row_of(r), col_of(r)), []).append(r.get(metric))
    out = np.full((len(row_labels), len(col_labels)), np.nan)
    for i, rl in enumerate(row_labels):
        for j, cl in enumerate(col_labels):
            m, _, n = mean_std(cells.get((rl, cl), []))
            if n:
                out[i, j] = m * scale
    return out


def log2_scale(row: Row) -> float | None:
    s = row.get("scale")
    return None if not s or s <= 0 else round(math.log2(s), 3)


def fmt_pm(values: Sequence[Any], scale: float = 100.0, digits: int = 1) -> str:
    """``93.1 ± 0.4`` (mean ± std over seeds), ``93.1`` for one value, ``–`` when missing."""
    m, s, n = mean_std(values)
    if not n:
        return "–"
    return f"{m * scale:.{digits}f}" + (f" ± {s * scale:.{digits}f}" if n > 1 else "")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("–" if v is None else str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
