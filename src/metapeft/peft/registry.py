"""The PEFT method registry: one :class:`MethodSpec` per method, the only list of methods there is.

Everything else derives from it: ``METHODS`` / ``ADDITIVE_METHODS`` / ``POSITIONS`` (config
validation and help), ``POSITION_ORDER`` (site order in γ maps and reports), the module scale α
(``PeftConfig.scale``) and its inverse (``peft.scale`` in sweeps), whether a frozen prefix may be
cached, and what ``apply_peft`` calls. Adding a method = one new file with its modules and its
``apply`` function + one entry in :data:`REGISTRY` (docs/architecture.md, "Adding a method").

Torch-free at import: ``apply`` is named as ``"module:function"`` and imported when first used, so
``metapeft.config`` can validate a config without loading torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .rslora import rank_stabilised_divisor

if TYPE_CHECKING:
    from .config import PeftConfig


def _one(cfg: "PeftConfig") -> float:
    return 1


def _rank(cfg: "PeftConfig") -> float:
    return cfg.rank


@dataclass(frozen=True)
class MethodSpec:
    name: str
    adds: str                         # what it adds to a block (help text, docs)
    apply: str | None = None          # "module:function", called as fn(model, blocks, chosen, cfg); None: nothing
    positions: tuple[str, ...] = ()   # sites inside a block; non-empty only for additive methods
    additive: bool = False            # output α·γ·Δ(x) at every site: carries γ, meta-learnable
    # α = alpha / divisor(cfg); alpha=None gives α = 1. LoRA: rank (α/r), others: 1.
    scale_divisor: Callable[["PeftConfig"], float] = _one
    trains_backbone: bool = False     # every backbone weight trainable (full fine-tuning)
    prefix_cacheable: bool = True     # frozen blocks before the first trainable one may run once per image

    def scale(self, cfg: "PeftConfig") -> float:
        """The fixed α on every module's output (before γ)."""
        d = self.scale_divisor(cfg)
        return 1.0 if cfg.alpha is None else float(cfg.alpha) / d

    def alpha_for_scale(self, cfg: "PeftConfig", scale: float) -> float:
        """The ``alpha`` that gives module scale ``scale`` (inverse of :meth:`scale`)."""
        return float(scale) * self.scale_divisor(cfg)

    def apply_function(self) -> Callable | None:
        if self.apply is None:
            return None
        module, _, fn = self.apply.partition(":")
        return getattr(importlib.import_module(module), fn)


_LORA_POSITIONS = ("q", "k", "v", "out", "mlp1", "mlp2")

# Order matters: it is the order of METHODS (help, errors) and, through the positions, POSITION_ORDER.
REGISTRY: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("lora", "low-rank B·A beside q/k/v (slices of qkv), attn.proj, mlp.fc1, mlp.fc2",
               "metapeft.peft.lora:apply_lora", _LORA_POSITIONS, additive=True, scale_divisor=_rank),
    MethodSpec("rslora", "LoRA with the rank-stabilised scale α/√r (rslora.py)",
               "metapeft.peft.lora:apply_lora", _LORA_POSITIONS, additive=True,
               scale_divisor=rank_stabilised_divisor),
    MethodSpec("adapter", "sequential bottleneck after attn and/or mlp (Houlsby)",
               "metapeft.peft.adapter:apply_adapter", ("attn", "mlp"), additive=True),
    MethodSpec("adaptformer", "bottleneck parallel to the MLP on its input",
               "metapeft.peft.adaptformer:apply_adaptformer", ("mlp",), additive=True),
    MethodSpec("vpt_shallow", "prompt tokens before the first block", "metapeft.peft.vpt:apply_vpt_shallow",
               prefix_cacheable=False),
    MethodSpec("vpt_deep", "prompt tokens in every chosen block", "metapeft.peft.vpt:apply_vpt_deep",
               prefix_cacheable=False),
    MethodSpec("bitfit", "trainable biases of the chosen blocks", "metapeft.peft.selective:apply_bitfit"),
    MethodSpec("ssf", "per-channel scale and shift after qkv, proj, fc1, fc2, norms", "metapeft.peft.ssf:apply_ssf"),
    MethodSpec("ln_tune", "trainable LayerNorms of the chosen blocks", "metapeft.peft.selective:apply_ln_tune"),
    MethodSpec("linear_probe", "nothing: only the head trains"),
    MethodSpec("full", "nothing added: every weight trains", trains_backbone=True),
)}


def get_method(name: str) -> MethodSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"peft.method: unknown method {name!r}; choose one of {', '.join(REGISTRY)}") from None


METHODS: tuple[str, ...] = tuple(REGISTRY)
ADDITIVE_METHODS: tuple[str, ...] = tuple(n for n, s in REGISTRY.items() if s.additive)
POSITIONS: dict[str, tuple[str, ...]] = {n: s.positions for n, s in REGISTRY.items() if s.positions}
POSITION_ORDER: tuple[str, ...] = tuple(dict.fromkeys(p for s in REGISTRY.values() for p in s.positions))
