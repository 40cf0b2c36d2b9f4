"""metapeft: meta-learned PEFT hyperparameters for long-tailed ViT fine-tuning (MetaPEFT).

    import metapeft as mp
    model = mp.create_backbone("vit_small_patch14_dinov2", pretrained="bundled", img_size=56, num_classes=10)
    model = mp.apply_peft(model, mp.PeftConfig(method="lora", rank=4))
    mp.gamma_map(model)
"""

from . import data, eval  # noqa: A004  (``mp.eval`` is the metrics namespace, as specified)
from .backbones import create_backbone, set_fused_attention
from .config import ConfigError, RunConfig
from .peft import (
    PeftConfig, apply_peft, gamma_map, gamma_parameters, merge_peft, peft_parameters, trainable_summary,
    unmerge_peft,
)
from .peft.saving import load_peft, save_peft
from .peft.switch import disable_peft, merge_and_unload

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "PeftConfig", "RunConfig", "apply_peft", "create_backbone", "data", "disable_peft", "eval",
    "gamma_map", "gamma_parameters", "load_peft", "merge_and_unload", "merge_peft", "peft_parameters",
    "save_peft", "set_fused_attention", "trainable_summary", "unmerge_peft",
]
