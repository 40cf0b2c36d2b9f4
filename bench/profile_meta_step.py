"""Where an unrolled meta step spends its time: torch.profiler over the trainer's own step.

    .venv/bin/python bench/profile_meta_step.py [--img 56] [--mode unrolled] [--rows 12]

Builds the demo run (bundled ViT-S/14, LoRA r4 × 72 sites, AID-LT) with the trainer's own set-up and a
meta step on every inner step, warms up one step, then profiles a few calls of the run's
`TrainStep.step` (the very step `metapeft train` runs) and prints (a) the split between the
hypergradient (`MetaLearner.step`: look-ahead forward on the val batch + backward to γ) and the rest
(train forward, create-graph backward, φ update), and (b) the top ATen ops by self CPU time.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

from metapeft.config import RunConfig  # noqa: E402
from metapeft.train import Trainer  # noqa: E402
from metapeft.train.distributed import DistEnv  # noqa: E402
from metapeft.train.step import micro_batch_groups  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--img", type=int, default=56)
    ap.add_argument("--mode", default="unrolled", choices=["first_order", "unrolled", "neumann"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rows", type=int, default=12)
    args = ap.parse_args()

    cfg = RunConfig.load("configs/demo_aid_lt.yaml", [
        f"model.img_size={args.img}", f"meta.hypergrad={args.mode}", "meta.interval=1", "train.epochs=1",
        "train.progress=false", "train.tensorboard=false"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, quiet=True)
        run = trainer._set_up(DistEnv(), torch.device("cpu"))  # the run's own data, model and step
        step = run.step
        val = trainer._val_batches(run, 0)
        run.loader.set_epoch(0)
        run.net.train()
        groups = micro_batch_groups(run.loader, cfg.train.grad_accum)
        step.step(next(groups), val)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                with record_function("TrainStep.step"):  # MetaLearner.step labels itself
                    step.step(next(groups), val)
    events = prof.key_averages()
    whole = next(e for e in events if e.key == "TrainStep.step")
    meta = next(e for e in events if e.key == "MetaLearner.step")
    print(f"{args.mode}, {args.img} px, {args.steps} profiled steps (meta step every step)")
    print(f"| phase | CPU s per step | share |\n|---|---|---|")
    total = whole.cpu_time_total / 1e6 / args.steps
    m = meta.cpu_time_total / 1e6 / args.steps
    print(f"| whole step | {total:.2f} | 100 % |")
    print(f"| hypergradient (val look-ahead forward + backward to γ) | {m:.2f} | {100 * m / total:.0f} % |")
    print(f"| train forward + create-graph backward + φ update | {total - m:.2f} | {100 * (total - m) / total:.0f} % |")
    print()
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
