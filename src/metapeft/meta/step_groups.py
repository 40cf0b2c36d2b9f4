"""Parameter groups whose step sizes the ``stepsize`` meta mode learns.

Why groups of *kind* (head / a site's input matrix / its zero-initialised output matrix): with SGD a
LoRA branch's output scale s is the same trajectory as an unscaled branch whose B has learning rate
× s² (A's unchanged), and the classifier head has a step size of its own that no γ reaches
(DESIGN.md §6). So the three step sizes that decide a run are head, A and B; learning those
directly, instead of one output scale per site, reaches all three.

``scale_invariant`` divides each zero-initialised output matrix's learning rate by s² (s = α·γ₀ of
its site). The trajectory is then the same for every α/r (up to weight decay), so the scale stops
being a hyperparameter and only the step sizes remain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

from ..peft.site import SiteModule

# Parameter-name prefixes (inside a site module) of the matrices that start at zero: their gradient,
# and so their step, is scaled by the site's output scale.
OUTPUT_PREFIXES = ("lora_B", "up")
INPUT_PREFIXES = ("lora_A", "down")
_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


@dataclass
class StepGroup:
    """Parameters sharing one learned log step-size multiplier."""

    name: str
    params: list[nn.Parameter] = field(default_factory=list)
    base_factor: float = 1.0   # fixed lr factor (1/s² for scale-invariant output matrices, head_lr_mult)


def _kind(param_name: str) -> str:
    """A site module's parameter: its zero-initialised output matrix, its input matrix, or other."""
    if param_name.startswith(OUTPUT_PREFIXES):
        return "out"
    if param_name.startswith(INPUT_PREFIXES):
        return "in"
    return "other"


def build_step_groups(model: nn.Module, phi: dict[str, nn.Parameter], *, by: str = "kind",
                      scale_invariant: bool = True, head_lr_mult: float | None = None) -> list[StepGroup]:
    """Group the trainable parameters ``phi`` of ``model`` by kind (``by="kind"``) or block × kind.

    ``phi`` may come from a wrapper around ``model`` (the prefix-cache suffix), so parameters are
    matched by identity, not by name.
    """
    if by not in ("kind", "block"):
        raise ValueError(f"step groups must be 'kind' or 'block', got {by!r}")
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    info: dict[int, tuple[str, float]] = {}   # id(param) -> (group name, base factor)
    for mname, module in model.named_modules():
        if not isinstance(module, SiteModule):
            continue
        scale = module.scale
        gamma = module.gamma_modulator
        if gamma is not None:
            scale *= float(gamma.value().detach().abs().mean())
        for pname, p in module.named_parameters():
            kind = _kind(pname)
            factor = 1.0 / scale ** 2 if (scale_invariant and kind == "out" and scale > 0) else 1.0
            block = _BLOCK.search(f"{mname}.")
            prefix = f"block{block.group(1)}." if (by == "block" and block) else ""
            info[id(p)] = (f"{prefix}{kind}", factor)
    groups: dict[str, StepGroup] = {}
    for name, p in phi.items():
        if id(p) in head_ids:
            key, factor = "head", 1.0 if head_lr_mult is None else head_lr_mult
        elif id(p) in info:
            key, factor = info[id(p)]
        else:
            block = _BLOCK.search(f"{name}.")
            key, factor = (f"block{block.group(1)}.other" if by == "block" and block else "other"), 1.0
        # Output matrices of sites with different scales must not share a base factor.
        gkey = key if factor == 1.0 or key == "head" else f"{key}@{factor:.6g}"
        group = groups.setdefault(gkey, StepGroup(gkey, [], factor))
        group.params.append(p)
    return list(groups.values())


def learned_name(group: StepGroup) -> str:
    """The name of the multiplier a group shares: groups that differ only by base factor share one."""
    return group.name.split("@", 1)[0]
