"""Fixtures of tests/train: ``kit``, a TrainStep on a tiny LoRA ViT for tests that look inside one step
(collectives, host syncs, precision), and ``count_reads``, a counter of host reads of device values."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import metapeft as mp
from metapeft.config import MetaConfig, TrainConfig
from metapeft.meta import MetaLearner
from metapeft.train.distributed import DistEnv
from metapeft.train.optim import cosine_schedule
from metapeft.train.state import TrainState
from metapeft.train.step import TrainStep


def make_step(make_vit, *, hypergrad: str | None = None, interval: int = 3, env: DistEnv | None = None,
              device: str = "cpu", optimizer: str = "sgd", fused: bool = False, **train) -> TrainStep:
    """LoRA r2 on q/v of a 2-block ViT-Tiny (12 γ-less tensors + head), SGD; a meta step every ``interval``."""
    model = mp.apply_peft(make_vit(num_classes=5), mp.PeftConfig(method="lora", positions=["q", "v"], rank=2))
    model = model.to(device).train()
    with torch.no_grad():
        for m in mp.peft.site_modules(model).values():
            m.lora_B.weight.normal_(0, 0.1)  # non-zero branches: γ has a gradient
    gamma_ids = {id(g) for g in mp.gamma_parameters(model)}
    phi = {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in gamma_ids}
    extra = {"fused": True} if fused else {}
    opt = (torch.optim.SGD(list(phi.values()), lr=0.05, momentum=0.9, weight_decay=5e-4, **extra) if optimizer == "sgd"
           else torch.optim.AdamW(list(phi.values()), lr=1e-3, **extra))
    meta = None
    if hypergrad is not None:
        meta = MetaLearner(model, MetaConfig(enabled=True, hypergrad=hypergrad, interval=interval), F.cross_entropy,
                           reduce=(env or DistEnv()).mean_)
    else:
        for g in mp.gamma_parameters(model):
            g.requires_grad_(False)
    return TrainStep(model, phi, opt, cosine_schedule(opt, 100), torch.nn.CrossEntropyLoss(), TrainConfig(**train),
                     TrainState(), meta=meta, env=env)


def batch(seed: int, n: int = 4, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g).to(device), torch.randint(0, 5, (n,), generator=g).to(device)


def val_stream(device: str = "cpu"):
    i = 100
    while True:
        i += 1
        yield batch(i, device=device)


@pytest.fixture
def kit(make_vit) -> SimpleNamespace:
    return SimpleNamespace(make_step=lambda **kw: make_step(make_vit, **kw), batch=batch, val_stream=val_stream)


READS = ("item", "__float__", "__int__", "__bool__", "tolist", "cpu", "numpy", "__index__")


@contextlib.contextmanager
def _count_reads(monkeypatch, *optimizers):
    """Counts reads by name. ``optimizers``: their ``step`` counters are not counted (torch keeps them on the
    host unless the optimizer is capturable/fused, so reading them is no device sync even on a GPU)."""
    counts: dict[str, int] = {}
    host = {id(st["step"]) for opt in optimizers for st in opt.state.values() if "step" in st}
    for name in READS:
        orig = getattr(torch.Tensor, name)

        def wrapped(self, *a, _orig=orig, _name=name, **k):
            if id(self) not in host:
                counts[_name] = counts.get(_name, 0) + 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    try:
        yield counts
    finally:
        monkeypatch.undo()


@pytest.fixture
def count_reads():
    """``with count_reads(monkeypatch, *optimizers) as counts:`` counts host reads of device values by name."""
    return _count_reads


RESULT_KEYS = ("overall", "balanced", "many", "medium", "few", "per_class")


class TinyRuns:
    """Tiny training runs under one tmp dir: ``run`` trains (or resumes) one, ``read`` loads one of its JSON
    files, ``history`` its history.csv rows, ``results`` the metrics.json numbers two runs compare to be
    "the same run"."""

    def __init__(self, root) -> None:
        self.root = root

    def run(self, overrides: list[str], name: str, resume: bool = False):
        from metapeft.config import RunConfig
        from metapeft.train import Trainer

        return Trainer(RunConfig.load(None, overrides), self.root / name, resume=resume, quiet=True).run()

    @staticmethod
    def read(run, name: str) -> dict:
        import json

        return json.loads((run.out_dir / name).read_text())

    @staticmethod
    def history(run) -> list[dict]:
        import csv

        with (run.out_dir / "history.csv").open() as f:
            return list(csv.DictReader(f))

    def results(self, run) -> list:
        metrics = self.read(run, "metrics.json")
        return [metrics[k] for k in RESULT_KEYS]


@pytest.fixture
def runs(tmp_path) -> TinyRuns:
    return TinyRuns(tmp_path)
