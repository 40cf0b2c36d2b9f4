"""``export/config.json``: everything needed to rebuild and feed the model, without the training data.

Modelled on timm's ``pretrained_cfg``: ``architecture`` + ``model_kwargs`` recreate the network with
``timm.create_model``; ``input_size``, ``mean``, ``std``, ``crop_pct``, ``interpolation`` describe the
preprocessing; ``label_names`` are the class names in logit order. ``metapeft predict`` and
``metapeft eval --checkpoint`` read only this file, ``config.yaml`` (model / peft / train.seed) and the
saved weights — never the training images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT = "metapeft-export-v1"
FILE = "config.json"

COSINE_HEAD_NOTE = (
    "The run's head is a cosine classifier: logits = scale * normalize(f) @ normalize(W).T with f the "
    "pre-logit features. merged.safetensors and the HF peft head store it as a plain nn.Linear with "
    "weight = scale * normalize(W) and bias = 0, so the timm model's head needs L2-normalised features for "
    "the same logits: logits = model.head(F.normalize(model.forward_head(model.forward_features(x), "
    "pre_logits=True), dim=-1)). Without the normalisation, logits are scaled per image by |f| and the "
    "arg-max (the predicted class) is the same. model.onnx contains the normalisation.")


def build_export_config(cfg, class_names: list[str], mean, std, in_features: int, *, files: dict[str, str],
                        notes: list[str] | None = None) -> dict[str, Any]:
    """The JSON written next to the exported weights (see the module docstring)."""
    m, size = cfg.model, cfg.model.img_size
    head: dict[str, Any] = {"kind": m.head, "in_features": int(in_features), "num_classes": len(class_names)}
    if m.head == "cosine":
        head.update(scale=m.head_scale, how=COSINE_HEAD_NOTE)
    return {
        "format": FORMAT,
        "architecture": m.name,
        "model_kwargs": {"img_size": size, "num_classes": len(class_names), **m.options},
        "pretrained": m.pretrained,
        "num_classes": len(class_names),
        "label_names": list(class_names),
        "input_size": [3, size, size],
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "crop_pct": float(cfg.data.eval_crop or 1.0),
        "crop_mode": "center",
        "interpolation": "bilinear",
        "decode_size": cfg.data.image_size,
        "resize": "images are decoded as RGB (grayscale repeated to 3 channels), resized to decode_size when "
                  "set, centre-cropped to crop_pct of the shorter side, resized to input_size (antialiased "
                  "bilinear), then (x/255 - mean) / std",
        "head": head,
        "peft": cfg.peft.to_dict(),
        "files": files,
        "notes": notes if notes is not None else [],  # the caller appends to this same list
    }


def write_export_config(export_dir: Path, data: dict[str, Any]) -> Path:
    from ..train.checkpoint import atomic_write_text

    path = export_dir / FILE
    atomic_write_text(path, json.dumps(data, indent=1))
    return path


def read_export_config(run_dir: Path) -> dict[str, Any]:
    """``RUN/export/config.json``; a clear error for runs from before it existed or a broken file."""
    path = Path(run_dir) / "export" / FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: this run has no portable export (re-train with this "
                                "version, or evaluate it where its training data is)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown export format {data.get('format')!r} (expected {FORMAT})")
    return data
