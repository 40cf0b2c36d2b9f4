"""Does ``train.compile`` or ``train.channels_last`` pay? The trainer's own plain step, four ways, interleaved.

    .venv/bin/python bench/compile_channels_last.py                   # ViT-S/14 bundled, 56 px, batch 32, CPU
    .venv/bin/python bench/compile_channels_last.py --device cuda --model vit_base_patch16_224 --img 224 --batch 64

Variants: eager (default), ``train.compile=true`` (torch.compile of the model for ordinary steps),
``train.channels_last=true`` and both. Each is a fresh model + ``TrainStep`` (LoRA r4 on all 72 sites, γ
fixed, SGD); warm-up steps (including the compilation, timed separately) then ``--iters`` rounds in rotating
order, median step time. The logits column is max |compiled − eager| on one batch before any step (compile is
exact up to float rounding, not bit-exact). Timings are printed, never asserted; the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import metapeft as mp  # noqa: E402
from metapeft.config import TrainConfig  # noqa: E402
from metapeft.train.optim import cosine_schedule  # noqa: E402
from metapeft.train.state import TrainState  # noqa: E402
from metapeft.train.step import TrainStep  # noqa: E402

VARIANTS = {"eager": {}, "compile": {"compile": True}, "channels_last": {"channels_last": True},
            "compile + channels_last": {"compile": True, "channels_last": True}}


def build(args, device: torch.device, **train) -> TrainStep:
    torch.manual_seed(0)
    pretrained = "bundled" if args.model == "vit_small_patch14_dinov2" else None
    model = mp.create_backbone(args.model, pretrained=pretrained, img_size=args.img, num_classes=30)
    mp.apply_peft(model, mp.PeftConfig(method="lora", rank=args.rank))
    for g in mp.gamma_parameters(model):
        g.requires_grad_(False)
    model = model.to(device).train()
    phi = {n: p for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.SGD(list(phi.values()), lr=0.01, momentum=0.9)
    return TrainStep(model, phi, opt, cosine_schedule(opt, 10_000), torch.nn.CrossEntropyLoss(),
                     TrainConfig(**train), TrainState())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="vit_small_patch14_dinov2")
    ap.add_argument("--img", type=int, default=56)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(3)
    x = torch.randn(args.batch, 3, args.img, args.img, device=device)
    y = torch.randint(0, 30, (args.batch,), device=device)
    steps, warm_s, diff = {}, {}, {}
    for name, kw in VARIANTS.items():
        steps[name] = build(args, device, **kw)
    with torch.no_grad():
        ref = steps["eager"].net(x)
        for name, st in steps.items():
            diff[name] = (st.forward(x.contiguous(memory_format=torch.channels_last) if st.channels_last else x)
                          - ref).abs().max().item()
    for name, st in steps.items():
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            st.step([(x, y)])
        sync(device)
        warm_s[name] = time.perf_counter() - t0
    times = {n: [] for n in steps}
    names = list(steps)
    for r in range(args.iters):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            sync(device)
            t0 = time.perf_counter()
            steps[n].step([(x, y)])
            sync(device)
            times[n].append(time.perf_counter() - t0)
    med = {n: statistics.median(ts) for n, ts in times.items()}
    print(f"{args.model} {args.img} px, batch {args.batch}, LoRA r{args.rank} × all sites, {device}, torch "
          f"{torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}; "
          f"median of {args.iters} interleaved steps\n")
    print("| variant | images/s | ms/step | ÷ eager (speed) | warm-up s (incl. compile) | max |logits − eager| |")
    print("|---|---|---|---|---|---|")
    for n in names:
        print(f"| {n} | {args.batch / med[n]:.1f} | {1000 * med[n]:.0f} | {med['eager'] / med[n]:.2f} | "
              f"{warm_s[n]:.0f} | {diff[n]:.1e} |")


if __name__ == "__main__":
    main()
