"""In-memory vs streaming data: images/s of the training loader when a folder is decoded into RAM up front,
and when it is read lazily in DataLoader workers (what a set above ``data.ram_budget_gb`` gets).

    .venv/bin/python bench/streaming.py                        # 56 and 224 px, 512 images, 1 worker
    .venv/bin/python bench/streaming.py --sizes 224 --workers 4 --images 2048

It writes an ImageFolder of real AID scenes (bundled data) upscaled to 256 px JPEG (quality 90: what a
real 224 px data set stores), then for each size builds the run's pipeline both ways
(``load_dataset(..., image_size=px)`` + ``BatchLoader`` with random-resized-crop/flip) and times one
epoch of each, interleaved (in-memory, streaming, in-memory, ...; median of ``--reps``). The in-memory path
also pays the up-front decode before step 1 (reported separately). Both yield the same batches
(tests/data/test_data_streaming.py). Timings are printed, never asserted; the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from metapeft.data import BatchAugment, BatchLoader, load_dataset  # noqa: E402
from metapeft.data.roots import resolve_data_root  # noqa: E402


def write_folder(root: Path, n: int, side: int = 256) -> Path:
    src = resolve_data_root(None) / "aid"
    x = np.load(src / "images.npy", mmap_mode="r")
    y = np.load(src / "labels.npy")
    for i in np.linspace(0, len(y) - 1, n).astype(int).tolist():  # spread over the classes
        d = root / "train" / f"c{int(y[i]) :02d}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(x[i])).resize((side, side), Image.BICUBIC).save(d / f"{i}.jpg", quality=90)
    (root / "test" / "c00").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(x[0])).save(root / "test" / "c00" / "0.jpg", quality=90)
    for c in sorted(p.name for p in (root / "train").iterdir()):  # every test class must exist in train
        (root / "test" / c).mkdir(exist_ok=True)
    return root


def epoch_ips(loader: BatchLoader, epoch: int) -> float:
    loader.set_epoch(epoch)
    seen, t0 = 0, time.perf_counter()
    for x, _ in loader:
        seen += len(x)
    return seen / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[56, 224])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    print(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} cores, {args.images} JPEG images (256 px), "
          f"batch {args.batch}, streaming with {args.workers} worker(s); load average {os.getloadavg()[0]:.2f}\n")
    print("| px | up-front decode s (in-memory) | in-memory img/s | streaming img/s | streaming ÷ in-memory |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = write_folder(Path(tmp) / "folder", args.images)
        for px in args.sizes:
            t0 = time.perf_counter()
            mem = load_dataset("imagefolder", str(root), image_size=px)
            decode_s = time.perf_counter() - t0
            lazy = load_dataset("imagefolder", str(root), image_size=px, ram_budget_gb=1e-9)
            tf = BatchAugment(px, (0.5,) * 3, (0.25,) * 3, train=True)
            a = BatchLoader(mem.train, args.batch, shuffle=True, drop_last=True, transform=tf, seed=0)
            b = BatchLoader(lazy.train, args.batch, shuffle=True, drop_last=True, transform=tf, seed=0,
                            workers=args.workers)
            epoch_ips(b, 0)  # start the workers
            ra, rb = [], []
            for r in range(args.reps):
                ra.append(epoch_ips(a, r + 1))
                rb.append(epoch_ips(b, r + 1))
            ma, mb = statistics.median(ra), statistics.median(rb)
            print(f"| {px} | {decode_s:.1f} | {ma:.0f} | {mb:.0f} | {mb / ma:.2f} |", flush=True)


if __name__ == "__main__":
    main()
