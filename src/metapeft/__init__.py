"""metapeft: meta-learned PEFT hyperparameters for long-tailed ViT fine-tuning (MetaPEFT).

    import metapeft as mp
    model = mp.create_backbone("vit_small_patch14_dinov2", pretrained="bundled", img_size=56, num_classes=10)
    model = mp.apply_peft(model, mp.PeftConfig(method="lora", rank=4))
    mp.gamma_map(model)

Every public name is imported on first use (PEP 562): ``import metapeft`` and ``metapeft --help``
load neither torch nor timm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import attach

__version__ = "0.1.0"

_EXPORTS = {
    "create_backbone": ".backbones", "set_fused_attention": ".backbones",
    "ConfigError": ".config", "RunConfig": ".config",
    **{name: ".peft" for name in ("PeftConfig", "apply_peft", "gamma_map", "gamma_parameters", "inner_parameters",
                                  "merge_peft",
                                  "peft_parameters", "trainable_summary", "unmerge_peft")},
    "load_peft": ".peft.saving", "save_peft": ".peft.saving",
    "disable_peft": ".peft.switch", "merge_and_unload": ".peft.switch",
}
__all__ = sorted([*_EXPORTS, "data", "eval"])
# Subpackages as attributes (``mp.eval`` is the metrics namespace, ``mp.peft.site_modules`` ...).
__getattr__, __dir__ = attach(__name__, _EXPORTS, submodules=("backbones", "config", "data", "eval", "experiments",
                                                             "meta", "peft", "train"))

if TYPE_CHECKING:  # what static tools see
    from . import data, eval  # noqa: A004, F401
    from .backbones import create_backbone, set_fused_attention  # noqa: F401
    from .config import ConfigError, RunConfig  # noqa: F401
    from .peft import (PeftConfig, apply_peft, gamma_map, gamma_parameters, inner_parameters, merge_peft,  # noqa: F401
                       peft_parameters, trainable_summary, unmerge_peft)
    from .peft.saving import load_peft, save_peft  # noqa: F401
    from .peft.switch import disable_peft, merge_and_unload  # noqa: F401
