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
from metapeft.meta import first_order, neumann, unrolled  # noqa: E402


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
    gammas = mp.gamma_parameters(model)
    phi_named = {n: p for n, p in model.named_parameters() if p.requires_grad and "modulator" not in n}
    phi = list(phi_named.values())
    opt = torch.optim.SGD(phi, lr=0.01, momentum=0.9)
    x, y = torch.randn(args.batch, 3, args.img, args.img), torch.randint(0, 30, (args.batch,))
    xv, yv = torch.randn(args.val_batch, 3, args.img, args.img), torch.randint(0, 30, (args.val_batch,))

    def set_gamma_grad(flag: bool) -> None:
        for g in gammas:
            g.requires_grad_(flag)

    def plain() -> None:
        set_gamma_grad(False)
        F.cross_entropy(model(x), y).backward()
        opt.step(); opt.zero_grad()

    def fo() -> None:
        plain()
        set_gamma_grad(True)
        first_order(model, gammas, F.cross_entropy, xv, yv)

    def plain_unfused() -> None:  # what every step of an unrolled run cost before the per-step switch
        with mp.backbones.unfused_attention(model):
            plain()

    def second(kind) -> None:
        set_gamma_grad(True)
        with mp.backbones.unfused_attention(model):
            grads = torch.autograd.grad(F.cross_entropy(model(x), y), phi, create_graph=True)
            if kind == "unrolled":
                unrolled(model, phi_named, gammas, grads, 0.01, F.cross_entropy, xv, yv)
            else:
                neumann(model, phi_named, gammas, grads, 0.01, F.cross_entropy, xv, yv, terms=3)
        for p, g in zip(phi, grads):
            p.grad = g.detach()
        opt.step(); opt.zero_grad()

    variants = {"plain": plain, "plain, unfused attention": plain_unfused, "first_order": fo,
                "unrolled": lambda: second("unrolled"),
                "neumann(3)": lambda: second("neumann")}
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
