"""Cost of one meta step in units of a plain training step, measured interleaved in one process.

    .venv/bin/python bench/meta_step_cost.py [--img 56] [--batch 32] [--val-batch 32] [--reps 8]

Epoch-time ratios from separate runs (bench/meta_overhead.py) drift with the machine; here each
repetition times a plain step and each meta-step variant back to back on the same model (bundled
ViT-S/14, LoRA r4 on all 72 sites), so the ratio c = meta / plain is robust. With one meta step
every k inner steps the expected epoch overhead is 1 + (c - 1)/k for modes that replace the inner
backward (unrolled, neumann) and 1 + c/k for first_order (an extra pass on the val batch).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import metapeft as mp  # noqa: E402
from metapeft.config import MetaConfig, TrainConfig  # noqa: E402
from metapeft.meta import MetaLearner  # noqa: E402
from metapeft.train.optim import cosine_schedule  # noqa: E402
from metapeft.train.state import TrainState  # noqa: E402
from metapeft.train.step import TrainStep  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--img", type=int, default=56)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--val-batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=8)
    args = ap.parse_args()
    torch.manual_seed(0)
    # As in the trainer: fused SDPA for ordinary steps, plain attention only inside second-order steps.
    model = mp.create_backbone("vit_small_patch14_dinov2", "bundled", img_size=args.img, num_classes=30)
    mp.apply_peft(model, mp.PeftConfig(method="lora", rank=4))
    with torch.no_grad():
        for m in mp.peft.site_modules(model).values():
            m.lora_B.weight.normal_(0, 0.02)  # as after some training: hypergradients are non-zero
    gamma_ids = {id(g) for g in mp.gamma_parameters(model)}
    phi = {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in gamma_ids}
    opt = torch.optim.SGD(list(phi.values()), lr=0.01, momentum=0.9)
    x, y = torch.randn(args.batch, 3, args.img, args.img), torch.randint(0, 30, (args.batch,))
    xv, yv = torch.randn(args.val_batch, 3, args.img, args.img), torch.randint(0, 30, (args.val_batch,))
    val = iter(lambda: (xv, yv), None)  # the same val batch forever
    train_cfg = TrainConfig(lr=0.01)

    def trainer_step(hypergrad: str | None) -> TrainStep:
        """The trainer's own step (metapeft.train.step), with a meta step every step for ``hypergrad``."""
        meta = None
        if hypergrad is not None:
            meta = MetaLearner(model, MetaConfig(enabled=True, hypergrad=hypergrad, interval=1, neumann_terms=3),
                               F.cross_entropy)
        else:
            for g in mp.gamma_parameters(model):
                g.requires_grad_(False)
        # A constant schedule: the step sizes stay those of the first step for every repetition.
        sched = cosine_schedule(opt, 10**9)
        return TrainStep(model, phi, opt, sched, torch.nn.CrossEntropyLoss(), train_cfg, TrainState(), meta=meta)

    steps = {k: trainer_step(k) for k in (None, "first_order", "unrolled", "neumann")}

    def plain_unfused() -> None:  # what every step of an unrolled run cost before the per-step switch
        with mp.backbones.unfused_attention(model):
            steps[None].step([(x, y)])

    variants = {"plain": lambda: steps[None].step([(x, y)]), "plain, unfused attention": plain_unfused,
                "first_order": lambda: steps["first_order"].step([(x, y)], val),
                "unrolled": lambda: steps["unrolled"].step([(x, y)], val),
                "neumann(3)": lambda: steps["neumann"].step([(x, y)], val)}
    times = {k: [] for k in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(args.reps):
        for k, fn in variants.items():
            t = time.perf_counter(); fn(); times[k].append(time.perf_counter() - t)
    base = statistics.median(times["plain"])
    print(f"ViT-S/14 bundled, LoRA r4 × 72 sites, {args.img} px, batch {args.batch}, val batch {args.val_batch}, "
          f"{torch.get_num_threads()} threads, median of {args.reps} interleaved repetitions")
    print("| step | s | ratio c to plain step | predicted epoch overhead, meta every 5 / 10 / 20 |")
    print("|---|---|---|---|")
    for k, v in times.items():
        c = statistics.median(v) / base
        extra = c - 1  # every variant here includes the φ update of its step
        pred = " / ".join(f"{1 + extra / n:.2f}x" for n in (5, 10, 20)) if not k.startswith("plain") else "-"
        print(f"| {k} | {statistics.median(v):.2f} | {c:.2f} | {pred} |")


if __name__ == "__main__":
    main()
