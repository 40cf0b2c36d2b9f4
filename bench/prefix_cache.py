"""Frozen-prefix caching: epoch time with the frozen blocks cached vs recomputed, same run settings.

    .venv/bin/python bench/prefix_cache.py                 # bundled ViT-S/14, AID-LT IR 50, 56 px
    .venv/bin/python bench/prefix_cache.py --starts 6 9 11

For LoRA on all positions of blocks ≥ k (augmentation off, which caching requires), it trains one
epoch with `train.cache_prefix=true` and once with `false`, and prints the epoch times, their ratio,
the one-off cost of computing the cache, and whether both runs reached the same test accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from metapeft.config import RunConfig  # noqa: E402
from metapeft.train import Trainer  # noqa: E402


def one(base: list[str], extra: list[str], out: Path) -> tuple[float, float, float]:
    res = Trainer(RunConfig.load(None, base + extra), out, quiet=True).run()
    rows = (out / "history.csv").read_text().splitlines()
    col = rows[0].split(",").index("epoch_time_s")
    epoch = sum(float(r.split(",")[col]) for r in rows[1:]) / (len(rows) - 1)
    m = json.loads((out / "metrics.json").read_text())
    return epoch, res.wall_time_s, m["balanced"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--starts", nargs="+", type=int, default=[6, 9])
    ap.add_argument("--set", nargs="*", default=[], dest="overrides")
    args = ap.parse_args()
    base = ["data.name=aid", "data.imbalance_ratio=50", "data.test_fraction=0.05", "data.augment=false",
            "model.img_size=56", "peft.method=lora", "peft.rank=4", "train.epochs=1", "train.batch_size=32",
            "train.progress=false", "train.tensorboard=false", *args.overrides]
    print("| trainable blocks | cached epoch s | uncached epoch s | epoch speed-up | cached run wall s | "
          "uncached run wall s | balanced % (cached / uncached) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.starts:
            blocks = f"peft.blocks=last:{12 - k}"
            c = one(base, [blocks, "train.cache_prefix=true"], Path(tmp) / f"c{k}")
            u = one(base, [blocks, "train.cache_prefix=false"], Path(tmp) / f"u{k}")
            print(f"| {k}..11 | {c[0]:.1f} | {u[0]:.1f} | {u[0] / c[0]:.2f}x | {c[1]:.0f} | {u[1]:.0f} | "
                  f"{100 * c[2]:.2f} / {100 * u[2]:.2f} |")


if __name__ == "__main__":
    main()
