"""``save_peft`` / ``load_peft``: peft's ``save_pretrained`` / ``PeftModel.from_pretrained`` for metapeft models.

A directory holds ``peft.safetensors`` (PEFT weights + γ + head, tensors only) and ``peft_config.json``
(the ``PeftConfig`` plus the head's kind and scale) — the same two files every run writes into
``RUN/export/``, so ``load_peft(base, "RUN/export")`` works on a finished run too.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from .apply import apply_peft
from .config import PeftConfig

WEIGHTS = "peft.safetensors"
CONFIG = "peft_config.json"


def _head_spec(model: nn.Module) -> dict:
    from ..train.heads import CosineClassifier

    head = model.get_classifier()
    if isinstance(head, CosineClassifier):
        return {"kind": "cosine", "scale": head.scale, "num_classes": head.weight.shape[0]}
    return {"kind": "linear", "num_classes": getattr(head, "out_features", 0)}


def save_peft(model: nn.Module, directory: str | Path) -> Path:
    """Write the adapter (PEFT weights, γ, head) of ``model`` — never the frozen backbone."""
    from ..train.checkpoint import atomic_save_safetensors, atomic_write_text, trainable_state

    cfg = getattr(model, "peft_config", None)
    if cfg is None:
        raise ValueError("save_peft: the model has no PEFT applied (call mp.apply_peft first)")
    out = Path(directory)
    meta = {**cfg.to_dict(), "head": _head_spec(model)}
    atomic_save_safetensors(trainable_state(model), out / WEIGHTS, metadata={"peft_config": json.dumps(meta)})
    atomic_write_text(out / CONFIG, json.dumps(meta, indent=1))
    return out


def load_peft(model: nn.Module, directory: str | Path) -> nn.Module:
    """Put the saved adapter on ``model`` (a backbone with the same pretrained weights) and load its weights.

    PEFT is applied from the saved config when the model has none yet; the classifier head is rebuilt to
    the saved kind and class count when it differs (a run's cosine head on a fresh timm model).
    """
    from ..train.checkpoint import load_trainable_state
    from ..train.heads import build_head

    d = Path(directory)
    if not (d / WEIGHTS).is_file():
        raise FileNotFoundError(f"load_peft: no {WEIGHTS} in {d}")
    with safe_open(str(d / WEIGHTS), "pt") as f:
        meta = json.loads((f.metadata() or {}).get("peft_config") or (d / CONFIG).read_text())
    head = meta.pop("head", None)
    if head is not None and _head_spec(model) != head:
        device = next(model.get_classifier().parameters()).device
        model.head = build_head(head["kind"], model.num_features, int(head["num_classes"]), head.get("scale", 25.0))
        model.head.to(device)
        if getattr(model, "peft_config", None) is not None:  # else apply_peft below sets it
            model.head.requires_grad_(model.peft_config.train_head)
    if getattr(model, "peft_config", None) is None:
        apply_peft(model, PeftConfig(**meta))
    load_trainable_state(model, load_file(str(d / WEIGHTS)))
    return model
