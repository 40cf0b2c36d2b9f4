"""``export/peft.safetensors`` + ``peft_config.json``: metapeft's own adapter file (PEFT weights + γ + head).

What ``metapeft predict`` / ``eval --checkpoint`` and ``mp.load_peft`` load onto a freshly built model.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from ..train.checkpoint import atomic_save_safetensors, atomic_write_text, trainable_state

WEIGHTS = "peft.safetensors"
CONFIG = "peft_config.json"


def write_native(model: nn.Module, peft_cfg: dict, out_dir: Path) -> None:
    atomic_save_safetensors(trainable_state(model), out_dir / WEIGHTS, metadata={"peft_config": json.dumps(peft_cfg)})
    atomic_write_text(out_dir / CONFIG, json.dumps(peft_cfg, indent=1))
