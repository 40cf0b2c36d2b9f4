"""timm ViT backbones: creation, offline weight loading, the bundled DINOv2 ViT-S/14, fused-attention switch."""

from .bundled import BUNDLED_MODEL, BundledWeightsError, bundled_weights_path, default_cache_dir
from .factory import (BackboneWeightsError, create_backbone, load_weights, read_state_dict, set_fused_attention,
                      unfused_attention)

__all__ = [
    "BUNDLED_MODEL", "BackboneWeightsError", "BundledWeightsError", "bundled_weights_path", "create_backbone",
    "default_cache_dir", "load_weights", "read_state_dict", "set_fused_attention", "unfused_attention",
]
