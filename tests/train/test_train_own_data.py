"""A user's own ImageFolder is trained as given, with MetaPEFT on by default (issue 13, item 1)."""

from __future__ import annotations

import json

from metapeft.cli import main
from metapeft.config import RunConfig


def test_defaults_use_data_as_given_and_metapeft():
    cfg = RunConfig.load(None)
    assert cfg.data.imbalance_ratio is None
    assert cfg.meta.enabled is True and cfg.peft.method == "lora"
    # a method without γ turns the default off instead of failing
    assert RunConfig.load(None, ["peft.method=bitfit"]).meta.enabled is False


def _train(tmp_path, folder, extra, capsys, tiny_model):
    out = tmp_path / "run"
    code = main(["train", "-q", "--set", "data.name=imagefolder", f"data.root={folder}", *tiny_model,
                 "train.epochs=1", "train.batch_size=8", "train.threads=1", *extra, "--out", str(out)])
    assert code == 0
    return out, capsys.readouterr().out


def test_own_long_tailed_folder_is_used_whole_and_gamma_learns(tmp_path, own_folder, capsys, tiny_model):
    out, printed = _train(tmp_path, own_folder, [], capsys, tiny_model)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["steps"] == (24 + 12 + 6 + 3) // 8   # every training image, no LT subsampling
    assert metrics["run"]["meta_steps"] >= 2 and metrics["run"]["meta_interval"] == 2, "5 steps an epoch need meta steps"
    gamma = json.loads((out / "gamma.json").read_text())["gamma"]
    assert any(abs(v - 1.0) > 1e-4 for v in gamma.values())
    assert "learned γ" in printed


def test_fixed_gamma_run_says_so(tmp_path, own_folder, capsys, tiny_model):
    _, printed = _train(tmp_path, own_folder, ["meta.enabled=false"], capsys, tiny_model)
    assert "learned γ" not in printed
    assert "γ fixed at 1 (meta.enabled=false" in printed
