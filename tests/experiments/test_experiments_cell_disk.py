"""A sweep cell keeps adapters + γ + head (+ its last checkpoint), never a whole model unless asked:
at ViT-B scale a merged model is 328 MB per cell, a 66-cell sweep 21 GB."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metapeft.cli import main
from metapeft.config import RunConfig
from metapeft.train.model import build_model


def _bytes(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


@pytest.mark.slow
def test_a_cell_stores_no_whole_model_unless_asked(tmp_path, tiny_cell):
    out = tmp_path / "sweep"
    assert main(["sweep", "--set", *tiny_cell, "--grid", "train.export_merged=false,true", "--out", str(out),
                 "-q"]) == 0
    model = build_model(RunConfig.load(None, tiny_cell), num_classes=30)
    whole = sum(t.numel() * t.element_size() for t in model.state_dict().values() if isinstance(t, torch.Tensor))
    lean, merged = out / "cells" / "train.export_merged=false", out / "cells" / "train.export_merged=true"
    assert (lean / "metrics.json").is_file() and not list(lean.rglob("merged*")) and not list(lean.rglob("*.onnx"))
    # Everything the default cell keeps is smaller than one copy of the model's weights ...
    assert _bytes(lean) < whole, (_bytes(lean), whole, sorted((f.stat().st_size, str(f)) for f in lean.rglob("*")))
    # ... and the bound fails as soon as a merged model is written (the opt-in cell).
    assert _bytes(merged) > whole and (merged / "export" / "merged.safetensors").stat().st_size > 0.9 * whole
