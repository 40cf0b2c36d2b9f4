"""``metapeft report DIR``: figures + ``report.md`` for a run, a grid sweep, or an Optuna study.

The kind is detected from the directory: ``sweep.yaml`` (kind grid / optuna) or ``metrics.json``
(a single run). Figures are PNGs next to ``report.md`` (default ``DIR/report/``).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import yaml

from ..errors import MissingFileError
from .aggregate import md_table
from .hpo import TEST_FALLBACK, VAL_KEY
from .manifest import read_manifest
from .plots import line_panels
from .report_run import run_sections
from .report_sweep import sweep_sections
from .results import read_results


def detect(path: Path) -> str:
    """``grid``, ``optuna`` or ``run``; raises MissingFileError for anything else."""
    manifest = read_manifest(path)
    if manifest is not None:
        return str(manifest["kind"])
    if (path / "metrics.json").is_file() and (path / "config.yaml").is_file():
        return "run"
    raise MissingFileError(f"{path} is neither a finished run (metrics.json + config.yaml) nor a sweep (sweep.yaml)")


def write_report(path: str | Path, out: str | Path | None = None, *, features: bool = True) -> Path:
    """Write the figures and ``report.md``; returns the path of ``report.md``.

    ``features`` (runs only): add the feature-geometry sections, which rebuild the model and run it on
    the test set before and after fine-tuning (a forward pass over the test set, twice).
    """
    path = Path(path)
    kind = detect(path)
    out = Path(out) if out is not None else path / "report"
    out.mkdir(parents=True, exist_ok=True)
    if kind == "run":
        parts = [f"# Run report: `{path}`", *run_sections(path, out)]
        if features:
            from .report_features import feature_sections

            parts += feature_sections(path, out)
        parts.append(_config_block((path / "config.yaml").read_text()))
    elif kind == "grid":
        manifest = read_manifest(path) or {}
        parts = [f"# Sweep report: `{path}`", _sweep_header(manifest, read_results(path)),
                 *sweep_sections(manifest["grid"], read_results(path), out), _base_block(manifest)]
    elif kind == "optuna":
        manifest = read_manifest(path) or {}
        parts = [f"# Optuna study: `{path}`", _optuna_section(path, manifest, out), _base_block(manifest)]
    else:
        raise MissingFileError(f"{path}: unknown sweep kind {kind!r}")
    report = out / "report.md"
    report.write_text("\n\n".join(p for p in parts if p) + "\n")
    return report


def _config_block(text: str, title: str = "Configuration") -> str:
    return f"## {title}\n\n```yaml\n{text.rstrip()}\n```"


def _base_block(manifest: dict[str, Any]) -> str:
    how = f"`{manifest.get('config_file') or '(defaults)'}`"
    if manifest.get("overrides"):
        how += " with " + " ".join(f"`{o}`" for o in manifest["overrides"])
    body = yaml.safe_dump(manifest.get("base") or {}, sort_keys=False, allow_unicode=True)
    return f"{_config_block(body, 'Base configuration')}\n\nFrom {how}; each cell/trial adds its own values."


def _sweep_header(manifest: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    status: dict[str, int] = {}
    for r in rows:
        status[r.get("status", "?")] = status.get(r.get("status", "?"), 0) + 1
    grid = md_table(["key", "values"],
                    [[f"`{k}`", ", ".join(f"`{v}`" for v in vs)] for k, vs in manifest["grid"].items()])
    preset = f" (preset `{manifest['preset']}`)" if manifest.get("preset") else ""
    counts = ", ".join(f"{n} {s}" for s, n in status.items())
    return f"Grid{preset}: {len(rows)} cells ({counts}). Results: `results.csv`, `results.json`.\n\n{grid}"


def _optuna_section(path: Path, manifest: dict[str, Any], out: Path) -> str:
    trials_csv = path / "optuna_trials.csv"
    if not trials_csv.is_file():
        raise MissingFileError(f"{trials_csv} is missing: run `metapeft sweep --optuna N --out {path}` first")
    with trials_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"]]
    lines = [f"TPE search over LoRA positions, block range `last:k` (depth {manifest.get('depth')}) and scale; "
             f"{len(rows)} trials ({len(done)} complete). Objective: `{VAL_KEY}` (balanced accuracy on a stratified "
             "hold-out of the training set)."]
    if any(r["objective"] == TEST_FALLBACK for r in done):
        lines += ["", "**WARNING: some trials had no validation metrics and were scored on the TEST set "
                      "(`balanced`). Their ranking is test-set selection; do not report it as a result.**"]
    if done:
        values = [float(r["value"]) for r in done]
        numbers = [int(r["number"]) for r in done]
        best = [max(values[: i + 1]) for i in range(len(values))]
        line_panels(numbers, {"objective per trial": {"trial": [100 * v for v in values],
                                                      "best so far": [100 * v for v in best]}},
                    out / "optuna_history.png", xlabel="trial", ylabel="objective (%)")
        lines += ["", "![optimisation history](optuna_history.png)"]
        top = sorted(done, key=lambda r: -float(r["value"]))[:20]
        cols = ["number", "positions", "blocks", "scale", "value", "test_overall", "test_balanced", "test_few",
                "wall_time_s", "epochs"]
        lines += ["", "Best trials (accuracies in %; test columns for information only, never for selection):", "",
                  md_table(cols, [[_cell(r, c) for c in cols] for r in top])]
        if (path / "best_config.yaml").is_file():
            lines += ["", "Best trial's full config: `best_config.yaml` (retrain with `metapeft train --config`)."]
    return "\n".join(lines)


def _cell(r: dict[str, str], col: str) -> str:
    v = r.get(col, "")
    if v in ("", None):
        return "–"
    if col in ("value", "test_overall", "test_balanced", "test_few"):
        return f"{100 * float(v):.1f}"
    if col in ("scale", "wall_time_s"):
        f = float(v)
        return f"{f:.3g}" if math.isfinite(f) else v
    return v
