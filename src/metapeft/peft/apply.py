"""`apply_peft`: put a PEFT method on a timm ViT (the analogue of peft's `get_peft_model`)."""

from __future__ import annotations

from torch import nn

from .config import PeftConfig, resolve_blocks
from .lora import LoraLinear
from .modulator import Modulator
from .registry import POSITION_ORDER, get_method
from .site import Site, SiteModule
from .wrap import classifier, vit_blocks


def apply_peft(model: nn.Module, config: PeftConfig) -> nn.Module:
    """Freeze the backbone and add the configured PEFT method in place; returns the model.

    What is added is the method's ``apply`` function in the registry (``peft/registry.py``).
    Trainable afterwards: the PEFT weights φ, the classifier head (``train_head``) and the
    γ modulators (kept apart: see :func:`gamma_parameters` / :func:`inner_parameters`).
    """
    if getattr(model, "peft_config", None) is not None:
        raise RuntimeError("apply_peft: this model already has PEFT applied")
    spec = get_method(config.method)
    chosen = resolve_blocks(config.blocks, len(vit_blocks(model)))
    for p in model.parameters():
        p.requires_grad_(spec.trains_backbone)
    apply = spec.apply_function()
    if apply is not None:
        apply(model, chosen, config)
    for p in classifier(model).parameters():
        p.requires_grad_(config.train_head)
    model.peft_config = config
    return model


def site_order(site: Site) -> tuple[int, int]:
    """Sort key: block, then the registry's position order (q, k, v, out, mlp1, mlp2, attn, mlp)."""
    return site.block, POSITION_ORDER.index(site.position)


def site_modules(model: nn.Module) -> dict[Site, SiteModule]:
    """Every additive PEFT branch by its (block, position) site."""
    found = {m.site: m for m in model.modules() if isinstance(m, SiteModule)}
    return dict(sorted(found.items(), key=lambda kv: site_order(kv[0])))


def modulators(model: nn.Module) -> dict[Site, Modulator]:
    return {site: m.gamma_modulator for site, m in site_modules(model).items() if m.gamma_modulator is not None}


def gamma_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The outer-loop parameters γ (never in the main optimizer)."""
    return [m.gamma for m in modulators(model).values()]


def inner_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The inner-loop parameters φ: every trainable weight — PEFT weights **and the head** — γ excluded.

    (``TrainableSummary.peft`` counts the PEFT weights alone; ``.head`` counts the head.)
    """
    gammas = {id(p) for p in gamma_parameters(model)}
    return [p for p in model.parameters() if p.requires_grad and id(p) not in gammas]


peft_parameters = inner_parameters  # the name of the public API since 0.1 (DESIGN §4); includes the head


def gamma_map(model: nn.Module) -> dict[tuple[int, str], float | list[float]]:
    """{(block, position): γ} — a float for scalar γ, a list for per-channel γ."""
    out: dict[tuple[int, str], float | list[float]] = {}
    for site, mod in modulators(model).items():
        v = mod.value().detach().cpu()
        out[(site.block, site.position)] = v.item() if v.dim() == 0 else v.tolist()
    return out


def project_gammas(model: nn.Module) -> None:
    """Apply each modulator's constraint after an update (γ ≥ 0, |γ| ≤ gamma_max where asked)."""
    for mod in modulators(model).values():
        mod.project()


def merge_peft(model: nn.Module, *, unload: bool = True) -> nn.Module:
    """Fold LoRA (with α·γ) into the base weights; with ``unload`` drop the wrappers.

    Adapters are non-linear in x and stay as they are.
    """
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLinear):
            module.merge()
            if unload:
                model.set_submodule(name, module.base_layer)
    return model


def unmerge_peft(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, LoraLinear):
            module.unmerge()
    return model
