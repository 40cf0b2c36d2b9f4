"""GPU check: ViT-B/16 at 224 px, LoRA r8 × 72 sites, batch 64 — images/s and peak memory of plain PEFT,
MetaPEFT first-order and unrolled, in each precision; the HF peft ratio; 2-GPU torchrun when there are two.

    .venv/bin/python bench/gpu_check.py                 # the real check (one modern GPU: a few minutes)
    .venv/bin/python bench/gpu_check.py --smoke         # tiny ViT, 32 px, batch 4: runs anywhere (a test runs it)
    .venv/bin/python bench/gpu_check.py --json out.json # also write the rows

Every variant runs the trainer's own step (``metapeft.train.step.TrainStep``), so the timing is what a run
does: "plain" is an ordinary step, "first_order"/"unrolled" a step that also takes a meta step (meta every
step), and the epoch column predicts a run with one meta step every 10 (9 plain + 1 meta). Random init (speed
does not depend on the weights). HF peft gets the same sites with equal parameters (qkv rank 1.5 r) and the
same plain loop (forward, CE, backward, SGD step) in the same precision. Peak memory is
``torch.cuda.max_memory_allocated`` per variant (n/a on a CPU). Steps are timed with a device synchronise
around each; the median is reported. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import metapeft as mp  # noqa: E402
from metapeft.config import MetaConfig, TrainConfig  # noqa: E402
from metapeft.meta import MetaLearner  # noqa: E402
from metapeft.train.distributed import DistEnv  # noqa: E402
from metapeft.train.optim import cosine_schedule  # noqa: E402
from metapeft.train.precision import Precision, enable_tf32  # noqa: E402
from metapeft.train.state import TrainState  # noqa: E402
from metapeft.train.step import TrainStep  # noqa: E402

FULL = dict(model="vit_base_patch16_224", img=224, batch=64, rank=8, steps=10, warmup=3, options={})
SMOKE = dict(model="vit_tiny_patch16_224", img=32, batch=4, rank=2, steps=1, warmup=1,
             options={"depth": 2, "patch_size": 8, "embed_dim": 48, "num_heads": 2})
VARIANTS = ("plain", "first_order", "unrolled")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(s: dict, device: torch.device, classes: int = 100) -> torch.nn.Module:
    torch.manual_seed(0)
    model = mp.create_backbone(s["model"], pretrained=None, img_size=s["img"], num_classes=classes, **s["options"])
    mp.apply_peft(model, mp.PeftConfig(method="lora", rank=s["rank"]))  # q, k, v, out, mlp1, mlp2 of every block
    with torch.no_grad():
        for m in mp.peft.site_modules(model).values():
            m.lora_B.weight.normal_(0, 0.02)  # as after some training: hypergradients are non-zero
    return model.to(device).train()


def make_step(model, variant: str, precision: str, device: torch.device, env: DistEnv | None = None) -> TrainStep:
    gamma_ids = {id(g) for g in mp.gamma_parameters(model)}
    phi = {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in gamma_ids}
    # fused, as the trainer builds it on CUDA (train.sync_free): ordinary steps read nothing from the device
    fused = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.SGD(list(phi.values()), lr=0.01, momentum=0.9, weight_decay=5e-4, **fused)
    meta = None
    if variant != "plain":
        meta = MetaLearner(model, MetaConfig(enabled=True, hypergrad=variant, interval=1), F.cross_entropy,
                           reduce=(env or DistEnv()).mean_)
    else:
        for g in mp.gamma_parameters(model):
            g.requires_grad_(False)
    cfg = TrainConfig(precision=precision)
    return TrainStep(model, phi, opt, cosine_schedule(opt, 10_000), torch.nn.CrossEntropyLoss(), cfg, TrainState(),
                     meta=meta, env=env, precision=Precision(precision, device))


def time_steps(fn, device: torch.device, warmup: int, steps: int) -> float:
    """Median seconds of ``fn()`` (synchronised before and after each call)."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def ours_row(s: dict, variant: str, precision: str, device: torch.device) -> dict:
    model = build_model(s, device)
    reset_peak(device)
    step = make_step(model, variant, precision, device)
    x = torch.randn(s["batch"], 3, s["img"], s["img"], device=device)
    y = torch.randint(0, 100, (s["batch"],), device=device)
    val = iter(lambda: (x, y), None)
    sec = time_steps(lambda: step.step([(x, y)], val), device, s["warmup"], s["steps"])
    skipped = step.state.skipped_steps + (step.meta.state.skipped if step.meta else 0)
    return {"lib": "metapeft", "variant": variant, "precision": precision, "ips": s["batch"] / sec, "sec": sec,
            "peak_mib": peak_mib(device), "skipped": skipped}


def peft_row(s: dict, precision: str, device: torch.device) -> dict | None:
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        return None
    torch.manual_seed(0)
    model = mp.create_backbone(s["model"], pretrained=None, img_size=s["img"], num_classes=100, **s["options"])
    eq = 3 * s["rank"] // 2  # equal parameters to our three rank-r q/k/v slices
    cfg = LoraConfig(r=s["rank"], lora_alpha=s["rank"], target_modules=["qkv", "proj", "fc1", "fc2"],
                     exclude_modules=["patch_embed.proj"], rank_pattern={"qkv": eq}, alpha_pattern={"qkv": eq})
    model = inject_adapter_in_model(cfg, model)
    head = model.get_classifier()
    head_ids = {id(p) for p in head.parameters()}
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n or id(p) in head_ids)
    model = model.to(device).train()
    reset_peak(device)
    prec = Precision(precision, device)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                          weight_decay=5e-4)
    x = torch.randn(s["batch"], 3, s["img"], s["img"], device=device)
    y = torch.randint(0, 100, (s["batch"],), device=device)

    def fn() -> None:
        with prec.autocast():
            loss = F.cross_entropy(model(x), y)
        prec.scale(loss).backward()
        if prec.scaler is not None:
            prec.scaler.step(opt)
            prec.scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)

    sec = time_steps(fn, device, s["warmup"], s["steps"])
    return {"lib": "peft", "variant": "plain", "precision": precision, "ips": s["batch"] / sec, "sec": sec,
            "peak_mib": peak_mib(device), "skipped": 0}


def ddp_child(s: dict, precision: str) -> None:
    """One torchrun rank: plain steps of the global batch split over the ranks; rank 0 prints a JSON row."""
    env, name = DistEnv.setup("cuda")
    device = torch.device(name)
    enable_tf32(device, None)
    model = build_model(s, device)
    step = make_step(model, "plain", precision, device, env)
    per = s["batch"] // env.world
    x = torch.randn(per, 3, s["img"], s["img"], device=device)
    y = torch.randint(0, 100, (per,), device=device)
    sec = time_steps(lambda: step.step([(x, y)]), device, s["warmup"], s["steps"])
    if env.is_main:
        print(json.dumps({"lib": "metapeft", "variant": f"plain, torchrun × {env.world}", "precision": precision,
                          "ips": s["batch"] / sec, "sec": sec, "peak_mib": peak_mib(device), "skipped": 0}))
    env.close()


def ddp_row(args, precision: str) -> dict | None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.abspath(__file__), "--ddp-child", "--precisions", precision] + (["--smoke"] if args.smoke else [])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        print(f"[torchrun failed]\n{res.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    base = {r["precision"]: r["ips"] for r in rows if r["lib"] == "metapeft" and r["variant"] == "plain"}
    peft = {r["precision"]: r["ips"] for r in rows if r["lib"] == "peft"}
    out = ["| precision | variant | images/s | ms/step | ÷ plain (time) | epoch, meta every 10 | peak MiB |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        rel = base[r["precision"]] / r["ips"] if r["precision"] in base else float("nan")
        epoch = (9 + rel) / 10 if r["variant"] in ("first_order", "unrolled") else None
        name = r["variant"] if r["lib"] == "metapeft" else "HF peft (equal params)"
        mem = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        out.append(f"| {r['precision']} | {name} | {r['ips']:.1f} | {1000 * r['sec']:.1f} | {rel:.2f} | "
                   f"{'–' if epoch is None else f'{epoch:.2f}×'} | {mem} |" + (" skipped!" if r["skipped"] else ""))
    out.append("")
    for p in base:
        if p in peft:
            out.append(f"- {p}: metapeft plain ÷ HF peft = {base[p] / peft[p]:.2f}×")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny ViT at 32 px, batch 4, 1 step (any machine)")
    ap.add_argument("--precisions", nargs="+", default=None, help="default: fp32 bf16 fp16 (fp32 only without CUDA)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--ddp-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    s = dict(SMOKE if args.smoke else FULL)
    if args.steps:
        s["steps"] = args.steps
    if args.ddp_child:
        ddp_child(s, args.precisions[0])
        return
    device = torch.device(args.device)
    precisions = args.precisions or (["fp32", "bf16", "fp16"] if device.type == "cuda" or args.smoke else ["fp32"])
    tf32 = enable_tf32(device, None)
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"## GPU check: {name}\n")
    print(f"- command: `{shlex.join([os.path.relpath(sys.executable), *sys.argv])}`")
    print(f"- torch {torch.__version__}, {s['model']} {s['options'] or ''} at {s['img']} px, batch {s['batch']}, "
          f"LoRA r{s['rank']} at q/k/v/out/mlp1/mlp2 of every block, SGD; TF32 {'on' if tf32 else 'off'}; "
          f"median of {s['steps']} steps after {s['warmup']} warm-up")
    rows = []
    for p in precisions:
        for v in VARIANTS:
            print(f"[{p} {v}]", file=sys.stderr, flush=True)
            rows.append(ours_row(s, v, p, device))
        print(f"[{p} peft]", file=sys.stderr, flush=True)
        r = peft_row(s, p, device)
        if r is not None:
            rows.append(r)
    if device.type == "cuda" and torch.cuda.device_count() >= 2:
        for p in precisions:
            r = ddp_row(args, p)
            if r is not None:
                rows.append(r)
    print("\n" + table(rows))
    print(f"\nTotal wall time {time.perf_counter() - started:.0f} s.")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
