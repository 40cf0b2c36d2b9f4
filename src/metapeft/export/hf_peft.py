"""``export/hf_peft/``: the LoRA adapter in Hugging Face peft's own format.

``peft.PeftModel.from_pretrained(timm_model, "RUN/export/hf_peft")`` loads it onto the plain timm
backbone (the same pretrained weights the run started from). The mapping:

* our q / k / v branches are slices of timm's fused ``attn.qkv``; peft puts one LoRA on the whole
  ``qkv`` linear, so they become one block-diagonal LoRA there: A = [A_q; A_k; A_v] (rank 3r) and B with
  each branch's B in its own output rows and rank columns (zeros elsewhere) — exactly the product our
  fused forward computes (``LoraLinear._block_B``);
* α·γ is folded into B and peft's ``lora_alpha`` is set equal to each module's rank, so peft's scaling
  ``lora_alpha / r`` is 1 (``rank_pattern`` / ``alpha_pattern`` carry the per-module ranks);
* the classifier head is saved as ``modules_to_save`` in ``nn.Linear`` form (cosine head: see
  ``model_config.COSINE_HEAD_NOTE``).

peft itself is not needed to write this (it is a test extra only): the JSON keys are peft's LoraConfig
fields and the tensor names are those ``PeftModel.save_pretrained`` writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..peft.lora import LoraLinear
from ..train.checkpoint import atomic_save_safetensors, atomic_write_text
from .merged import linear_head_state

PREFIX = "base_model.model."


def lora_layers(model: nn.Module) -> dict[str, LoraLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLinear)}


@torch.no_grad()
def folded_lora(layer: LoraLinear) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [Σr, in], B [out, Σr]) with α·γ inside B: B @ A is the layer's whole update."""
    branches = list(layer.lora.items())
    a = torch.cat([b.lora_A.weight for _, b in branches])
    return a.detach().float().cpu(), layer._block_B(branches).detach().float().cpu()


def hf_peft_files(model: nn.Module, export_cfg: dict) -> tuple[dict, dict[str, torch.Tensor]]:
    """(adapter_config.json content, adapter_model.safetensors tensors)."""
    layers = lora_layers(model)
    tensors: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    for name, layer in layers.items():
        a, b = folded_lora(layer)
        tensors[f"{PREFIX}{name}.lora_A.weight"] = a.contiguous()
        tensors[f"{PREFIX}{name}.lora_B.weight"] = b.contiguous()
        ranks[name] = int(a.shape[0])
    head = model.get_classifier()
    tensors.update({f"{PREFIX}head.{k}": v.contiguous() for k, v in linear_head_state(head).items()})
    r = int(export_cfg["peft"]["rank"])
    config = {
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": export_cfg["architecture"],
        "r": r, "lora_alpha": r, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
        "use_rslora": False, "use_dora": False, "init_lora_weights": True, "inference_mode": True,
        "target_modules": sorted(layers),
        # every module's alpha equals its rank: scaling 1, α·γ already in B
        "rank_pattern": {n: k for n, k in ranks.items() if k != r},
        "alpha_pattern": {n: k for n, k in ranks.items() if k != r},
        "modules_to_save": ["head"],
    }
    return config, tensors


def write_hf_peft(model: nn.Module, export_cfg: dict, out_dir: Path) -> str:
    """Write the adapter; returns "" or why there is none (methods other than LoRA)."""
    if not lora_layers(model):
        return f"no hf_peft/: peft.method={export_cfg['peft']['method']} is not LoRA"
    config, tensors = hf_peft_files(model, export_cfg)
    atomic_save_safetensors(tensors, out_dir / "adapter_model.safetensors", metadata={"format": "pt"})
    atomic_write_text(out_dir / "adapter_config.json", json.dumps(config, indent=1))
    return ""
