"""Progress is plain log lines, not bar frames, when stderr is not a terminal (issue 13, item 11)."""

from __future__ import annotations

from metapeft import progress as prog
from metapeft.config import RunConfig
from metapeft.train import Trainer


def test_lines_not_frames_off_a_terminal(capsys):
    bar = prog.progress(range(3), "decode", unit="images", every_s=0.0, min_s=0.0)
    bar.set_postfix(loss="0.5")
    assert list(bar) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0] == lines[0].strip() and lines[0].startswith("decode: 1/3 images (33%)")
    assert lines[-1].endswith("loss=0.5  done") and len(lines) == 4


def test_short_steps_are_silent_and_set_enabled_silences_all(capsys):
    assert list(prog.progress(range(3), "evaluate")) == [0, 1, 2]     # < min_s: no line
    prog.set_enabled(False)
    try:
        assert list(prog.progress(range(3), "x", every_s=0.0, min_s=0.0)) == [0, 1, 2]
    finally:
        prog.set_enabled(True)
    assert capsys.readouterr().err == ""


def test_training_log_has_no_bar_frames(tmp_path, tiny_run, capfd):
    cfg = RunConfig.load(None, tiny_run + ["train.progress=true", "train.epochs=1", "train.threads=1"])
    Trainer(cfg, tmp_path / "run").run()
    err = capfd.readouterr().err
    assert "\r" not in err and "epoch=1" in err and "export:" in err
