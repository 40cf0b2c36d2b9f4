"""One results row per run directory, and the sweep's ``results.csv`` / ``results.json``."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import MissingFileError
from ..atomic import atomic_write_text
from .grid import Cell

METRICS = ("overall", "balanced", "many", "medium", "few", "macro_f1")
RUN_FIELDS = ("wall_time_s", "epochs", "steps", "skipped_steps")
EXTRA = ("val_balanced", "scale", "alpha", "trainable", "peft_params", "gamma_mean", "gamma_min", "gamma_max")


def val_metric(metrics: dict[str, Any], key: str = "balanced") -> float | None:
    """A model-selection metric from the training-set hold-out (``train.val_holdout``): ``metrics["val"][key]``,
    or a flat ``val_<key>``; None when the run had no hold-out."""
    nested = metrics.get("val")
    if isinstance(nested, dict) and nested.get(key) is not None:
        return float(nested[key])
    flat = metrics.get(f"val_{key}")
    return None if flat is None else float(flat)


def run_status(run_dir: Path) -> str:
    """done (metrics.json), failed (error.txt from the sweep), started (a checkpoint), or pending."""
    if (run_dir / "metrics.json").is_file():
        return "done"
    if (run_dir / "error.txt").is_file():
        return "failed"
    return "started" if (run_dir / "checkpoints").is_dir() else "pending"


def run_row(run_dir: Path, cfg: RunConfig, cell: Cell | None = None, name: str | None = None) -> dict[str, Any]:
    """Grid values + headline metrics + cost + γ summary of one run (metrics empty until it is done)."""
    row: dict[str, Any] = {"cell": name or run_dir.name, **(cell or {}), "status": run_status(run_dir)}
    row.update({k: None for k in (*METRICS, *RUN_FIELDS, *EXTRA)})
    row["scale"], row["alpha"] = cfg.peft.scale, cfg.peft.alpha
    mpath = run_dir / "metrics.json"
    if mpath.is_file():
        m = json.loads(mpath.read_text())
        run = m.get("run", {})
        row.update({k: m.get(k) for k in METRICS})
        row["val_balanced"] = val_metric(m)
        row.update({k: run.get(k) for k in RUN_FIELDS})
        trainable = run.get("trainable", {})
        row["trainable"], row["peft_params"] = trainable.get("trainable"), trainable.get("peft")
    gpath = run_dir / "gamma.json"
    if gpath.is_file():
        values = list(json.loads(gpath.read_text()).get("gamma", {}).values())
        if values:
            row.update(gamma_mean=sum(values) / len(values), gamma_min=min(values), gamma_max=max(values))
    return row


def write_results(out: Path, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    """Write ``results.json`` (list of rows) and ``results.csv`` (same columns; empty = missing)."""
    out = Path(out)
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns)
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(r.get(k)) for k in columns})
    atomic_write_text(out / "results.csv", buf.getvalue())
    atomic_write_text(out / "results.json", json.dumps(rows, indent=1))
    return out / "results.csv", out / "results.json"


def read_results(out: Path) -> list[dict[str, Any]]:
    path = Path(out) / "results.json"
    if not path.is_file():
        raise MissingFileError(f"{path} is missing: run `metapeft sweep --out {out}` first")
    return json.loads(path.read_text())


def _csv_value(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return v
