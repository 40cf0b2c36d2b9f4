"""What γ learns, across seeds: per-position and per-block means, seed-to-seed agreement, trajectories.

    .venv/bin/python scripts/gamma_across_seeds.py RUN_DIR [RUN_DIR ...] [--plot docs/figures/gamma_seeds.png]

Reads each run's ``gamma.json`` (final γ per site and the per-meta-step trace). Prints markdown tables:
final γ averaged per position and per block (mean ± std over seeds), the Pearson correlation of the
72-site γ maps between every pair of seeds (does γ learn the same allocation each time?), and how much
of the map a single uniform scale explains. ``--plot`` draws each position's block-averaged γ against
the meta step, one line per seed.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from metapeft.experiments.aggregate import md_table
from metapeft.experiments.plots import POSITION_COLORS


def load(run: Path) -> dict:
    g = json.loads((run / "gamma.json").read_text())
    sites = list(g["gamma"])
    return {"sites": sites, "final": np.array([g["gamma"][s] for s in sites]),
            "steps": [t["step"] for t in g["trace"]], "trace": np.array([t["gamma"] for t in g["trace"]]),
            "positions": g["positions"], "blocks": g["blocks"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args()
    runs = [load(r) for r in args.runs]
    sites, positions, blocks = runs[0]["sites"], runs[0]["positions"], runs[0]["blocks"]
    if any(r["sites"] != sites for r in runs):
        raise SystemExit("error: the runs have different γ sites")
    finals = np.stack([r["final"] for r in runs])                        # [seeds, sites]
    pos_of = np.array([s.split(".")[1] for s in sites])
    block_of = np.array([int(s.split(".")[0]) for s in sites])

    def by(mask_of, labels):
        rows = []
        for lab in labels:
            per_seed = finals[:, mask_of == lab].mean(axis=1)
            rows.append([lab, f"{per_seed.mean():.2f} ± {per_seed.std(ddof=1) if len(runs) > 1 else 0:.2f}",
                         f"{finals[:, mask_of == lab].min():.2f}", f"{finals[:, mask_of == lab].max():.2f}"])
        return rows

    print(f"{len(runs)} runs, {len(sites)} sites\n")
    print(md_table(["position", "mean γ (± std over seeds)", "min", "max"], by(pos_of, positions)), "\n")
    print(md_table(["block", "mean γ (± std over seeds)", "min", "max"], by(block_of, blocks)), "\n")
    pairs = [(i, j, float(np.corrcoef(finals[i], finals[j])[0, 1])) for i, j in itertools.combinations(range(len(runs)), 2)]
    print(md_table(["runs", "Pearson r of the γ maps"], [[f"{args.runs[i].name.split('__')[-1]} / {args.runs[j].name.split('__')[-1]}", f"{r:.2f}"]
                                                        for i, j, r in pairs]), "\n")
    mean = finals.mean(axis=1, keepdims=True)
    uniform_share = 1 - ((finals - mean) ** 2).sum(axis=1) / ((finals - 1.0) ** 2).sum(axis=1)
    print("share of the change γ − 1 explained by one uniform scale per run: "
          + ", ".join(f"{s:.2f}" for s in uniform_share))
    print("mean γ per run: " + ", ".join(f"{m:.2f}" for m in mean[:, 0]))
    negative = (finals < 0).sum(axis=1)
    print("sites with γ < 0 per run: " + ", ".join(str(int(n)) for n in negative))

    if args.plot:
        fig = Figure(figsize=(7, 4))
        ax = fig.add_subplot()
        for k, r in enumerate(runs):
            for p in positions:
                cols = pos_of == p
                ax.plot([0, *r["steps"]], [1.0, *r["trace"][:, cols].mean(axis=1)], color=POSITION_COLORS.get(p),
                        linewidth=1.2, alpha=0.8, label=p if k == 0 else None)
        ax.set_xlabel("meta step")
        ax.set_ylabel("γ, mean over the 12 blocks")
        ax.set_title(f"γ trajectories per position, {len(runs)} seeds (one line per seed)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110, bbox_inches="tight")
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
