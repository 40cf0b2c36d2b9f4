"""`apply_peft`: put a PEFT method on a timm ViT (the analogue of peft's `get_peft_model`)."""

from __future__ import annotations

import math
from typing import Callable, Iterator

from torch import nn

from .adapter import BottleneckBranch, SequentialAdapter
from .adaptformer import ParallelAdapter
from .config import PeftConfig, resolve_blocks
from .lora import LoraLinear, wrap_lora
from .modulator import Modulator
from .site import Site, SiteModule
from .ssf import ScaleShift
from .vpt import apply_vpt

# LoRA position → (linear inside a block, which output slice of it; None = whole output).
LORA_TARGETS: dict[str, tuple[str, int | None]] = {
    "q": ("attn.qkv", 0), "k": ("attn.qkv", 1), "v": ("attn.qkv", 2),
    "out": ("attn.proj", None), "mlp1": ("mlp.fc1", None), "mlp2": ("mlp.fc2", None),
}


def vit_blocks(model: nn.Module) -> nn.Sequential:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0:
        raise TypeError(f"{type(model).__name__} has no `.blocks`: metapeft supports timm ViT-style models")
    return blocks


def classifier(model: nn.Module) -> nn.Module:
    head = model.get_classifier() if hasattr(model, "get_classifier") else getattr(model, "head", None)
    if head is None:
        raise TypeError(f"{type(model).__name__} has no classifier head (`get_classifier()` / `.head`)")
    return head


def _modulator_factory(cfg: PeftConfig) -> Callable[[int], Modulator | None]:
    def make(channels: int) -> Modulator | None:
        if not cfg.has_gamma:
            return None
        return Modulator(channels, shape=cfg.gamma_shape, init=cfg.gamma_init, constraint=cfg.gamma_constraint,
                         max_abs=cfg.gamma_max)
    return make


def _like(module: nn.Module, ref: nn.Module) -> nn.Module:
    p = next(ref.parameters())
    return module.to(device=p.device, dtype=p.dtype)


def _apply_lora(block: nn.Module, idx: int, cfg: PeftConfig) -> None:
    groups: dict[str, dict[str, Site]] = {}
    for pos in cfg.resolved_positions:
        path, _ = LORA_TARGETS[pos]
        groups.setdefault(path, {})[pos] = Site(idx, pos)
    for path, sites in groups.items():
        base = block.get_submodule(path)
        linear = base.base_layer if isinstance(base, LoraLinear) else base
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"block {idx}: `{path}` is {type(linear).__name__}, LoRA needs nn.Linear")
        slices = {}
        for pos in sites:
            part = LORA_TARGETS[pos][1]
            if part is None:
                slices[pos] = (0, linear.out_features)
            else:
                if linear.out_features % 3:
                    raise TypeError(f"block {idx}: `{path}` is not a fused qkv (out={linear.out_features})")
                width = linear.out_features // 3
                slices[pos] = (part * width, (part + 1) * width)
        wrapped = wrap_lora(base, slices, sites, rank=cfg.rank, scale=cfg.scale, dropout=cfg.dropout,
                            make_modulator=_modulator_factory(cfg))
        block.set_submodule(path, _like(wrapped, linear))


def _apply_bottleneck(block: nn.Module, idx: int, cfg: PeftConfig, dim: int) -> None:
    make = _modulator_factory(cfg)
    for pos in cfg.resolved_positions:
        branch = BottleneckBranch(dim, cfg.bottleneck, site=Site(idx, pos), scale=cfg.scale, modulator=make(dim))
        if cfg.method == "adaptformer":
            block.mlp = _like(ParallelAdapter(block.mlp, branch), block.mlp)
        else:
            name = {"attn": "attn", "mlp": "mlp"}[pos]
            setattr(block, name, _like(SequentialAdapter(getattr(block, name), branch), getattr(block, name)))


def _apply_ssf(block: nn.Module) -> None:
    for path in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "norm1", "norm2"):
        base = block.get_submodule(path)
        channels = base.out_features if isinstance(base, nn.Linear) else base.normalized_shape[0]
        block.set_submodule(path, _like(ScaleShift(base, channels), base))


def apply_peft(model: nn.Module, config: PeftConfig) -> nn.Module:
    """Freeze the backbone and add the configured PEFT method in place; returns the model.

    Trainable afterwards: the PEFT weights φ, the classifier head (``train_head``) and the
    γ modulators (kept apart: see :func:`gamma_parameters` / :func:`peft_parameters`).
    """
    if getattr(model, "peft_config", None) is not None:
        raise RuntimeError("apply_peft: this model already has PEFT applied")
    blocks = vit_blocks(model)
    depth = len(blocks)
    chosen = resolve_blocks(config.blocks, depth)
    dim = getattr(model, "embed_dim", None) or getattr(model, "num_features")
    method = config.method

    for p in model.parameters():
        p.requires_grad_(method == "full")

    if method == "lora":
        for i in chosen:
            _apply_lora(blocks[i], i, config)
    elif method in ("adaptformer", "adapter"):
        for i in chosen:
            _apply_bottleneck(blocks[i], i, config, dim)
    elif method in ("vpt_shallow", "vpt_deep"):
        patch = getattr(getattr(model, "patch_embed", None), "patch_size", (16, 16))
        apply_vpt(blocks, chosen, length=config.vpt_length, dim=dim, patch_area=math.prod(patch),
                  deep=method == "vpt_deep")
        _like(blocks, model.patch_embed)
    elif method == "ssf":
        for i in chosen:
            _apply_ssf(blocks[i])
    elif method == "bitfit":
        for name, p in _selected_params(model, chosen):
            if name.endswith("bias"):
                p.requires_grad_(True)
    elif method == "ln_tune":
        for module in _selected_modules(model, chosen):
            if isinstance(module, nn.LayerNorm):
                for p in module.parameters():
                    p.requires_grad_(True)

    for p in classifier(model).parameters():
        p.requires_grad_(config.train_head)
    model.peft_config = config
    return model


def _selected_modules(model: nn.Module, chosen: list[int]) -> Iterator[nn.Module]:
    """Modules of the chosen blocks, plus the final norm when every block is chosen."""
    blocks = vit_blocks(model)
    for i in chosen:
        yield from blocks[i].modules()
    if len(chosen) == len(blocks) and isinstance(getattr(model, "norm", None), nn.Module):
        yield from model.norm.modules()


def _selected_params(model: nn.Module, chosen: list[int]) -> Iterator[tuple[str, nn.Parameter]]:
    for module in _selected_modules(model, chosen):
        yield from module.named_parameters(recurse=False)


POSITION_ORDER = ("q", "k", "v", "out", "mlp1", "mlp2", "attn", "mlp")


def site_order(site: Site) -> tuple[int, int]:
    """Sort key: block, then the canonical position order q, k, v, out, mlp1, mlp2, attn, mlp."""
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
