"""Figure primitives for reports. Figures are built on ``matplotlib.figure.Figure`` (Agg canvas), never
through pyplot, so reporting does not depend on, or change, a global GUI backend."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

POSITION_COLORS = {"q": "tab:blue", "k": "tab:orange", "v": "tab:green", "out": "tab:red", "mlp1": "tab:purple",
                   "mlp2": "tab:brown", "attn": "tab:pink", "mlp": "tab:olive"}
GROUP_COLORS = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red"}


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _text_color(x: float, diverging: bool) -> str:
    """White on dark cells: the low end of viridis, both saturated ends of a diverging map."""
    dark = abs(x - 0.5) > 0.3 if diverging else x < 0.5
    return "white" if dark else "black"


def heatmap(values: np.ndarray, rows: Sequence[str], cols: Sequence[str], path: Path, *, title: str,
            xlabel: str, ylabel: str, cbar_label: str = "", fmt: str = "{:.1f}", cmap: str = "viridis",
            mark_best: bool = True, center: float | None = None) -> Path:
    """A rows × cols grid; NaN cells stay blank; the best cell gets a red box (as in Fig. 1c)."""
    values = np.asarray(values, dtype=float)
    fig = Figure(figsize=(max(4.0, 0.55 * len(cols) + 2.2), max(2.5, 0.45 * len(rows) + 1.4)))
    ax = fig.add_subplot()
    finite = values[np.isfinite(values)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1e-9
    # a diverging map centred on e.g. γ = 1 shows "weaker than init" vs "stronger than init" at a glance
    if center is not None:
        span = max(abs(lo - center), abs(hi - center), 1e-6)
        lo, hi = center - span, center + span
    norm = Normalize(lo, hi)
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto", norm=norm)
    ax.set_xticks(range(len(cols)), labels=list(cols), rotation=45 if sum(map(len, cols)) > 40 else 0)
    ax.set_yticks(range(len(rows)), labels=list(rows))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title if finite.size else f"{title} (no data)")
    fig.colorbar(im, ax=ax, label=cbar_label)
    if values.size <= 400:
        for (i, j), v in np.ndenumerate(values):
            if math.isfinite(v):
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7,
                        color=_text_color(float(norm(v)), diverging=center is not None))
    if mark_best and finite.size:
        i, j = np.unravel_index(np.nanargmax(values), values.shape)
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    return _save(fig, path)


def line_panels(x: Sequence[float], panels: dict[str, dict[str, Sequence[float]]], path: Path, *, xlabel: str,
                ylabel: str | dict[str, str] = "", colors: dict[str, str] | None = None, marker: str = "o",
                logy: Sequence[str] = ()) -> Path:
    """Side-by-side panels sharing x; each panel maps a series label to y values (NaN = gap)."""
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.4 * nrows))
    for n, (title, series) in enumerate(panels.items()):
        ax = fig.add_subplot(nrows, ncols, n + 1)
        for label, ys in series.items():
            ax.plot(list(x), [np.nan if y is None else y for y in ys], marker=marker, markersize=3, label=label,
                    color=(colors or {}).get(label))
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel.get(title, "") if isinstance(ylabel, dict) else ylabel)
        if title in logy:
            ax.set_yscale("log")
        if all(float(v).is_integer() for v in x):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if 1 < len(series) <= 12:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def gamma_traces(steps: Sequence[int], traces: dict[str, Sequence[float]], path: Path, *, title: str) -> Path:
    """γ per site over meta steps; colour = position, line width grows with depth; one legend entry per position."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    blocks = sorted({int(s.split(".")[0]) for s in traces})
    positions: list[str] = []
    for site, ys in traces.items():
        block, pos = site.split(".", 1)
        depth = blocks.index(int(block)) / max(len(blocks) - 1, 1)
        ax.plot(list(steps), list(ys), color=POSITION_COLORS.get(pos, "gray"), linewidth=0.6 + 1.4 * depth,
                alpha=0.35 + 0.6 * depth)
        positions += [pos] if pos not in positions else []
    ax.axhline(1.0, color="black", linewidth=0.6, linestyle=":")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("meta step")
    ax.set_ylabel("γ")
    ax.set_title(title)
    handles = [Line2D([], [], color=POSITION_COLORS.get(p, "gray"), linewidth=1.6) for p in positions]
    ax.legend(handles, positions, title="position (thicker = deeper)", fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def class_bars(names: Sequence[str], accuracy: Sequence[float | None], train_counts: Sequence[int],
               groups: Sequence[str], path: Path, *, title: str) -> Path:
    """Per-class accuracy (bars, coloured by many/medium/few) in the given order, train count on a twin axis."""
    fig = Figure(figsize=(max(6.0, 0.28 * len(names) + 2), 4.0))
    ax = fig.add_subplot()
    acc = [np.nan if a is None else 100 * a for a in accuracy]
    ax.bar(range(len(names)), acc, color=[GROUP_COLORS.get(g, "gray") for g in groups])
    ax.set_xticks(range(len(names)), labels=list(names), rotation=90, fontsize=7)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    twin = ax.twinx()
    twin.plot(range(len(names)), list(train_counts), color="black", marker=".", linewidth=1)
    twin.set_ylabel("train images")
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in GROUP_COLORS.values()]
    ax.legend(handles, list(GROUP_COLORS), fontsize=7, loc="upper right")
    return _save(fig, path)


def paired_bars(names: Sequence[str], series: dict[str, Sequence[float]], groups: Sequence[str], path: Path, *,
                title: str, ylabel: str) -> Path:
    """Per-class values of two or more models side by side; x tick labels coloured by many/medium/few."""
    fig = Figure(figsize=(max(6.0, 0.32 * len(names) + 2), 4.0))
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        ax.bar(np.arange(len(names)) + (i - (len(series) - 1) / 2) * width, list(values), width, label=label)
    ax.set_xticks(range(len(names)), labels=list(names), rotation=90, fontsize=7)
    for tick, g in zip(ax.get_xticklabels(), groups):
        tick.set_color(GROUP_COLORS.get(g, "black"))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def embedding_panels(panels: dict[str, np.ndarray], labels: np.ndarray, class_group: Sequence[str], path: Path, *,
                     title: str) -> Path:
    """2-D embeddings (one panel per model) of the same points, coloured by the class's many/medium/few group."""
    fig = Figure(figsize=(4.2 * len(panels), 4.0))
    point_groups = np.array([class_group[int(c)] if int(c) < len(class_group) else "" for c in labels])
    for i, (name, xy) in enumerate(panels.items(), 1):
        ax = fig.add_subplot(1, len(panels), i)
        for g, color in GROUP_COLORS.items():
            sel = point_groups == g
            if sel.any():
                ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.5, color=color, label=g)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 1:
            ax.legend(fontsize=7, markerscale=3)
    fig.suptitle(title)
    return _save(fig, path)
