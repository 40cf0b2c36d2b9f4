"""Trainable-parameter accounting, in the form peft users know."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from .apply import classifier, gamma_parameters, inner_parameters


@dataclass(frozen=True)
class TrainableSummary:
    method: str
    backbone: int      # parameters of the pretrained model without head and PEFT modules
    peft: int          # trainable PEFT weights φ (head and γ excluded)
    head: int          # trainable classifier parameters
    gamma: int         # γ modulator entries
    total: int         # every parameter in the model

    @property
    def trainable(self) -> int:
        return self.peft + self.head + self.gamma

    @property
    def percent_of_backbone(self) -> float:
        """Trainable PEFT + γ as % of the backbone (head excluded: it is needed by any method)."""
        return 100.0 * (self.peft + self.gamma) / max(self.backbone, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "trainable": self.trainable, "percent_of_backbone": self.percent_of_backbone}

    def __str__(self) -> str:
        return (f"trainable params: {self.trainable:,} (peft {self.peft:,} + head {self.head:,} + "
                f"gamma {self.gamma:,}) || all params: {self.total:,} || "
                f"peft+gamma % of backbone: {self.percent_of_backbone:.4f}")


def trainable_summary(model: nn.Module) -> TrainableSummary:
    cfg = getattr(model, "peft_config", None)
    head_params = list(classifier(model).parameters())
    head_ids = {id(p) for p in head_params}
    gammas = gamma_parameters(model)
    phi = [p for p in inner_parameters(model) if id(p) not in head_ids]
    total = sum(p.numel() for p in model.parameters())
    head_total = sum(p.numel() for p in head_params)
    added = _added_parameter_count(model)
    return TrainableSummary(
        method=cfg.method if cfg is not None else "none",
        backbone=total - head_total - added,
        peft=sum(p.numel() for p in phi),
        head=sum(p.numel() for p in head_params if p.requires_grad),
        gamma=sum(p.numel() for p in gammas),
        total=total,
    )


def _added_parameter_count(model: nn.Module) -> int:
    """Parameters that PEFT added, for any method, with no per-method code.

    Every method's wrapper keeps the module it wraps as ``base_layer`` (peft's convention): a
    parameter was added iff, below the innermost wrapper on its path, it is not under ``base_layer``
    (``qkv.lora.q.lora_A.weight``, ``norm1.ssf_scale``, ``blocks.0.prompt`` — not ``qkv.base_layer.weight``).
    """
    wrappers = {name for name, m in model.named_modules() if hasattr(m, "base_layer") and name}
    n = 0
    for name, p in model.named_parameters():
        parts = name.split(".")
        inner = max((i for i in range(1, len(parts)) if ".".join(parts[:i]) in wrappers), default=None)
        if inner is not None and parts[inner] != "base_layer":
            n += p.numel()
    return n
