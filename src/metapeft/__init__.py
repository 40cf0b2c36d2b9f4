"""metapeft: meta-learned PEFT hyperparameters for long-tailed ViT fine-tuning (MetaPEFT)."""

from .peft import (
    PeftConfig, apply_peft, gamma_map, gamma_parameters, merge_peft, peft_parameters, trainable_summary,
)

__version__ = "0.1.0"
