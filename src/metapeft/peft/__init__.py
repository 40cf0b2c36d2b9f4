"""PEFT modules with γ modulators, and the functions that put them on a timm ViT.

Names are imported on first use (PEP 562): ``metapeft.peft.config`` (and so ``metapeft.config``)
loads without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

_EXPORTS = {
    **{name: ".apply" for name in ("apply_peft", "gamma_map", "gamma_parameters", "inner_parameters", "merge_peft",
                                   "modulators",
                                   "peft_parameters", "project_gammas", "site_modules", "unmerge_peft",
                                   "vit_blocks")},
    **{name: ".config" for name in ("ADDITIVE_METHODS", "METHODS", "POSITIONS", "PeftConfig", "resolve_blocks")},
    "Modulator": ".modulator", "Site": ".site", "SiteModule": ".site",
    "TrainableSummary": ".summary", "trainable_summary": ".summary",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = attach(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .apply import (apply_peft, gamma_map, gamma_parameters, inner_parameters, merge_peft, modulators,  # noqa: F401
                        peft_parameters, project_gammas, site_modules, unmerge_peft, vit_blocks)
    from .config import ADDITIVE_METHODS, METHODS, POSITIONS, PeftConfig, resolve_blocks  # noqa: F401
    from .modulator import Modulator  # noqa: F401
    from .site import Site, SiteModule  # noqa: F401
    from .summary import TrainableSummary, trainable_summary  # noqa: F401
