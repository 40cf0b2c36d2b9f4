"""Frozen-prefix caching: when blocks < k hold nothing trainable and inputs are deterministic,
compute the prefix (patch embedding … block k−1) once per image and train only blocks ≥ k.

Exact, not an approximation: the cached tokens are what the frozen prefix computes for the
un-augmented input, and ``SuffixModel`` runs the same timm modules on them as the full forward.
A single LoRA site at block 6 of 12 skips half of every forward and backward.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..config import RunConfig
from ..peft import gamma_parameters, vit_blocks
from .pipeline import RunData


@dataclass
class TokenSet:
    """Cached prefix outputs ``images`` [N, T, D] with ``labels`` [N] (BatchLoader-compatible)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())


class SuffixModel(nn.Module):
    """Blocks ``start…`` + final norm + head of a timm ViT, fed cached prefix tokens."""

    def __init__(self, model: nn.Module, start: int) -> None:
        super().__init__()
        self.model = model
        self.start = start

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens
        for block in vit_blocks(self.model)[self.start:]:
            x = block(x)
        return self.model.forward_head(self.model.norm(x))


def _is_stochastic(module: nn.Module) -> bool:
    for m in module.modules():
        p = getattr(m, "p", None) if isinstance(m, nn.Dropout) else getattr(m, "drop_prob", None)
        if p:
            return True
    return False


def cacheable_prefix(model: nn.Module, cfg: RunConfig) -> int:
    """Index of the first block that must run every step (0 = nothing to cache)."""
    if not cfg.train.cache_prefix or cfg.data.augment:
        return 0
    if cfg.peft.method in ("vpt_shallow", "vpt_deep"):
        return 0
    trainable = {id(p) for p in model.parameters() if p.requires_grad} | {id(p) for p in gamma_parameters(model)}
    stem = [model.patch_embed, model.norm_pre, getattr(model, "patch_drop", nn.Identity())]
    stem_params = [p for m in stem for p in m.parameters()]
    stem_params += [p for p in (getattr(model, "cls_token", None), getattr(model, "pos_embed", None),
                                getattr(model, "reg_token", None)) if isinstance(p, nn.Parameter)]
    if any(id(p) in trainable for p in stem_params) or any(_is_stochastic(m) for m in stem):
        return 0
    start = 0
    for block in vit_blocks(model):
        if any(id(p) in trainable for p in block.parameters()) or _is_stochastic(block):
            break
        start += 1
    return start if start < len(vit_blocks(model)) else 0


@torch.no_grad()
def prefix_tokens(model: nn.Module, images, transform, start: int, device: torch.device,
                  batch_size: int = 128) -> torch.Tensor:
    """Run the frozen prefix on every image once (eval mode, deterministic transform)."""
    was_training = model.training
    model.eval()
    out = []
    blocks = vit_blocks(model)[:start]
    for i in range(0, len(images), batch_size):
        x = transform(images.images[i:i + batch_size].to(device))
        x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
        for block in blocks:
            x = block(x)
        out.append(x.cpu())
    model.train(was_training)
    return torch.cat(out)


def cache_prefix(data: RunData, model: nn.Module, start: int, device: torch.device) -> RunData:
    """RunData whose train / meta-val sets are cached tokens and whose transforms are identity."""
    train = TokenSet(prefix_tokens(model, data.train, data.eval_tf, start, device), data.train.labels)
    meta_val = data.meta_val
    if meta_val is data.train:
        meta_val = train
    elif meta_val is not None:
        meta_val = TokenSet(prefix_tokens(model, meta_val, data.eval_tf, start, device), meta_val.labels)

    def identity(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x

    return replace(data, train=train, meta_val=meta_val, train_tf=identity, val_tf=identity)
