"""Bad input: one clear `error:` line, exit code 2, nothing already written is lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from metapeft.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args,needle", [
    (["--config", "does/not/exist.yaml"], "config file not found"),
    (["--set", "train.epochz=3"], "unknown key(s) in train: epochz"),
    (["--set", "train.lr=fast"], "train.lr: expected float"),
    (["--set", "peft.method=prompt"], "unknown method 'prompt'"),
    (["--set", "peft.positions=q,x"], "unknown position"),
    (["--set", "meta.enabled=true", "peft.method=bitfit"], "needs a method with γ"),
    (["--set", "data.name=nosuchset"], "nosuchset"),
    (["--set", "data.root=/nonexistent/data/root"], "/nonexistent/data/root"),
    (["--set", "model.pretrained=/no/such/weights.safetensors"], "weights.safetensors"),
])
def test_bad_train_input(tmp_path, capsys, tiny_run, args, needle):
    code = main(["train", "--out", str(tmp_path / "run"), "-q", *args[:1], *args[1:]]
                if args[0] == "--config" else ["train", "--out", str(tmp_path / "run"), "-q", "--set",
                                               *tiny_run, *args[1:]])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.strip().startswith("error:") and "Traceback" not in err
    assert err.count("error:") == 1


def test_bad_yaml_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [epochs: 3\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_eval_of_missing_run(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path)]) == 2
    assert "no run found" in capsys.readouterr().err


@pytest.mark.slow
def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "metapeft", "info"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "metapeft" in out.stdout and "data root" in out.stdout


def test_cli_docstring_names_only_real_commands_and_config_files():
    import re

    from metapeft import cli

    doc = cli.__doc__
    commands = set(cli.build_parser()._subparsers._group_actions[0].choices)
    first = doc.split("\n")[0]
    assert set(re.findall(r"\b(\w+)\b", first.split(":", 1)[1])) == commands
    assert {m for m in re.findall(r"metapeft (\w+)", doc)} <= commands
    configs = re.findall(r"(configs/[\w./-]+\.yaml)", doc)
    assert configs and all((REPO / c).is_file() for c in configs), configs
