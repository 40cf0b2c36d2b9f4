"""Optuna and MetaPEFT against the grid oracle: accuracy reached and compute spent (docs/results.md).

    .venv/bin/python scripts/hpo_vs_grid.py --grid runs/fig1d runs/rank_scale \
        --optuna runs/hpo_equal_s0 runs/hpo_equal_s1 --method MetaPEFT-LoRA=runs/meta_first_order \
        --method LoRA=runs/pilot_plain

The oracle is the grid cell with the best *test* balanced accuracy (selected on test, so an upper bound
no real user can pick); its cost is the whole grid. An Optuna study picks its trial by the training-set
hold-out objective and reports that trial's test accuracy; its cost is the sum over its trials. A
``--method LABEL=DIR`` row averages the seeds of the finished runs under DIR/cells;
``LABEL=DIR:GLOB`` keeps only the cells whose name matches GLOB (e.g. ``DIR:meta.lr=1.0__*``). "of oracle" is the row's
balanced accuracy divided by the oracle's; "of grid span" places it between the grid's worst cell (0)
and the oracle (1).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from metapeft.experiments.aggregate import fmt_pm, md_table, mean_std


def run_record(run_dir: Path) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    run = m.get("run", {})
    return {"balanced": m["balanced"], "few": m["few"], "epochs": run.get("epochs") or 0,
            "wall": run.get("wall_time_s") or 0.0, "name": run_dir.name}


def grid_cells(sweeps: list[Path]) -> list[dict]:
    return [run_record(p.parent) for s in sweeps for p in sorted(s.glob("cells/*/metrics.json"))]


def optuna_row(study: Path) -> tuple[dict, dict]:
    """(best trial by the study's objective, totals over all of the study's finished trials)."""
    with open(study / "optuna_trials.csv", newline="") as f:
        done = [r for r in csv.DictReader(f) if r["state"] == "COMPLETE" and r["value"]]
    if not done:
        raise SystemExit(f"{study}: no finished trial in optuna_trials.csv")
    best = max(done, key=lambda r: float(r["value"]))
    pick = {"balanced": float(best["test_balanced"]), "few": float(best["test_few"]),
            "name": f"{best['positions']} {best['blocks']} scale {float(best['scale']):.3g}",
            "objective": best["objective"], "val": float(best["value"])}
    totals = {"trials": len(done), "epochs": sum(int(r["epochs"] or 0) for r in done),
              "wall": sum(float(r["wall_time_s"] or 0) for r in done)}
    return pick, totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", nargs="+", type=Path, required=True, help="sweep directories forming the grid")
    ap.add_argument("--optuna", nargs="*", type=Path, default=[], help="Optuna study directories")
    ap.add_argument("--method", action="append", default=[], metavar="LABEL=DIR[:GLOB]",
                    help="seeded runs, DIR/cells/GLOB (default *)")
    args = ap.parse_args()

    cells = grid_cells(args.grid)
    if not cells:
        raise SystemExit("no finished grid cell")
    oracle = max(cells, key=lambda c: c["balanced"])
    worst = min(c["balanced"] for c in cells)

    def share(b: float) -> tuple[str, str]:
        return f"{100 * b / oracle['balanced']:.1f} %", f"{(b - worst) / (oracle['balanced'] - worst):.2f}"

    rows = [["grid oracle: " + oracle["name"], f"{100 * oracle['balanced']:.1f}", f"{100 * oracle['few']:.1f}",
             len(cells), sum(c["epochs"] for c in cells), f"{sum(c['wall'] for c in cells) / 60:.1f}", "100 %", "1.00"]]
    for study in args.optuna:
        pick, tot = optuna_row(study)
        rows.append([f"Optuna {study.name}: {pick['name']}", f"{100 * pick['balanced']:.1f}", f"{100 * pick['few']:.1f}",
                     tot["trials"], tot["epochs"], f"{tot['wall'] / 60:.1f}", *share(pick["balanced"])])
    for spec in args.method:
        label, _, where = spec.partition("=")
        path, _, pattern = where.partition(":")
        runs = [run_record(p.parent) for p in sorted(Path(path).glob(f"cells/{pattern or '*'}/metrics.json"))]
        if not runs:
            raise SystemExit(f"{where}: no finished run")
        b = [r["balanced"] for r in runs]
        rows.append([f"{label} ({len(runs)} seeds)", fmt_pm(b), fmt_pm([r["few"] for r in runs]), 1,
                     runs[0]["epochs"], f"{mean_std([r['wall'] for r in runs])[0] / 60:.1f}",
                     *share(mean_std(b)[0])])
    print(md_table(["selection", "test balanced", "test few", "runs", "epochs", "wall min", "of oracle",
                    "of grid span"], rows))


if __name__ == "__main__":
    main()
