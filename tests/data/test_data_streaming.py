"""Above the RAM budget a folder is read lazily in DataLoader workers, and yields the very batches of the
in-memory path for the same seed (order, crops, flips, labels): only where the pixels come from changes."""

from __future__ import annotations

import pytest
import torch

from metapeft.data import BatchAugment, BatchLoader, LazyImages, load_dataset


def test_lazy_folder_gives_the_in_memory_batches(own_folder):
    root = own_folder  # 4 classes, 24/12/6/3 training images (tests/conftest.py)
    mem = load_dataset("imagefolder", str(root), image_size=40)
    lazy = load_dataset("imagefolder", str(root), image_size=40, ram_budget_gb=1e-6)  # any set is "too big"
    assert not mem.train.lazy and lazy.train.lazy and lazy.test.lazy
    assert isinstance(lazy.train.images, LazyImages) and lazy.train.images.shape == mem.train.images.shape
    assert torch.equal(lazy.train.labels, mem.train.labels) and lazy.train.files == mem.train.files
    tf = BatchAugment(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), train=True, scale=(0.3, 1.0))
    a = BatchLoader(mem.train, 4, shuffle=True, drop_last=True, transform=tf, seed=3)
    b = BatchLoader(lazy.train, 4, shuffle=True, drop_last=True, transform=tf, seed=3, workers=2)
    assert a.workers == 0 and b.workers == 2
    for epoch in range(2):  # persistent workers across epochs; the order changes per epoch
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        batches = list(zip(a, b))
        assert len(batches) == len(a) == 45 // 4
        for (xa, ya), (xb, yb) in batches:
            assert torch.equal(ya, yb) and torch.equal(xa, xb)
    b.set_epoch(5, start_batch=1)  # resume inside an epoch
    a.set_epoch(5, start_batch=1)
    assert len(list(zip(a, b))) == len(a) - 1
    b.set_epoch(5, start_batch=1)
    a.set_epoch(5, start_batch=1)
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, b))
    # evaluation order, no augmentation, last partial batch kept
    ev = BatchAugment(32, (0.5,) * 3, (0.25,) * 3, train=False)
    ea = list(BatchLoader(mem.test, 5, shuffle=False, transform=ev))
    eb = list(BatchLoader(lazy.test, 5, shuffle=False, transform=ev, workers=1))
    assert len(ea) == len(eb) and all(torch.equal(x, y) for (x, _), (y, _) in zip(ea, eb))


def test_a_lazy_subset_decodes_nothing_until_read(own_folder):
    lazy = load_dataset("imagefolder", str(own_folder), image_size=40, ram_budget_gb=1e-6, max_per_class=3)
    mem = load_dataset("imagefolder", str(own_folder), image_size=40, max_per_class=3)
    assert lazy.train.lazy and len(lazy.train) == 12
    assert torch.equal(lazy.train.images[torch.arange(12)], mem.train.images)
    assert torch.equal(lazy.train.images[2:5], mem.train.images[2:5])


def test_budget_key_and_workers_are_validated():
    from metapeft.config import RunConfig
    from metapeft.errors import ConfigError

    with pytest.raises(ConfigError, match="data.ram_budget_gb"):
        RunConfig.load(None, ["data.ram_budget_gb=0"])
    with pytest.raises(ConfigError, match="data.workers"):
        RunConfig.load(None, ["data.workers=0"])


@pytest.mark.slow
def test_a_streamed_run_equals_the_in_memory_run(tmp_path, own_folder, tiny_model):
    """A whole MetaPEFT run (augmented batches, meta-val batches, head init, evaluation) on a folder read
    lazily in workers ends with the in-memory run's numbers and weights."""
    import json

    from safetensors.torch import load_file

    from metapeft.cli import main

    outs = {}
    for name, extra in (("mem", []), ("lazy", ["data.ram_budget_gb=1e-6", "data.workers=2"])):
        outs[name] = tmp_path / name
        assert main(["train", "-q", "--set", "data.name=imagefolder", f"data.root={own_folder}", "data.image_size=40",
                     *tiny_model, "train.epochs=2", "train.batch_size=8", "train.threads=1", *extra,
                     "--out", str(outs[name])]) == 0
    from metapeft.config import RunConfig
    from metapeft.train.pipeline import load_run_dataset

    cfg = RunConfig.load(None, ["data.name=imagefolder", f"data.root={own_folder}", "data.ram_budget_gb=1e-6"])
    assert load_run_dataset(cfg).train.lazy  # the second run really streamed
    a, b = (json.loads((outs[n] / "metrics.json").read_text()) for n in ("mem", "lazy"))
    assert a["run"]["meta_steps"] >= 2
    assert {k: a[k] for k in ("overall", "balanced", "per_class", "confusion")} == \
        {k: b[k] for k in ("overall", "balanced", "per_class", "confusion")}
    wa, wb = (load_file(str(outs[n] / "export" / "peft.safetensors")) for n in ("mem", "lazy"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
