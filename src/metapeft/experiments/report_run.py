"""Single-run reports: headline metrics, the learned γ map and its trajectories, per-class accuracy
sorted by training frequency (the long tail, left to right), and the training curves."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunConfig
from .aggregate import md_table
from .plots import class_bars, gamma_traces, heatmap, line_panels

HEADLINE = ("overall", "balanced", "many", "medium", "few", "macro_f1")


def run_sections(run_dir: Path, fig_dir: Path) -> list[str]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cfg = RunConfig.load(run_dir / "config.yaml")
    parts = [_headline(metrics, cfg)]
    gamma_path = run_dir / "gamma.json"
    if gamma_path.is_file():
        parts.append(_gamma(json.loads(gamma_path.read_text()), cfg, fig_dir))
    parts.append(_per_class(metrics, cfg, fig_dir))
    if (run_dir / "history.csv").is_file():
        parts.append(_history(run_dir / "history.csv", metrics, fig_dir))
    return parts


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _headline(m: dict[str, Any], cfg: RunConfig) -> str:
    run = m.get("run", {})
    tr = run.get("trainable", {})
    lines = ["## Test metrics", "", md_table([f"{k} %" for k in HEADLINE], [[_pct(m.get(k)) for k in HEADLINE]])]
    val = m.get("val") if isinstance(m.get("val"), dict) else {k[4:]: v for k, v in m.items() if k.startswith("val_")}
    if val:
        lines += ["", f"Model-selection hold-out ({getattr(cfg.train, 'val_holdout', '?')} of the training set, "
                      "never trained on):",
                  "", md_table([f"{k} %" for k in val], [[_pct(v) for v in val.values()]])]
    lines += ["", f"Method {cfg.peft.method}, positions {list(cfg.peft.resolved_positions)}, blocks {cfg.peft.blocks}, "
                  f"scale α/r = {cfg.peft.scale:g}, meta {'on' if cfg.meta.enabled else 'off'}. "
                  f"{run.get('epochs')} epochs, {run.get('steps')} steps ({run.get('skipped_steps', 0)} skipped), "
                  f"{run.get('wall_time_s', 0):.0f} s; trainable {tr.get('trainable')} parameters "
                  f"({tr.get('percent_of_backbone', 0):.2f} % of the backbone; γ: {tr.get('gamma')})."]
    return "\n".join(lines)


def _gamma(g: dict[str, Any], cfg: RunConfig, fig_dir: Path) -> str:
    values: dict[str, float] = g.get("gamma", {})
    if not values:
        return "## γ\n\nThis run has no γ modulators."
    blocks, positions = g["blocks"], g["positions"]
    grid = np.array([[values.get(f"{b}.{p}", np.nan) for p in positions] for b in blocks], dtype=float)
    learned = "learned" if cfg.meta.enabled else "fixed (meta off: γ stays at its initial value)"
    heatmap(grid, [str(b) for b in blocks], positions, fig_dir / "gamma_map.png", title=f"γ, {learned}",
            xlabel="position", ylabel="block", cbar_label="γ", fmt="{:.2f}", cmap="coolwarm", mark_best=False,
            center=cfg.peft.gamma_init)
    table = [[b, *(f"{v:.3f}" if np.isfinite(v) else "–" for v in grid[i])] for i, b in enumerate(blocks)]
    lines = [f"## γ ({learned})", "", "![γ map, block × position](gamma_map.png)", "",
             md_table(["block", *positions], table)]
    if g.get("below_threshold"):
        lines += ["", f"Sites with |γ| < {g.get('threshold')} (effectively not inserted): "
                      + ", ".join(g["below_threshold"])]
    trace = g.get("trace") or []
    if trace:
        sites = list(values)
        steps = [t["step"] for t in trace]
        traces = {s: [t["gamma"][i] for t in trace] for i, s in enumerate(sites)}
        gamma_traces(steps, traces, fig_dir / "gamma_trace.png", title=f"γ over {len(trace)} meta steps")
        lines += ["", "![γ trajectories](gamma_trace.png)"]
    return "\n".join(lines)


def _per_class(m: dict[str, Any], cfg: RunConfig, fig_dir: Path) -> str:
    from ..train.pipeline import load_run_dataset

    counts = [int(c) for c in load_run_dataset(cfg).train_class_counts.tolist()]
    names = m.get("class_names") or [str(i) for i in range(len(counts))]
    group_of = {c: g for g, cs in (m.get("class_groups") or {}).items() for c in cs}
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    class_bars([names[c] for c in order], [m["per_class"][c] for c in order], [counts[c] for c in order],
               [group_of.get(c, "") for c in order], fig_dir / "per_class.png",
               title="per-class test accuracy, classes by training images (head → tail)")
    table = [[names[c], group_of.get(c, ""), counts[c], _pct(m["per_class"][c])] for c in order]
    return "\n".join(["## Per-class accuracy", "", "![per-class accuracy](per_class.png)", "",
                      "<details><summary>table</summary>", "",
                      md_table(["class", "group", "train images", "test acc %"], table), "", "</details>"])


def _history(path: Path, final: dict[str, Any], fig_dir: Path) -> str:
    """Loss, lr, γ range and test accuracy per epoch; the last epoch's test point is the final evaluation."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return ""
    col = lambda k: [float(r[k]) if r.get(k) not in (None, "") else None for r in rows]  # noqa: E731
    x = col("epoch")
    panels: dict[str, dict[str, list]] = {"train loss": {"loss": col("train_loss")}, "learning rate": {"lr": col("lr")}}
    if "gamma_mean" in rows[0]:
        panels["γ"] = {k: col(f"gamma_{k}") for k in ("mean", "min", "max")}
    tested = [k for k in ("overall", "balanced", "many", "medium", "few") if k in rows[0]]
    if tested:
        acc = {k: [None if v is None else 100 * v for v in col(k)] for k in tested}
        for k, ys in acc.items():
            ys[-1] = None if final.get(k) is None else 100 * final[k]
        panels["test accuracy"] = acc
    line_panels(x, panels, fig_dir / "history.png", xlabel="epoch")
    return "## Training curves\n\n![training curves](history.png)"
