"""Every export is checked against the metapeft model's own outputs (issue 13, item 4)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from metapeft.config import RunConfig
from metapeft.experiments.cellconfig import build_cell_config, resolve_base
from metapeft.export import export_run
from metapeft.train.model import build_model

TOL = 1e-4


def _trained_like(tiny_run, extra, perturbed):
    """A tiny model whose LoRA matrices, γ and head are random (a fresh one would be the plain backbone)."""
    cfg = RunConfig.load(None, tiny_run + extra)
    model = perturbed(build_model(cfg, 5), seed=3)
    with torch.no_grad():
        model.get_classifier().weight.normal_()
    ds = SimpleNamespace(classes=[f"c{i}" for i in range(5)], train_class_counts=torch.tensor([9, 7, 5, 3, 1]),
                         class_groups={"many": [], "medium": [], "few": [0, 1, 2, 3, 4]})
    return cfg, model, ds


def _export(tmp_path, tiny_run, extra, perturbed):
    cfg, model, ds = _trained_like(tiny_run, extra, perturbed)
    info = export_run(model, cfg, tmp_path, ds, model.pretrained_cfg["mean"], model.pretrained_cfg["std"])
    return cfg, model, info, tmp_path / "export"


def _plain_timm(info, seed):
    torch.manual_seed(seed)  # the run's backbone had no pretrained file: same seed, same weights
    return timm.create_model(info["architecture"], pretrained=False, **info["model_kwargs"]).eval()


@pytest.fixture
def x():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("extra", [[], ["peft.positions=q,v,mlp1", "peft.blocks=last:1"]])
def test_hf_peft_adapter_loads_onto_plain_timm(tmp_path, tiny_run, x, extra, perturbed):
    from peft import PeftModel

    cfg, model, info, export = _export(tmp_path, tiny_run, extra, perturbed)
    adapter = json.loads((export / "hf_peft" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and "blocks.1.attn.qkv" in adapter["target_modules"]
    ref = PeftModel.from_pretrained(_plain_timm(info, cfg.train.seed), str(export / "hf_peft")).eval()
    with torch.no_grad():
        ours_f = model.forward_head(model.forward_features(x), pre_logits=True)
        ref_f = ref.forward_head(ref.forward_features(x), pre_logits=True)
        assert (ours_f - ref_f).abs().max() < TOL
        ref_logits = ref.get_classifier()(F.normalize(ref_f, dim=-1))   # the documented cosine recipe
        assert (ref_logits - model(x)).abs().max() < TOL


def test_onnx_logits_equal_metapeft(tmp_path, tiny_run, x, perturbed):
    import onnxruntime as ort

    _, model, info, export = _export(tmp_path, tiny_run, [], perturbed)
    assert info["files"]["onnx"] == "model.onnx"
    sess = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(["logits"], {"pixel_values": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(out - model(x).numpy()).max() < TOL


def test_merged_state_loads_strictly_into_plain_timm(tmp_path, tiny_run, x, perturbed):
    _, model, info, export = _export(tmp_path, tiny_run, [], perturbed)
    plain = timm.create_model(info["architecture"], pretrained=False, **info["model_kwargs"]).eval()
    plain.load_state_dict(load_file(str(export / "merged.safetensors")), strict=True)
    with torch.no_grad():
        feats = plain.forward_head(plain.forward_features(x), pre_logits=True)
        logits = plain.get_classifier()(F.normalize(feats, dim=-1))
        assert (logits - model(x)).abs().max() < TOL
        assert torch.equal(plain(x).argmax(-1), model(x).argmax(-1))  # un-normalised: same classes
    cfg_json = json.loads((export / "config.json").read_text())
    assert cfg_json["label_names"] == [f"c{i}" for i in range(5)] and cfg_json["input_size"] == [3, 32, 32]
    assert cfg_json["head"]["kind"] == "cosine" and "normalize" in cfg_json["head"]["how"]
    assert {"mean", "std", "crop_pct", "architecture"} <= set(cfg_json)


def test_methods_timm_cannot_hold_are_noted_not_half_written(tmp_path, tiny_run, perturbed):
    _, _, info, export = _export(tmp_path, tiny_run, ["peft.method=adapter"], perturbed)
    assert not (export / "merged.safetensors").exists() and not (export / "hf_peft").exists()
    assert any("merged" in n for n in info["notes"]) and any("hf_peft" in n for n in info["notes"])
    assert (export / "model.onnx").is_file() and (export / "peft.safetensors").is_file()


def test_sweep_cells_skip_whole_model_files_unless_asked(tiny_run):
    cell = build_cell_config(resolve_base(None, tiny_run), {})
    assert cell.train.export_merged is False and cell.train.export_onnx is False
    asked = build_cell_config(resolve_base(None, tiny_run + ["train.export_merged=true"]), {})
    assert asked.train.export_merged is True
    assert RunConfig.load(None).train.export_merged is None   # single runs: written


def test_probe_fitted_linear_head_exports_exactly(tmp_path, tiny_run, x, perturbed):
    """head_init=probe folds its standardisation into a plain nn.Linear: merged timm and ONNX logits match."""
    import onnxruntime as ort

    from metapeft.train.probe import fit_probe

    cfg, model, ds = _trained_like(tiny_run, ["model.head=linear", "model.head_init=probe"], perturbed)
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(40, model.num_features, generator=g) * torch.logspace(-2, 1, model.num_features) + 5.0
    fit_probe(model.get_classifier(), feats, torch.arange(40) % 5, iters=20)
    assert model.get_classifier().bias.abs().max() > 0     # the fold's −W'μ is in the bias
    info = export_run(model, cfg, tmp_path, ds, model.pretrained_cfg["mean"], model.pretrained_cfg["std"])
    export = tmp_path / "export"
    assert info["head"]["kind"] == "linear"
    plain = timm.create_model(info["architecture"], pretrained=False, **info["model_kwargs"]).eval()
    plain.load_state_dict(load_file(str(export / "merged.safetensors")), strict=True)
    sess = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ours = model(x)
        assert (plain(x) - ours).abs().max() < TOL * max(1.0, float(ours.abs().max()))
        out = sess.run(["logits"], {"pixel_values": x.numpy()})[0]
        assert np.abs(out - ours.numpy()).max() < TOL * max(1.0, float(ours.abs().max()))
