"""Frozen-prefix caching is exact: same logits, same training as the uncached path."""

from __future__ import annotations

import json

import pytest
import torch

import metapeft as mp
from metapeft.config import RunConfig
from metapeft.train import Trainer
from metapeft.train.model import build_model
from metapeft.train.prefix_cache import SuffixModel, cacheable_prefix, prefix_tokens
from metapeft.train.pipeline import prepare_data


def cfg_with(tiny_run, extra):
    return RunConfig.load(None, tiny_run + ["model.options={depth: 4, patch_size: 8, embed_dim: 48, num_heads: 2}",
                                            "data.augment=false"] + extra)


@pytest.mark.parametrize("blocks,start", [("[2]", 2), ("[1,3]", 1), ("all", 0), ("last:1", 3)])
def test_prefix_start_is_the_first_trainable_block(tiny_run, blocks, start):
    cfg = cfg_with(tiny_run, [f"peft.blocks={blocks}"])
    assert cacheable_prefix(build_model(cfg, 30), cfg) == start


def test_no_cache_with_augmentation_or_prompts(tiny_run):
    cfg = cfg_with(tiny_run, ["peft.blocks=[2]", "data.augment=true"])
    assert cacheable_prefix(build_model(cfg, 30), cfg) == 0
    cfg = cfg_with(tiny_run, ["peft.method=vpt_deep", "peft.blocks=[2]"])
    assert cacheable_prefix(build_model(cfg, 30), cfg) == 0
    cfg = cfg_with(tiny_run, ["peft.blocks=[2]", "train.cache_prefix=false"])
    assert cacheable_prefix(build_model(cfg, 30), cfg) == 0


def test_suffix_on_cached_tokens_equals_full_forward(tiny_run):
    cfg = cfg_with(tiny_run, ["peft.blocks=[2,3]"])
    ds = mp.data.load_dataset("aid", max_per_class=2, test_fraction=0.5)
    model = build_model(cfg, ds.num_classes).eval()
    with torch.no_grad():
        for m in mp.peft.site_modules(model).values():
            m.lora_B.weight.normal_(0, 0.1)
    data = prepare_data(cfg, model.pretrained_cfg["mean"], model.pretrained_cfg["std"], ds)
    tokens = prefix_tokens(model, data.train, data.eval_tf, 2, torch.device("cpu"))
    with torch.no_grad():
        full = model(data.eval_tf(data.train.images))
        cached = SuffixModel(model, 2)(tokens)
    assert torch.allclose(full, cached, atol=1e-5)


@pytest.mark.slow
def test_cached_training_run_matches_uncached(tmp_path, tiny_run):
    runs = {}
    for cache in ("true", "false"):
        cfg = cfg_with(tiny_run, ["peft.blocks=[3]", "peft.positions=v,mlp1", f"train.cache_prefix={cache}",
                                  "meta.enabled=true", "meta.interval=2"])
        runs[cache] = Trainer(cfg, tmp_path / cache, quiet=True).run()
    a, b = (json.loads((runs[c].out_dir / "metrics.json").read_text()) for c in ("true", "false"))
    assert a["per_class"] == pytest.approx(b["per_class"], abs=1e-9)
    assert list(runs["true"].gamma.values()) == pytest.approx(list(runs["false"].gamma.values()), abs=1e-4)


@pytest.mark.slow
def test_runs_share_stored_prefix_tokens_and_stay_exact(tmp_path, tiny_run):
    """A second run with the same frozen prefix reads the stored tokens instead of recomputing them;
    its numbers equal an uncached run's. A different k gets its own file."""
    store = tmp_path / "store"
    common = ["peft.positions=v,mlp1", f"train.prefix_cache_dir={store}"]

    def run(name, extra):
        res = Trainer(cfg_with(tiny_run, extra), tmp_path / name, quiet=True).run()
        return json.loads((res.out_dir / "metrics.json").read_text())

    first = run("first", ["peft.blocks=[3]", *common])
    [stored] = store.glob("prefix-*.safetensors")
    stamp = stored.stat().st_mtime_ns
    second = run("second", ["peft.blocks=[3]", "peft.positions=q", f"train.prefix_cache_dir={store}"])
    assert stored.stat().st_mtime_ns == stamp and len(list(store.glob("prefix-*"))) == 1, "reused, not rewritten"
    uncached = run("uncached", ["peft.positions=q", "peft.blocks=[3]", "train.cache_prefix=false"])
    assert second["per_class"] == pytest.approx(uncached["per_class"], abs=1e-9)
    assert second["run"]["prefix_cached_blocks"] == 3 and uncached["run"]["prefix_cached_blocks"] == 0
    assert first["run"]["prefix_cached_blocks"] == 3

    run("other_k", ["peft.blocks=[2,3]", *common])
    assert len(list(store.glob("prefix-*.safetensors"))) == 2


@pytest.mark.slow
def test_linear_probe_caches_the_whole_backbone(tmp_path, tiny_run):
    results = {}
    for cache in ("true", "false"):
        cfg = cfg_with(tiny_run, ["peft.method=linear_probe", f"train.cache_prefix={cache}"])
        res = Trainer(cfg, tmp_path / cache, quiet=True).run()
        results[cache] = json.loads((res.out_dir / "metrics.json").read_text())
    assert results["true"]["run"]["prefix_cached_blocks"] == 4
    assert results["true"]["per_class"] == pytest.approx(results["false"]["per_class"], abs=1e-9)


def test_probe_settings_share_one_prefix_key(tiny_run):
    """A probe_l2 grid reuses one stored token file; a change that reaches the tokens still gets its own."""
    from metapeft.train.prefix_cache import prefix_key

    base = cfg_with(tiny_run, ["peft.method=linear_probe", "model.head_init=probe"])
    other = cfg_with(tiny_run, ["peft.method=linear_probe", "model.head_init=probe", "model.probe_l2=0.1",
                                "model.probe_iters=7", "model.probe_loss=la"])
    assert prefix_key(base, 4) == prefix_key(other, 4)
    assert prefix_key(base, 4) != prefix_key(cfg_with(tiny_run, ["model.img_size=40"]), 4)
