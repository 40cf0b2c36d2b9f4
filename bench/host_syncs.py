"""Host reads (GPU syncs) per step: how often one training step makes Python read a device value.

    .venv/bin/python bench/host_syncs.py                                  # this checkout
    PYTHONPATH=/path/to/other/checkout/src .venv/bin/python bench/host_syncs.py   # compare another version

Counts calls of ``Tensor.item / __float__ / __bool__ / __int__ / tolist / cpu / numpy`` during steps of the
trainer's own ``TrainStep`` (bundled ViT-S/14 architecture, random init, LoRA r4 × 72 sites, 32 px, batch 4;
the count does not depend on the size). On a GPU each such read waits for the device queue to drain. The
optimizers' host-side ``step`` counters (torch keeps them on the CPU unless capturable) are not counted.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import metapeft as mp  # noqa: E402
from metapeft.config import MetaConfig, TrainConfig  # noqa: E402
from metapeft.meta import MetaLearner  # noqa: E402
from metapeft.train.optim import cosine_schedule  # noqa: E402
from metapeft.train.state import TrainState  # noqa: E402
from metapeft.train.step import TrainStep  # noqa: E402

READS = ("item", "__float__", "__int__", "__bool__", "tolist", "cpu", "numpy")


def counted(fn, *optimizers) -> int:
    host = {id(st["step"]) for o in optimizers for st in o.state.values() if "step" in st}
    n = [0]
    saved = {name: getattr(torch.Tensor, name) for name in READS}

    def wrap(orig):
        def f(self, *a, **k):
            if id(self) not in host:
                n[0] += 1
            return orig(self, *a, **k)
        return f

    for name, orig in saved.items():
        setattr(torch.Tensor, name, wrap(orig))
    try:
        fn()
    finally:
        for name, orig in saved.items():
            setattr(torch.Tensor, name, orig)
    return n[0]


def main() -> None:
    torch.manual_seed(0)
    model = mp.create_backbone("vit_small_patch14_dinov2", pretrained=None, img_size=28, num_classes=30)
    mp.apply_peft(model, mp.PeftConfig(method="lora", rank=4))
    with torch.no_grad():
        for m in mp.peft.site_modules(model).values():
            m.lora_B.weight.normal_(0, 0.02)
    gamma_ids = {id(g) for g in mp.gamma_parameters(model)}
    phi = {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in gamma_ids}
    x, y = torch.randn(4, 3, 28, 28), torch.randint(0, 30, (4,))
    val = iter(lambda: (x, y), None)
    print(f"metapeft from {os.path.dirname(mp.__file__)}; {len(phi)} trainable tensors, "
          f"{len(mp.gamma_parameters(model))} γ\n")
    print("| step | host reads per step |")
    print("|---|---|")
    for hypergrad, sync_free in ((None, False), (None, True), ("first_order", False), ("unrolled", False)):
        # train.sync_free: a fused SGD skips a bad step on the device; the step's values wait for a flush
        opt = torch.optim.SGD(list(phi.values()), lr=0.01, momentum=0.9, **({"fused": True} if sync_free else {}))
        meta = None
        if hypergrad:
            meta = MetaLearner(model, MetaConfig(enabled=True, hypergrad=hypergrad, interval=1), F.cross_entropy)
        step = TrainStep(model, phi, opt, cosine_schedule(opt, 100), torch.nn.CrossEntropyLoss(),
                         TrainConfig(sync_free=sync_free), TrainState(), meta=meta)
        step.step([(x, y)], val)  # optimizer state exists from here on
        n = counted(lambda: step.step([(x, y)], val), opt, *([meta.optimizer] if meta else []))
        name = (f"with a {hypergrad} meta step" if hypergrad else
                "ordinary, `train.sync_free` (one read per 50 steps at the flush)" if sync_free else "ordinary (plain PEFT)")
        print(f"| {name} | {n} |")


if __name__ == "__main__":
    main()
