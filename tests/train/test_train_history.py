"""history.csv has one header for every row, whatever train.eval_every is (issue 13, item 9)."""

from __future__ import annotations

import csv

import pytest

from metapeft.config import RunConfig
from metapeft.train import Trainer


@pytest.mark.parametrize("every", [1, 2, 3])
def test_history_is_rectangular(tmp_path, tiny_run, every):
    cfg = RunConfig.load(None, tiny_run + ["train.epochs=3", f"train.eval_every={every}", "train.threads=1"])
    Trainer(cfg, tmp_path / "run", quiet=True).run()
    with (tmp_path / "run" / "history.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert len(body) == 3 and all(len(r) == len(header) for r in body)
    assert header.count("epoch") == 1 and [r[header.index("epoch")] for r in body] == ["1", "2", "3"]
    evaluated = [e for e in (1, 2) if e % every == 0]   # the last epoch is evaluated after the loop
    if evaluated:
        col = header.index("balanced")
        assert [bool(r[col]) for r in body] == [e in evaluated for e in (1, 2, 3)]
    else:
        assert "balanced" not in header
