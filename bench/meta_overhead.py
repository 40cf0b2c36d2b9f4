"""Meta overhead: epoch time of MetaPEFT vs plain PEFT on the same model and data, in one run.

    .venv/bin/python bench/meta_overhead.py                      # bundled ViT-S/14, AID-LT IR 50, 56 px
    .venv/bin/python bench/meta_overhead.py --modes unrolled --intervals 1 5 10 --epochs 2

Each configuration is a real `metapeft` training run (same seed, data, model); the table shows the
mean epoch time, its ratio to plain PEFT (γ fixed) measured in the same invocation, and the test
accuracy each run reached. Machines are noisy: trust the ratios more than the seconds.
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


def run_one(base: list[str], extra: list[str], out: Path) -> dict:
    cfg = RunConfig.load(None, base + extra)
    res = Trainer(cfg, out, quiet=True).run()
    hist = [l.split(",") for l in (out / "history.csv").read_text().splitlines()]
    col = hist[0].index("epoch_time_s")
    times = [float(r[col]) for r in hist[1:]]
    m = json.loads((out / "metrics.json").read_text())
    return {"epoch_s": statistics.mean(times), "balanced": m["balanced"], "few": m["few"],
            "meta_steps": m["run"]["meta_steps"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modes", nargs="+", default=["first_order", "unrolled"])
    ap.add_argument("--intervals", nargs="+", type=int, default=[2, 5, 10])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--set", nargs="*", default=[], dest="overrides", help="extra config overrides")
    args = ap.parse_args()
    base = ["data.name=aid", "data.imbalance_ratio=50", "data.test_fraction=0.05", "model.img_size=56",
            "peft.method=lora", "peft.rank=4", f"train.epochs={args.epochs}", "train.batch_size=32",
            "train.progress=false", "train.tensorboard=false", "meta.lr=0.25", *args.overrides]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plain = run_one(base, [], Path(tmp) / "plain")
        rows.append(("plain PEFT (γ fixed)", "-", plain))
        print(f"plain: {plain}", file=sys.stderr)
        for mode in args.modes:
            for k in args.intervals:
                extra = ["meta.enabled=true", f"meta.hypergrad={mode}", f"meta.interval={k}"]
                r = run_one(base, extra, Path(tmp) / f"{mode}_{k}")
                rows.append((f"MetaPEFT {mode}", str(k), r))
                print(f"{mode} every {k}: {r}", file=sys.stderr)
    print(f"\nMeta overhead — ViT-S/14 bundled, LoRA r4 × 72 sites, AID-LT IR50, 56 px, batch 32, "
          f"{args.epochs} epoch(s)")
    print("| configuration | meta every | epoch s | ratio to plain | meta steps | balanced % | few % |")
    print("|---|---|---|---|---|---|---|")
    for name, k, r in rows:
        few = "n/a" if r["few"] is None else f"{100 * r['few']:.1f}"
        print(f"| {name} | {k} | {r['epoch_s']:.1f} | {r['epoch_s'] / plain['epoch_s']:.2f}x | {r['meta_steps']} "
              f"| {100 * r['balanced']:.1f} | {few} |")


if __name__ == "__main__":
    main()
