"""Is the data pipeline ever the bottleneck? Loader images/s alone vs train-step images/s, same run.

    .venv/bin/python bench/loader.py                      # AID-LT IR 50, bundled ViT-S/14, 56 and 112 px
    .venv/bin/python bench/loader.py --sizes 56 --batch 32

For each image size it builds the run's real pipeline (the demo's config: in-memory uint8 images,
`BatchLoader` + per-sample random-resized-crop/flip in `BatchAugment`, class-balanced meta-val batches)
and times (a) one full epoch of the training loader alone, (b) as many meta-val batches, (c) train steps
(forward + backward + SGD) of MetaPEFT's model on one fixed batch. The loader is the bottleneck
when (a) is not several times faster than (c). Both share this process's torch threads, as in a run.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from metapeft.config import RunConfig  # noqa: E402
from metapeft.train.losses import build_loss  # noqa: E402
from metapeft.train.model import build_model  # noqa: E402
from metapeft.train.pipeline import load_run_dataset, meta_val_batches, prepare_data, train_loader  # noqa: E402


def images_per_s(batches, limit: int) -> float:
    seen, start = 0, time.perf_counter()
    for i, (x, _) in enumerate(batches):
        seen += len(x)
        if i + 1 >= limit:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[56, 112])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5, help="timed train steps per size")
    args = ap.parse_args()
    device = torch.device("cpu")
    print(f"torch threads: {torch.get_num_threads()}")
    print("| img px | train loader img/s | meta-val batches img/s | train step img/s | loader / step |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        cfg = RunConfig.load("configs/demo_aid_lt.yaml", [f"model.img_size={size}", f"train.batch_size={args.batch}"])
        ds = load_run_dataset(cfg)
        model = build_model(cfg, ds.num_classes).to(device)
        data = prepare_data(cfg, model.pretrained_cfg.get("mean"), model.pretrained_cfg.get("std"), ds)
        loader = train_loader(data, cfg, device)
        loader.set_epoch(0)
        images_per_s(loader, 2)  # warm-up
        load = images_per_s(loader, len(loader))
        val = images_per_s(meta_val_batches(data, cfg, device, 0), len(loader))

        x, y = next(iter(loader))
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
        loss_fn = build_loss(cfg.train.loss, ds.train_class_counts)
        model.train()

        def step() -> None:
            loss_fn(model(x), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        step()  # warm-up
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        train = args.steps * len(x) / (time.perf_counter() - start)
        print(f"| {size} | {load:.0f} | {val:.0f} | {train:.1f} | {load / train:.0f}x |", flush=True)


if __name__ == "__main__":
    main()
