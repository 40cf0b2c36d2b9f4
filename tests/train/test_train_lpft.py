"""``model.head_init=probe`` in real (tiny) runs: the linear probe as a model (epochs=0) and LP-FT for any method."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from metapeft.cli import main

PROBE = ["model.head_init=probe", "model.probe_iters=50"]
LINEAR_PROBE = ["peft.method=linear_probe", "model.head=linear", "train.epochs=0", *PROBE]


def metrics(res):
    return json.loads((res.out_dir / "metrics.json").read_text())


def head_weight(res):
    return load_file(str(res.out_dir / "export" / "peft.safetensors"))["head.weight"]


def test_linear_probe_with_zero_epochs_is_the_fitted_head(runs, tmp_path, tiny_run, capsys):
    m = metrics(runs.run(tiny_run + LINEAR_PROBE + ["train.val_holdout=0.3"], "lp"))
    fit = m["run"]["head_init"]
    assert fit["kind"] == "probe" and fit["head"] == "Linear" and fit["loss"] == "balanced_ce"
    assert fit["loss_after"] < fit["loss_before"] and fit["l2"] == 1e-3
    assert m["run"]["steps"] == 0 and m["model_selection"]["model"] == "head_init"
    assert "val" in m and 0 <= m["val"]["balanced"] <= 1      # the hold-out that picks probe_l2
    assert (tmp_path / "lp" / "export" / "merged.safetensors").is_file()
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "lp"), "--json"]) == 0   # rebuilt from the run dir alone
    again = json.loads(capsys.readouterr().out)
    assert again["overall"] == pytest.approx(m["overall"]) and again["confusion"] == m["confusion"]


def test_nearest_class_mean_and_probe_heads_differ(runs, tiny_run):
    base = tiny_run + ["peft.method=linear_probe", "model.head=linear", "train.epochs=0"]
    ncm = runs.run(base, "ncm")
    probe = runs.run(base + PROBE, "probe")
    assert "head_init" not in metrics(ncm)["run"]    # the default run's metrics.json is unchanged
    assert not torch.equal(head_weight(ncm), head_weight(probe))


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["meta.enabled=true", "meta.interval=2"],
                                   ["meta.enabled=true", "meta.mode=stepsize", "meta.calib_steps=4",
                                    "meta.interval=2"]], ids=["lora", "metapeft_gamma", "metapeft_stepsize"])
def test_lpft_runs_for_every_mode_and_starts_from_the_probe(runs, tiny_run, extra):
    over = tiny_run + extra + ["train.epochs=1"]
    lpft, cm = runs.run(over + PROBE, "lpft"), runs.run(over, "cm")
    assert metrics(lpft)["run"]["head_init"]["kind"] == "probe"
    assert not torch.equal(head_weight(lpft), head_weight(cm))


@pytest.mark.slow
def test_lpft_resume_from_an_epoch_checkpoint_matches_the_uninterrupted_run(runs, tiny_run):
    over = tiny_run + PROBE + ["train.keep_checkpoints=3", "meta.enabled=true", "meta.interval=2"]
    full = runs.run(over, "full")
    part = runs.run(over, "part")
    (part.out_dir / "checkpoints" / "latest").write_text("epoch_0001\n")   # as if killed after epoch 1
    (part.out_dir / "metrics.json").unlink()
    resumed = runs.run(over, "part", resume=True)
    assert runs.results(full) == runs.results(resumed)
    assert torch.equal(head_weight(full), head_weight(part))
    assert "fit" in metrics(resumed)["run"]["head_init"]          # no second fit on resume: the checkpoint's head
