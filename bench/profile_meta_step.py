"""Where an unrolled meta step spends its time: torch.profiler over the trainer's own step.

    .venv/bin/python bench/profile_meta_step.py [--img 56] [--mode unrolled] [--rows 12]

Builds the demo run (bundled ViT-S/14, LoRA r4 × 72 sites, AID-LT) with a meta step on every inner
step, warms up, then profiles a few `Trainer._micro_step` calls and prints (a) the split between the
train forward, the create-graph train backward, the look-ahead forward on the val batch and the
backward to γ (record_function ranges), and (b) the top ATen ops by self CPU time.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

import metapeft.meta.hypergradient as hg  # noqa: E402
from metapeft.config import RunConfig  # noqa: E402
from metapeft.train import Trainer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--img", type=int, default=56)
    ap.add_argument("--mode", default="unrolled", choices=["first_order", "unrolled", "neumann"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rows", type=int, default=12)
    args = ap.parse_args()

    # label the phases of the hypergradient without changing its code
    for name in ("first_order", "unrolled", "neumann"):
        fn = getattr(hg, name)

        def wrapped(*a, _fn=fn, _name=name, **k):
            with record_function(f"meta.{_name} (val forward + backward to γ)"):
                return _fn(*a, **k)
        setattr(hg, name, wrapped)

    cfg = RunConfig.load("configs/demo_aid_lt.yaml", [
        f"model.img_size={args.img}", f"meta.hypergrad={args.mode}", "meta.interval=1", "train.epochs=1",
        "train.progress=false", "train.tensorboard=false"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, quiet=True)
        captured = {}
        original = Trainer._micro_step

        def micro_step(self, i, x, y, *rest):
            if i == 1:  # after one warm-up step: profile the next ones
                captured["prof"] = profile(activities=[ProfilerActivity.CPU])
                captured["prof"].__enter__()
            if 1 <= i <= args.steps:
                with record_function("trainer._micro_step (whole meta+train step)"):
                    original(self, i, x, y, *rest)
            else:
                original(self, i, x, y, *rest)
            if i == args.steps:
                captured["prof"].__exit__(None, None, None)
                raise KeyboardInterrupt  # stop the run here: enough steps profiled

        Trainer._micro_step = micro_step
        try:
            trainer.run()
        except KeyboardInterrupt:
            pass
    prof = captured["prof"]
    events = prof.key_averages()
    whole = next(e for e in events if e.key.startswith("trainer._micro_step"))
    meta = next(e for e in events if e.key.startswith("meta."))
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
