"""``export/model.onnx``: the whole classifier (merged backbone + head) for onnxruntime.

Input ``pixel_values`` [batch, 3, S, S] float32, already preprocessed as ``config.json`` describes
(mean / std / crop); output ``logits`` [batch, classes] — the same numbers as the metapeft model
(the cosine head's normalisation is inside the graph). Exported with torch's TorchScript-based
exporter (no onnxscript needed) and plain (non-fused) attention, on CPU, batch axis dynamic.
"""

from __future__ import annotations

import copy
import inspect
import io
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ..backbones import unfused_attention
from ..peft import merge_peft

OPSET = 17


def write_onnx(model: nn.Module, export_cfg: dict, path: Path) -> str:
    """Write ``path``; returns "" or why it could not be written (never fails the run)."""
    net = merge_peft(copy.deepcopy(model).cpu().float()).eval()
    size = export_cfg["input_size"]
    x = torch.zeros(1, *size)
    buf = io.BytesIO()
    try:
        with unfused_attention(net), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
            torch.onnx.export(net, (x,), buf, **legacy, opset_version=OPSET, input_names=["pixel_values"],
                              output_names=["logits"],
                              dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
    except Exception as e:  # an architecture the exporter cannot trace: say so, keep the other exports
        return f"no model.onnx: torch.onnx.export failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)
    return ""
