"""Sweep reports: Fig. 1(c)-style position × block heatmaps, Fig. 1(d)-style scale curves, rank × scale
maps with the best scale per rank, and a mean ± std table for any grid. Figures average over seeds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .aggregate import Row, finished, fmt_pm, group, log2_scale, md_table, mean_std, pivot
from .cellconfig import SCALE_KEY
from .grid import SEED_KEY, cell_slug
from .plots import POSITION_COLORS, heatmap, line_panels

POS, BLK, RANK, ALPHA = "peft.positions", "peft.blocks", "peft.rank", "peft.alpha"
GROUP_METRICS = ("overall", "many", "medium", "few")
TABLE_METRICS = ("overall", "balanced", "many", "medium", "few", "macro_f1")


def sweep_sections(grid: dict[str, list[str]], rows: list[Row], fig_dir: Path) -> list[str]:
    """Markdown sections (figures written into ``fig_dir``) for whatever analyses the grid supports."""
    done, keys, parts = finished(rows), set(grid), []
    scale_key = SCALE_KEY if SCALE_KEY in keys else ALPHA if ALPHA in keys else None
    if {POS, BLK} <= keys:
        parts.append(_position_block(grid, done, fig_dir))
    if POS in keys and scale_key:
        parts.append(_position_scale(grid, done, fig_dir, scale_key))
    if RANK in keys and scale_key:
        parts.append(_rank_scale(grid, done, fig_dir, scale_key))
    parts.append(results_table(grid, rows))
    return parts


def _facets(grid: dict[str, list[str]], rows: list[Row], used: set[str]) -> list[tuple[str, str, list[Row]]]:
    """One (file suffix, title, rows) per combination of the grid keys that a figure does not show."""
    others = [k for k in grid if k not in used and k != SEED_KEY]
    if not others:
        return [("", "", rows)]
    out = []
    for combo, rs in group(rows, others).items():
        cell = dict(zip(others, map(str, combo)))
        out.append(("__" + cell_slug(cell), ", ".join(f"{k}={v}" for k, v in cell.items()), rs))
    return out


def _img(name: str, alt: str) -> str:
    return f"![{alt}]({name})"


def _position_block(grid: dict[str, list[str]], rows: list[Row], fig_dir: Path) -> str:
    lines = ["## Position × block (Fig. 1c)", "",
             "One PEFT module at a single (position, block) site; colour = test accuracy (%), mean over seeds; "
             "red box = best cell. Blocks are 0-based."]
    positions, blocks = grid[POS], grid[BLK]
    block_labels = [b.strip("[] ") for b in blocks]
    for suffix, title, rs in _facets(grid, rows, {POS, BLK}):
        if title:
            lines += ["", f"### {title}"]
        maps = {m: pivot(rs, lambda r: r[POS], lambda r: r[BLK], positions, blocks, m) for m in GROUP_METRICS}
        for metric, values in maps.items():
            name = f"fig1c_{metric}{suffix}.png"
            heatmap(values, positions, block_labels, fig_dir / name, title=f"{metric} accuracy (%) {title}".strip(),
                    xlabel="block", ylabel="position", cbar_label="%")
            lines += ["", _img(name, f"{metric} accuracy, position × block")]
        if np.isfinite(maps["overall"]).any():
            i, j = np.unravel_index(np.nanargmax(maps["overall"]), maps["overall"].shape)
            lines += ["", f"Best single site (overall, mean over seeds): position {positions[i]}, block "
                          f"{block_labels[j]} ({maps['overall'][i, j]:.1f} %)."]
    return "\n".join(lines)


def _position_scale(grid: dict[str, list[str]], rows: list[Row], fig_dir: Path, scale_key: str) -> str:
    lines = ["## Position × scale (Fig. 1d)", "",
             "x = log2 of the fixed module scale α/r (from each cell's config); mean over seeds."]
    positions = grid[POS]
    for suffix, title, rs in _facets(grid, rows, {POS, scale_key}):
        xs = sorted({x for x in map(log2_scale, rs) if x is not None})
        if not xs:
            continue
        panels = {}
        for metric in ("overall", "balanced", "few"):
            values = pivot(rs, lambda r: r[POS], log2_scale, positions, xs, metric)
            panels[f"{metric} {title}".strip()] = {p: list(values[i]) for i, p in enumerate(positions)}
        name = f"fig1d{suffix}.png"
        line_panels(xs, panels, fig_dir / name, xlabel="log2 scale", ylabel="test accuracy (%)",
                    colors=POSITION_COLORS)
        overall = pivot(rs, lambda r: r[POS], log2_scale, positions, xs, "overall")
        table = [[p, *(_num(v) for v in overall[i])] for i, p in enumerate(positions)]
        lines += [*(["", f"### {title}"] if title else []), "", _img(name, "accuracy vs log2 scale per position"), "",
                  "Overall accuracy (%):", "", md_table(["position", *(f"2^{x:g}" for x in xs)], table)]
    return "\n".join(lines)


def _rank_scale(grid: dict[str, list[str]], rows: list[Row], fig_dir: Path, scale_key: str) -> str:
    lines = ["## Rank × scale", "", "Mean over seeds; x = log2 of the module scale α/r."]
    ranks = grid[RANK]
    for suffix, title, rs in _facets(grid, rows, {RANK, scale_key}):
        xs = sorted({x for x in map(log2_scale, rs) if x is not None})
        if not xs:
            continue
        best_rows, series = [], {"overall": [], "balanced": []}
        for metric in ("overall", "balanced"):
            values = pivot(rs, lambda r: r[RANK], log2_scale, ranks, xs, metric)
            name = f"rank_scale_{metric}{suffix}.png"
            heatmap(values, ranks, [f"{x:g}" for x in xs], fig_dir / name,
                    title=f"{metric} accuracy (%) {title}".strip(), xlabel="log2 scale", ylabel="rank", cbar_label="%")
            lines += ["", _img(name, f"{metric}, rank × scale")]
            for i in range(len(ranks)):
                row = values[i]
                j = max(range(len(xs)), key=lambda j: -math.inf if math.isnan(row[j]) else row[j])
                series[metric].append(None if math.isnan(row[j]) else xs[j])
                if metric == "overall":
                    best_rows.append([ranks[i], _exp(series[metric][-1]), _num(row[j])])
                else:
                    best_rows[i] += [_exp(series[metric][-1]), _num(row[j])]
        log2_ranks = [math.log2(float(r)) for r in ranks]
        name = f"rank_best_scale{suffix}.png"
        line_panels(log2_ranks, {f"best scale per rank {title}".strip(): series}, fig_dir / name,
                    xlabel="log2 rank", ylabel="best log2 scale")
        lines += ["", _img(name, "best scale per rank"), "", "Best scale per rank:", "",
                  md_table(["rank", "best scale (overall)", "overall %", "best scale (balanced)", "balanced %"],
                           best_rows)]
    return "\n".join(lines)


def results_table(grid: dict[str, list[str]], rows: list[Row]) -> str:
    """Every grid setting: accuracies in % as mean ± std over seeds, cost, mean γ; failed cells listed."""
    keys = [k for k in grid if k != SEED_KEY]
    body = []
    for combo, rs in group(finished(rows), keys).items():
        wall, _, _ = mean_std([r.get("wall_time_s") for r in rs])
        gamma, _, ng = mean_std([r.get("gamma_mean") for r in rs])
        body.append([*combo, len(rs), *(fmt_pm([r.get(m) for r in rs]) for m in TABLE_METRICS),
                     f"{wall:.0f}", rs[0].get("trainable"), f"{gamma:.3f}" if ng else "–"])
    header = [*keys, "n", *(f"{m} %" for m in TABLE_METRICS), "wall s", "trainable", "mean γ"]
    lines = ["## Results (mean ± std over seeds)", "", md_table(header, body)]
    bad = [r for r in rows if r.get("status") != "done"]
    if bad:
        lines += ["", "Not finished: " + ", ".join(f"`{r['cell']}` ({r['status']})" for r in bad)]
    return "\n".join(lines)


def _num(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def _exp(x: float | None) -> str:
    return "–" if x is None else f"2^{x:g}"
