"""``export/merged.safetensors``: a state dict that plain ``timm.create_model(...)`` loads strictly.

LoRA (with α·γ) is folded into the base weights and the wrappers dropped (``merge_peft``); the cosine
head becomes an ``nn.Linear`` with ``weight = scale · normalize(W)`` and zero bias (see
``model_config.COSINE_HEAD_NOTE`` for the feature normalisation it needs). Methods that add modules
timm does not have (Adapter, AdaptFormer, VPT, SSF) cannot be written this way: ``plain_timm_state``
then returns None with the reason, and the export says so instead of writing a file that half-loads.
"""

from __future__ import annotations

import copy

import timm
import torch
import torch.nn.functional as F
from torch import nn

from ..peft import merge_peft
from ..train.heads import CosineClassifier


def linear_head_state(head: nn.Module) -> dict[str, torch.Tensor]:
    """The head as ``nn.Linear`` tensors (cosine: pre-normalised, scaled weight, zero bias)."""
    w = head.weight.detach().float().cpu()
    if isinstance(head, CosineClassifier):
        return {"weight": head.scale * F.normalize(w, dim=-1), "bias": torch.zeros(w.shape[0])}
    b = head.bias.detach().float().cpu() if head.bias is not None else torch.zeros(w.shape[0])
    return {"weight": w, "bias": b}


def plain_timm_model(export_cfg: dict) -> nn.Module:
    """The un-adapted timm network described by ``export/config.json`` (random weights)."""
    return timm.create_model(export_cfg["architecture"], pretrained=False, **export_cfg["model_kwargs"])


def plain_timm_state(model: nn.Module, export_cfg: dict) -> tuple[dict[str, torch.Tensor] | None, str]:
    """(state dict for the plain timm model, "") or (None, why it cannot be one)."""
    merged = merge_peft(copy.deepcopy(model).cpu())
    sd = {k: v.detach().float().contiguous() for k, v in merged.state_dict().items() if not k.startswith("head.")}
    sd.update({f"head.{k}": v for k, v in linear_head_state(merged.get_classifier()).items()})
    with torch.device("meta"):
        ref = plain_timm_model(export_cfg)
    expected = ref.state_dict()
    missing, extra = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    if missing or extra:
        method = export_cfg["peft"]["method"]
        return None, (f"no merged.safetensors: peft.method={method} adds modules plain timm does not have "
                      f"(e.g. {(extra or missing)[:3]}); use peft.safetensors with metapeft, or model.onnx")
    bad = [k for k in expected if tuple(expected[k].shape) != tuple(sd[k].shape)]
    if bad:
        return None, f"no merged.safetensors: shapes differ from plain timm at {bad[:3]}"
    return sd, ""
