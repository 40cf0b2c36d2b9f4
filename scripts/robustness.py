"""Robustness to the starting LR and scale, and the fair hold-out pick (issue 17, docs/results.md).

    .venv/bin/python scripts/robustness.py --method LoRA=runs/robust_plain \
        --method "MetaPEFT stepsize=runs/robust_stepsize" --select runs/select_plain \
        --reference runs/tuned_plain --plot docs/figures/robustness.png

Every run directory under ``DIR/cells/*`` (or DIR itself) is one (start lr, α/r, seed). For each method and
start the table gives balanced / few test accuracy (mean ± std over seeds) and the paired gap to the
reference: the fairly tuned plain run, i.e. the ``--select`` sweep's cell with the best *hold-out*
balanced accuracy (``train.val_holdout``, never test), retrained with fresh seeds under ``--reference``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from metapeft.experiments.aggregate import fmt_pm, mean_std


def run_dirs(root: Path) -> list[Path]:
    if (root / "metrics.json").is_file():
        return [root]
    return sorted(p.parent for p in root.glob("cells/*/metrics.json"))


def record(run_dir: Path) -> dict:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    m = json.loads((run_dir / "metrics.json").read_text())
    peft, train = cfg["peft"], cfg["train"]
    rank = peft.get("rank") or 1
    scale = (peft.get("alpha") if peft.get("alpha") is not None else rank) / rank
    val = m.get("val") or {}
    return {"lr": float(train["lr"]), "scale": float(scale), "seed": int(train["seed"]),
            "head_lr_mult": float(train.get("head_lr_mult") or 1.0), "balanced": m["balanced"], "few": m["few"],
            "val_balanced": val.get("balanced"), "wall": m.get("run", {}).get("wall_time_s") or 0.0,
            "name": run_dir.name}


def pick_on_holdout(rows: list[dict]) -> dict:
    """The selection sweep's best cell by hold-out balanced accuracy (ties: the first)."""
    scored = [r for r in rows if r["val_balanced"] is not None]
    if not scored:
        raise SystemExit("error: the --select runs have no hold-out metrics (train.val_holdout > 0)")
    return max(scored, key=lambda r: r["val_balanced"])


def by_seed(rows: list[dict]) -> dict[int, dict]:
    return {r["seed"]: r for r in rows}


def table(methods: dict[str, list[dict]], reference: list[dict] | None) -> list[str]:
    ref = by_seed(reference) if reference else {}
    lines = ["| method | start lr | α/r | seeds | balanced | few | Δ bal vs tuned (per seed) | Δ few vs tuned |",
             "|---|---|---|---|---|---|---|---|"]
    for label, rows in methods.items():
        starts = sorted({(r["lr"], r["scale"]) for r in rows})
        for lr, scale in starts:
            cell = [r for r in rows if (r["lr"], r["scale"]) == (lr, scale)]
            deltas = {k: [100 * (r[k] - ref[r["seed"]][k]) for r in cell if r["seed"] in ref] for k in ("balanced", "few")}
            fmt = {k: (f"{mean_std(v)[0]:+.1f} (" + " / ".join(f"{d:+.1f}" for d in v) + ")") if v else "–"
                   for k, v in deltas.items()}
            lines.append(f"| {label} | {lr:g} | {scale:g} | {len(cell)} | {fmt_pm([r['balanced'] for r in cell])} | "
                         f"{fmt_pm([r['few'] for r in cell])} | {fmt['balanced']} | {fmt['few']} |")
    return lines


def plot(methods: dict[str, list[dict]], reference: list[dict] | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for ax, key in zip(axes, ("balanced", "few")):
        for label, rows in methods.items():
            for scale in sorted({r["scale"] for r in rows}):
                lrs = sorted({r["lr"] for r in rows if r["scale"] == scale})
                stats = [mean_std([r[key] for r in rows if (r["lr"], r["scale"]) == (lr, scale)]) for lr in lrs]
                ax.errorbar(lrs, [100 * m for m, _, _ in stats], yerr=[100 * s for _, s, _ in stats], capsize=3,
                            marker="o", label=f"{label}, α/r {scale:g}")
        if reference:
            m, s, _ = mean_std([r[key] for r in reference])
            ax.axhspan(100 * (m - s), 100 * (m + s), color="0.85", zorder=0)
            ax.axhline(100 * m, color="0.4", ls="--", label="tuned plain (hold-out pick)")
        ax.set_xscale("log")
        ax.set_xlabel("starting train.lr")
        ax.set_ylabel(f"{key} test accuracy %")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", action="append", default=[], metavar="LABEL=DIR", help="runs of one method (repeat a LABEL to pool several dirs)")
    ap.add_argument("--select", type=Path, help="hold-out selection sweep of the plain baseline")
    ap.add_argument("--reference", type=Path, help="the picked config retrained with fresh seeds")
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args(argv)
    methods: dict[str, list[dict]] = {}
    for item in args.method:
        label, _, d = item.partition("=")
        methods.setdefault(label, []).extend(record(p) for p in run_dirs(Path(d)))  # a label may repeat
    if args.select:
        sel = [record(p) for p in run_dirs(args.select)]
        best = pick_on_holdout(sel)
        cost = sum(r["wall"] for r in sel)
        print(f"hold-out pick: lr {best['lr']:g}, α/r {best['scale']:g}, head_lr_mult {best['head_lr_mult']:g} "
              f"(val balanced {100 * best['val_balanced']:.1f}; {len(sel)} selection runs, {cost / 60:.0f} min)")
        top = max(sel, key=lambda r: r["balanced"])
        print(f"upper bound, picked on TEST: lr {top['lr']:g}, α/r {top['scale']:g}, head_lr_mult "
              f"{top['head_lr_mult']:g} ({100 * top['balanced']:.1f})")
    reference = [record(p) for p in run_dirs(args.reference)] if args.reference else None
    if reference:
        print(f"tuned plain, retrained: balanced {fmt_pm([r['balanced'] for r in reference])}, "
              f"few {fmt_pm([r['few'] for r in reference])} ({len(reference)} seeds)")
    print("\n".join(table(methods, reference)))
    if args.plot:
        plot(methods, reference, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
