"""Throughput: metapeft LoRA vs HF peft LoRA (train step), merged model vs bare backbone (inference).

    .venv/bin/python bench/throughput.py                       # bundled ViT-S/14, 56 and 112 px, batch 32
    .venv/bin/python bench/throughput.py --iters 5 --warmup 1  # quick check
    .venv/bin/python bench/throughput.py --profile --layers    # + torch.profiler top ops, + per-layer timing
    .venv/bin/python bench/throughput.py --model vit_tiny_patch16_224 --sizes 64 128   # any timm ViT, random init
    .venv/bin/python bench/throughput.py --sizes 224 --iters 5 --warmup 1 --peft fair  # 224 px on a small CPU

Training: one step = forward + cross-entropy + backward + SGD(lr 0.01, momentum 0.9) step + zero_grad, on
the same model, the same fixed batch and the same sites (qkv, proj, fc1, fc2 of every block), only LoRA +
classifier head trainable. metapeft's γ is fixed (requires_grad False, not in the optimizer), as in a plain
PEFT run of our trainer. Variants run interleaved in rounds (A B C, B C A, C A B, ...) so that machine
drift hits all of them alike; the table reports the median step time and its interquartile range.

Peak memory: each training variant is re-run alone in a fresh child process (`--child`): it builds the
model, resets the kernel's peak-RSS mark (`/proc/self/clear_refs` = 5), runs `--mem-steps` training
steps and reports VmHWM − VmRSS-at-reset, i.e. the peak resident-memory growth of training (activations,
gradients, optimizer state, allocator slack) over the built model. Children run one after another.

Per layer (`--layers`): forward + backward of one wrapped layer (block 0's qkv and fc1) at the real
activation shape, ours vs each peft variant, interleaved: the LoRA wrapper's own cost without the rest of
the ViT, far less noisy than whole steps.

Inference: images/s under `torch.inference_mode()` of the LoRA model after `mp.merge_peft` (wrappers
unloaded) vs the bare backbone, interleaved the same way.

Timings are printed, never asserted. The machine is shared: trust ratios more than absolute numbers.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import metapeft as mp  # noqa: E402

BUNDLED = "vit_small_patch14_dinov2"
MiB = 1024 * 1024


# --------------------------------------------------------------------------------------------- models
def build_bare(args, size: int) -> nn.Module:
    torch.manual_seed(0)
    if args.model == BUNDLED and not args.random_init:
        return mp.create_backbone(BUNDLED, pretrained="bundled", img_size=size, num_classes=args.num_classes)
    return mp.create_backbone(args.model, pretrained=None, img_size=size, num_classes=args.num_classes)


def _head_names(model: nn.Module) -> set[str]:
    head = model.get_classifier()
    return {n for n, m in model.named_modules() if m is head}


def build_ours(bare: nn.Module, rank: int) -> nn.Module:
    torch.manual_seed(1)
    model = mp.apply_peft(copy.deepcopy(bare), mp.PeftConfig(method="lora", rank=rank))
    for g in mp.gamma_parameters(model):  # γ fixed: a plain-PEFT step, as our trainer runs it
        g.requires_grad_(False)
    return model


def build_peft(bare: nn.Module, rank: int, qkv_rank: int) -> nn.Module:
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(1)
    model = copy.deepcopy(bare)
    # `target_modules=["qkv","proj","fc1","fc2"]` alone also matches `patch_embed.proj` (a Conv2d, suffix
    # ".proj"): exclude it so peft gets exactly our sites. α = r everywhere → scaling 1, like ours.
    cfg = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=["qkv", "proj", "fc1", "fc2"],
                     exclude_modules=["patch_embed.proj"],
                     rank_pattern={"qkv": qkv_rank} if qkv_rank != rank else {},
                     alpha_pattern={"qkv": qkv_rank} if qkv_rank != rank else {})
    model = inject_adapter_in_model(cfg, model)
    heads = _head_names(model)
    for name, p in model.named_parameters():
        owner = name.rsplit(".", 1)[0]
        p.requires_grad_("lora_" in name or owner in heads)
    return model


# ---------------------------------------------------------------------------------------- params
def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def lora_params(model: nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n)


def qkv_lora_params(model: nn.Module) -> int:
    qkv = model.blocks[0].attn.qkv
    return sum(p.numel() for n, p in qkv.named_parameters() if "lora_" in n)


# ---------------------------------------------------------------------------------------- timing
class Trainee:
    def __init__(self, name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        self.name, self.model, self.x, self.y = name, model, x, y
        self.model.train()
        self.opt = torch.optim.SGD(trainable(model), lr=0.01, momentum=0.9)
        self.times: list[float] = []

    def step(self) -> None:
        loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def interleaved(fns: dict[str, Callable[[], None]], warmup: int, iters: int) -> dict[str, list[float]]:
    """Run every fn `warmup` then `iters` times in rotating order; per-call seconds by name."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + iters):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            t0 = time.perf_counter()
            fns[n]()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[n].append(dt)
    return times


def summary(ts: list[float], batch: int) -> dict[str, float]:
    q = statistics.quantiles(ts, n=4, method="inclusive") if len(ts) >= 2 else [ts[0]] * 3
    med = statistics.median(ts)
    return {"ips": batch / med, "ips_lo": batch / q[2], "ips_hi": batch / q[0], "med_ms": 1000 * med}


# ---------------------------------------------------------------------------------------- memory (child)
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def child_main(args) -> None:
    size = args.sizes[0]
    torch.set_num_threads(args.threads)
    bare = build_bare(args, size)
    model = variant_model(args.child, bare, args)
    del bare
    torch.manual_seed(3)
    x = torch.randn(args.batch, 3, size, size)
    y = torch.randint(0, args.num_classes, (args.batch,))
    t = Trainee(args.child, model, x, y)
    gc.collect()
    try:  # hand the freed backbone copy back to the OS, so that training cannot reuse it unseen
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        method = "VmHWM after clear_refs reset"
        base_kb = _status_kb("VmRSS")
    except OSError:
        method = "ru_maxrss (not reset: includes model construction)"
        base_kb = _status_kb("VmRSS")
    for _ in range(args.mem_steps):
        t.step()
    hwm_kb = _status_kb("VmHWM") if method.startswith("VmHWM") else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Bytes the autograd graph keeps for backward (distinct storages): the allocator-independent part.
    storages: dict[int, int] = {}

    def pack(tensor):
        st = tensor.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        F.cross_entropy(t.model(x), y)
    print(json.dumps({"variant": args.child, "base_kb": base_kb, "peak_kb": hwm_kb, "method": method,
                      "saved_bytes": sum(storages.values())}))


def measure_memory(name: str, size: int, args) -> dict | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--sizes", str(size),
           "--batch", str(args.batch), "--model", args.model, "--rank", str(args.rank),
           "--threads", str(args.threads), "--mem-steps", str(args.mem_steps),
           "--num-classes", str(args.num_classes)] + (["--random-init"] if args.random_init else [])
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"[memory child {name} @ {size}px failed]\n{res.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------- variants
PEFT_VARIANTS = "all"  # --peft fair: only the equal-parameter peft variant (halves the time at 224 px)


def peft_qkv_ranks(rank: int) -> dict[str, int]:
    # ours on qkv: 3 × (A[r,D] + B[D,r]) = 6rD params and 6rD FLOPs/token (mult-adds).
    # peft rank r' on the fused qkv: A[r',D] + B[3D,r'] = 4r'D  →  equal to ours at r' = 1.5 r.
    eq = (3 * rank) // 2
    if PEFT_VARIANTS == "fair" and 3 * rank % 2 == 0 and eq != rank:
        return {f"peft r{rank}, qkv r{eq}": eq}
    out = {f"peft r{rank}": rank}
    if 3 * rank % 2 == 0 and eq != rank:
        out[f"peft r{rank}, qkv r{eq}"] = eq
    out[f"peft r{rank}, qkv r{3 * rank}"] = 3 * rank
    return out


def variant_model(name: str, bare: nn.Module, args) -> nn.Module:
    if name == "ours":
        return build_ours(bare, args.rank)
    ranks = peft_qkv_ranks(args.rank)
    if name in ranks:
        return build_peft(bare, args.rank, ranks[name])
    raise ValueError(name)


def fairness_note(rank: int, dim: int) -> str:
    eq = 3 * rank // 2
    return "\n".join([
        "Sites and parameter counts (per block, D = embed dim; proj/fc1/fc2 are identical in both libraries):",
        f"- ours on qkv: three rank-{rank} branches q, k, v = 3·(A[{rank},D] + B[D,{rank}]) = {6 * rank}·D "
        f"= {6 * rank * dim:,} params, {6 * rank}·D mult-adds per token.",
        f"- peft r{rank}: ONE rank-{rank} adapter over the fused qkv = A[{rank},D] + B[3D,{rank}] = {4 * rank}·D "
        f"= {4 * rank * dim:,}: same `r`, but a smaller update (2/3 of our qkv params and FLOPs).",
        f"- peft qkv r{eq} (rank_pattern): A[{eq},D] + B[3D,{eq}] = {4 * eq}·D = {4 * eq * dim:,}: equal params AND "
        f"equal FLOPs to ours → the fairest speed comparison (different function class: one dense rank-{eq} "
        f"update vs three rank-{rank} slices).",
        f"- peft qkv r{3 * rank}: A[{3 * rank},D] is exactly our three A's stacked, B[3D,{3 * rank}] contains our "
        f"block-diagonal B → ours is a special case of it; {12 * rank}·D = {12 * rank * dim:,} params (2× ours).",
        "Primary training target: ours / peft(equal params). ours / peft r (same config) is shown as the literal "
        "issue comparison.",
    ])


# ---------------------------------------------------------------------------------------- layer micro-benchmark
def layer_bench(trainees: list, batch: int, tokens: int, warmup: int, iters: int) -> list[dict]:
    """Median ms of forward + backward of ONE wrapped layer (block 0's qkv and fc1) of each trainee, at the
    real activation shape [batch, tokens, D], interleaved; ratio = this ÷ ours (time)."""
    rows = []
    for path in ("attn.qkv", "mlp.fc1"):
        layers = {t.name: t.model.blocks[0].get_submodule(path) for t in trainees}
        first = next(iter(layers.values()))
        torch.manual_seed(4)
        x = torch.randn(batch, tokens, first.in_features, requires_grad=True)
        g = torch.randn(batch, tokens, first.out_features)

        def make(layer):
            params = [p for p in layer.parameters() if p.requires_grad]

            def fn():
                layer(x).backward(g)
                x.grad = None
                for p in params:
                    p.grad = None
            return fn
        times = interleaved({n: make(m) for n, m in layers.items()}, warmup, iters)
        med = {n: statistics.median(ts) for n, ts in times.items()}
        for n in layers:
            rows.append({"layer": path, "variant": n, "ms": 1000 * med[n], "ratio": med[n] / med["ours"]})
    return rows


# ---------------------------------------------------------------------------------------- profile
def profile_steps(trainees: list[Trainee], steps: int, rows: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    for t in trainees:
        t.step()  # warm
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                t.step()
        events = prof.key_averages()
        n_ops = sum(e.count for e in events if e.key.startswith("aten::"))
        total = sum(e.self_cpu_time_total for e in events) / 1000 / steps
        cs = [e for e in events if e.key == "torch::autograd::CopySlices"]  # not the evaluate_function wrapper
        cs_ms = sum(e.cpu_time_total for e in cs) / 1000 / steps
        cs_n = sum(e.count for e in cs) / steps
        print(f"\n#### profile: {t.name} — {steps} train steps, {n_ops / steps:.0f} aten op calls/step, "
              f"self CPU {total:.1f} ms/step; autograd CopySlices (backward of in-place slice writes): "
              f"{cs_n:.0f} calls, {cs_ms:.1f} ms/step (each clones the whole qkv output gradient)\n")
        print("```")
        print(events.table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=38))
        print("```")


# ---------------------------------------------------------------------------------------- main
def machine_info(args) -> list[str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import timm
    import peft
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    return [
        f"- command: `{shlex.join([os.path.relpath(sys.executable), *sys.argv])}`",
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; torch threads {torch.get_num_threads()} "
        f"(interop {torch.get_num_interop_threads()}); load average at start {load[0]:.2f}",
        f"- python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, "
        f"peft {peft.__version__}, metapeft {mp.__version__}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=BUNDLED, help="timm ViT name; the bundled one uses its real weights, "
                                                     "others pretrained=None")
    ap.add_argument("--random-init", action="store_true", help="random weights even for the bundled model")
    ap.add_argument("--sizes", nargs="+", type=int, default=[56, 112])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--num-classes", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20, help="timed rounds (each runs every variant once)")
    ap.add_argument("--eval-iters", type=int, default=None, help="timed inference rounds (default: --iters)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--mem-steps", type=int, default=3, help="train steps per memory child")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    ap.add_argument("--profile", action="store_true", help="torch.profiler top ops of each train variant")
    ap.add_argument("--profile-steps", type=int, default=3)
    ap.add_argument("--profile-rows", type=int, default=15)
    ap.add_argument("--layers", action="store_true",
                    help="also time forward + backward of single wrapped layers (block 0 qkv, fc1), ours vs peft")
    ap.add_argument("--layer-iters", type=int, default=40, help="timed rounds of the --layers benchmark")
    ap.add_argument("--profile-size", type=int, default=None, help="image size to profile at (default: largest)")
    ap.add_argument("--peft", choices=["all", "fair"], default="all",
                    help="peft variants: all (same r, equal params, 2x params) or only the equal-params one")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    global PEFT_VARIANTS
    PEFT_VARIANTS = args.peft
    torch.set_num_threads(args.threads)
    if args.child:
        child_main(args)
        return
    eval_iters = args.eval_iters or args.iters

    print("## metapeft LoRA throughput\n")
    print("\n".join(machine_info(args)))
    weights = "bundled real weights" if args.model == BUNDLED and not args.random_init else "random init"
    print(f"- model {args.model} ({weights}), batch {args.batch}, LoRA rank {args.rank} at qkv(q,k,v)/proj/fc1/fc2 "
          f"of every block, SGD lr 0.01 momentum 0.9; warm-up {args.warmup}, {args.iters} timed rounds "
          f"(train), {eval_iters} (eval); images/s = batch / median step time, [p25–p75 step time] in brackets")

    train_rows, eval_rows, layer_rows, notes = [], [], [], []
    profile_size = args.profile_size or max(args.sizes)
    for si, size in enumerate(args.sizes):
        bare = build_bare(args, size)
        if si == 0:
            print("\n" + fairness_note(args.rank, bare.embed_dim))
        torch.manual_seed(3)
        x = torch.randn(args.batch, 3, size, size)
        y = torch.randint(0, args.num_classes, (args.batch,))
        names = ["ours", *peft_qkv_ranks(args.rank)]
        trainees = [Trainee(n, variant_model(n, bare, args), x, y) for n in names]
        tokens = bare.patch_embed.num_patches + bare.num_prefix_tokens
        if args.layers:
            print(f"### {size} px, layer benchmark …", file=sys.stderr, flush=True)
            for r in layer_bench(trainees, args.batch, tokens, args.warmup, args.layer_iters):
                layer_rows.append({"size": size, **r})
        print(f"### {size} px ({tokens} tokens/image), training …", file=sys.stderr, flush=True)
        times = interleaved({t.name: t.step for t in trainees}, args.warmup, args.iters)
        stats = {n: summary(ts, args.batch) for n, ts in times.items()}
        mem = {}
        if not args.no_memory:
            for n in names:
                mem[n] = measure_memory(n, size, args)
        for t in trainees:
            m = t.model
            mm = mem.get(t.name)
            train_rows.append({
                "size": size, "tokens": tokens, "variant": t.name, "lora": lora_params(m),
                "qkv": qkv_lora_params(m), "trainable": sum(p.numel() for p in trainable(m)),
                **stats[t.name], "ratio": stats["ours"]["ips"] / stats[t.name]["ips"],
                "mem": None if mm is None else (mm["peak_kb"] - mm["base_kb"]) * 1024 / MiB,
                "saved": None if mm is None else mm["saved_bytes"] / MiB,
            })
            if mm is not None:
                notes.append(mm["method"])
        if args.profile and size == profile_size:
            print(f"\n### Profile at {size} px (self CPU time, top {args.profile_rows} ops)")
            profile_steps(trainees, args.profile_steps, args.profile_rows)

        # ---- inference: merged vs bare (+ unmerged LoRA for information)
        ours = trainees[0].model
        merged = mp.merge_peft(copy.deepcopy(ours)).eval()
        ours.eval()
        bare.eval()
        with torch.inference_mode():
            xe = x
            diff = (merged(xe) - ours(xe)).abs().max().item()
            evals = {"bare backbone": lambda: bare(xe), "ours merged": lambda: merged(xe),
                     "ours unmerged (info)": lambda: ours(xe)}
            print(f"### {size} px, inference …", file=sys.stderr, flush=True)
            et = interleaved(evals, args.warmup, eval_iters)
        es = {n: summary(ts, args.batch) for n, ts in et.items()}
        for n in evals:
            eval_rows.append({"size": size, "variant": n, **es[n], "ratio": es[n]["ips"] / es["bare backbone"]["ips"],
                              "diff": diff if n == "ours merged" else None})
        by = {r["variant"]: r for r in train_rows if r["size"] == size}
        fair = list(peft_qkv_ranks(args.rank))[-2 if len(peft_qkv_ranks(args.rank)) > 2 else 0]
        merged_ratio = es["ours merged"]["ips"] / es["bare backbone"]["ips"]
        print(f"[{size} px done] ours {by['ours']['ips']:.1f} img/s, {fair} {by[fair]['ips']:.1f} img/s, "
              f"ratio {by[fair]['ratio']:.2f}x; merged ÷ bare {merged_ratio:.2f}x",
              file=sys.stderr, flush=True)  # a partial result survives an interrupted long run
        del trainees, merged, ours, bare
        gc.collect()

    print("\n### Training step (forward + backward + SGD step)\n")
    print("| px | variant | LoRA params (qkv / block) | trainable incl. head | images/s [IQR] | ms/step "
          "| ours ÷ this (×) | peak RSS Δ MiB | saved for backward MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in train_rows:
        mem = "n/a | n/a" if r["mem"] is None else f"{r['mem']:.0f} | {r['saved']:.0f}"
        print(f"| {r['size']} | {r['variant']} | {r['lora']:,} ({r['qkv']:,}) | {r['trainable']:,} "
              f"| {r['ips']:.1f} [{r['ips_lo']:.1f}–{r['ips_hi']:.1f}] | {r['med_ms']:.0f} | {r['ratio']:.2f} "
              f"| {mem} |")
    print("\nTarget: ours ≥ 1.10× peft (equal params) on training (ratio column = ours images/s ÷ that variant's; "
          "> 1 = ours faster).")
    peft_names = list(peft_qkv_ranks(args.rank))
    fair = peft_names[1] if len(peft_names) > 2 else peft_names[0]
    for size in args.sizes:
        by = {r["variant"]: r for r in train_rows if r["size"] == size}
        same = f", ours ÷ {peft_names[0]} (same r) = {by[peft_names[0]]['ratio']:.2f}×" if len(peft_names) > 1 else ""
        print(f"- {size} px: ours ÷ {fair} (equal params) = {by[fair]['ratio']:.2f}×{same}")
    print("\nPeak RSS Δ: " + (sorted(set(notes))[0] if notes else "not measured (--no-memory or child failed)") +
          f", {args.mem_steps} steps in a fresh process per variant (includes transient tensors and "
          "allocator slack, what the OS sees). Saved for backward: bytes of the distinct storages autograd "
          "keeps after one forward (saved_tensors_hooks), independent of the allocator.")

    if layer_rows:
        print("\n### One wrapped layer, forward + backward (block 0, activation [batch, tokens, D]; --layers)\n")
        print("| px | layer | variant | ms (median) | this ÷ ours (time) |")
        print("|---|---|---|---|---|")
        for r in layer_rows:
            print(f"| {r['size']} | {r['layer']} | {r['variant']} | {r['ms']:.2f} | {r['ratio']:.2f} |")

    print("\n### Inference (`torch.inference_mode()`, eval mode)\n")
    print("| px | model | images/s [IQR] | ms/batch | ÷ bare (×) | max |merged − unmerged| |")
    print("|---|---|---|---|---|---|")
    for r in eval_rows:
        d = "" if r["diff"] is None else f"{r['diff']:.1e}"
        print(f"| {r['size']} | {r['variant']} | {r['ips']:.1f} [{r['ips_lo']:.1f}–{r['ips_hi']:.1f}] "
              f"| {r['med_ms']:.1f} | {r['ratio']:.2f} | {d} |")
    print("\nTarget: ours merged ≥ 0.98× bare backbone (after `merge_peft` the model is structurally the bare "
          "timm ViT with different weights, so ~1.00× is expected; deviations are machine noise).")
    load = os.getloadavg()
    print(f"\nLoad average at end: {load[0]:.2f} (shared machine: numbers above are noisy, ratios are "
          f"interleaved and more reliable).")


if __name__ == "__main__":
    main()
