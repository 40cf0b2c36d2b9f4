"""Exports of a finished run into ``RUN/export/`` that other tools load (one file per format).

=====================  ===========================================================================
``config.json``        class names, input size, mean/std, crop, backbone name and kwargs, head (timm
                       ``pretrained_cfg`` style) — the only metadata predict / eval need
``peft.safetensors``   metapeft's adapter: PEFT weights + γ + head (``peft_config.json`` beside it)
``hf_peft/``           HF peft LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``)
``merged.safetensors`` LoRA folded in: plain ``timm.create_model(...)`` loads it strictly
                       (``train.export_merged``; sweep cells skip it)
``model.onnx``         the whole classifier for onnxruntime (``train.export_onnx``)
=====================  ===========================================================================

A format that does not apply to the run's method is skipped with a note in ``config.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from torch import nn

from .hf_peft import write_hf_peft
from .merged import plain_timm_state
from .model_config import build_export_config, read_export_config, write_export_config
from .onnx import write_onnx

__all__ = ["export_run", "read_export_config"]


def export_run(model: nn.Module, cfg, out_dir: Path, ds, mean, std,
               log: Callable[[str], None] | None = None) -> dict:
    """Write every export of ``model`` into ``out_dir / "export"``; returns the config.json content."""
    from ..peft.saving import save_peft
    from ..train.checkpoint import atomic_save_safetensors

    log = log or (lambda msg: None)
    export = Path(out_dir) / "export"
    started = time.perf_counter()
    files = {"metapeft": "peft.safetensors", "peft_config": "peft_config.json"}
    notes: list[str] = []
    info = build_export_config(cfg, list(ds.classes), mean, std, model.num_features, files=files, notes=notes)
    # the training distribution, so an evaluation elsewhere keeps this run's many / medium / few groups
    info["train_class_counts"] = [int(c) for c in ds.train_class_counts]
    info["class_groups"] = {g: [int(i) for i in v] for g, v in ds.class_groups.items()}
    save_peft(model, export)  # peft.safetensors + peft_config.json: what mp.load_peft reads
    why = write_hf_peft(model, info, export / "hf_peft")
    _record(files, notes, "hf_peft", "hf_peft/", why)
    if cfg.train.export_merged is not False:
        log("export: merged weights for plain timm ...")
        sd, why = plain_timm_state(model, info)
        if sd is None:
            notes.append(why)
        else:
            atomic_save_safetensors(sd, export / "merged.safetensors", metadata={"format": "pt"})
            files["timm"] = "merged.safetensors"
    if cfg.train.export_onnx is not False:
        log("export: ONNX graph ...")
        _record(files, notes, "onnx", "model.onnx", write_onnx(model, info, export / "model.onnx"))
    write_export_config(export, info)
    log(f"export: {', '.join(files.values())} in {export} ({time.perf_counter() - started:.1f} s)")
    for note in notes:
        log(f"export: {note}")
    return info


def _record(files: dict[str, str], notes: list[str], key: str, name: str, why: str) -> None:
    if why:
        notes.append(why)
    else:
        files[key] = name
