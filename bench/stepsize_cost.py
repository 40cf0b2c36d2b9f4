"""Stepsize cost: wall time of one MetaPEFT stepsize run against one plain run of the same method, in one invocation.

    .venv/bin/python bench/stepsize_cost.py                                # Adapter, AID-LT IR 50, 3 epochs
    .venv/bin/python bench/stepsize_cost.py --method lora --repeats 3
    .venv/bin/python bench/stepsize_cost.py --restarts inline warm --epochs 10

Issue 17 asks that a MetaPEFT run cost at most 1.2x one plain run. The extra work is the LR range test
(its training steps when it runs as a phase of its own, `meta.calib_restart=warm|initial`, and one probe
forward per step) and the probe guard's forward at every snapshot. Whole-run wall time is what a user
waits for, so that is what is compared (set-up, prefix cache and the final test pass included, the same
for every row). The configurations run interleaved (plain, inline, warm, plain, ...) so that a machine's
drift hits every row alike; each repeat's ratio is to the plain run of the same repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from metapeft.config import RunConfig  # noqa: E402
from metapeft.train import Trainer  # noqa: E402


def run_one(overrides: list[str], out: Path) -> dict:
    cfg = RunConfig.load("demo", overrides)
    Trainer(cfg, out, quiet=True).run()
    m = json.loads((out / "metrics.json").read_text())
    run = m["run"]
    taken = 0   # step slots the range test used: one trace entry each, the last (whose update it undid) included
    if (out / "stepsize.json").exists():
        taken = len(json.loads((out / "stepsize.json").read_text())["calibration"])
    return {"wall_s": run["wall_time_s"], "steps": run["steps"], "test_steps": taken,
            "balanced": m["balanced"], "few": m["few"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--method", default="adapter", help="peft.method (its default sites)")
    ap.add_argument("--lr", type=float, default=0.01, help="the plain run's train.lr")
    ap.add_argument("--restarts", nargs="+", default=["inline", "warm"], help="meta.calib_restart values")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], dest="overrides", help="extra config overrides (every row)")
    args = ap.parse_args()
    base = [f"peft.method={args.method}", f"train.epochs={args.epochs}", f"train.seed={args.seed}",
            "train.progress=false", "train.tensorboard=false", *args.overrides]
    if args.method != "lora":
        base.append("peft.positions=null")
    rows = {"plain": ["meta.enabled=false", f"train.lr={args.lr}"]}
    rows.update({f"stepsize {r}": ["meta.learn_split=false", f"meta.calib_restart={r}"] for r in args.restarts})
    got: dict[str, list[dict]] = {name: [] for name in rows}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name, extra in rows.items():
                r = run_one(base + extra, Path(tmp) / f"{name.replace(' ', '_')}_{rep}")
                got[name].append(r)
                print(f"repeat {rep} {name}: {r}", file=sys.stderr)
    plain = got["plain"]
    print(f"\nStepsize cost — {args.method}, AID-LT IR 50 (the demo's data and ViT-S/14), {args.epochs} epoch(s), "
          f"seed {args.seed}, {args.repeats} interleaved repeat(s)")
    print("| configuration | wall s (median) | ratio to plain (median of repeats) | per repeat | run steps "
          "| range-test steps | balanced % | few % |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rs in got.items():
        ratios = [r["wall_s"] / p["wall_s"] for r, p in zip(rs, plain)]
        print(f"| {name} | {statistics.median(r['wall_s'] for r in rs):.1f} | {statistics.median(ratios):.2f}x "
              f"| {' / '.join(f'{x:.2f}' for x in ratios)} | {rs[0]['steps']} | {rs[0]['test_steps']} "
              f"| {100 * rs[0]['balanced']:.1f} | {100 * rs[0]['few']:.1f} |")


if __name__ == "__main__":
    main()
