"""PEFT modules with γ modulators, and the functions that put them on a timm ViT."""

from .apply import (
    apply_peft, gamma_map, gamma_parameters, merge_peft, modulators, peft_parameters, project_gammas,
    site_modules, unmerge_peft, vit_blocks,
)
from .config import ADDITIVE_METHODS, METHODS, POSITIONS, PeftConfig, resolve_blocks
from .modulator import Modulator
from .site import Site, SiteModule
from .summary import TrainableSummary, trainable_summary

__all__ = [
    "ADDITIVE_METHODS", "METHODS", "POSITIONS", "Modulator", "PeftConfig", "Site", "SiteModule",
    "TrainableSummary", "apply_peft", "gamma_map", "gamma_parameters", "merge_peft", "modulators",
    "peft_parameters", "project_gammas", "resolve_blocks", "site_modules", "trainable_summary",
    "unmerge_peft", "vit_blocks",
]
