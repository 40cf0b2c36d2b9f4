"""Frozen-prefix caching: when blocks < k hold nothing trainable and inputs are deterministic,
compute the prefix (patch embedding … block k−1) once per image and run only blocks ≥ k — for
training, the class-mean head init and every evaluation.

Exact, not an approximation: the cached tokens are what the frozen prefix computes for the
un-augmented input, and ``SuffixModel`` runs the same timm modules on them as the full forward.
A single LoRA site at block 6 of 12 skips half of every forward and backward.

Shared across runs (``train.prefix_cache_dir``; sweeps set it to ``SWEEP/prefix_cache``): the tokens of
train and test depend only on the data and the frozen backbone, so they are stored once per
(data, model, k) as safetensors and reused by every cell with the same prefix — a Fig. 1(c) grid
computes each block's prefix once instead of once per cell.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..config import RunConfig
from ..peft import gamma_parameters, vit_blocks
from ..peft.registry import get_method
from .checkpoint import atomic_save_safetensors
from .pipeline import RunData, split_train

CACHE_FORMAT = 1  # bump when the token layout or the prefix computation changes


@dataclass
class TokenSet:
    """Cached prefix outputs ``images`` [N, T, D] with ``labels`` [N] (BatchLoader-compatible)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())

    def subset(self, idx: torch.Tensor | list[int]) -> "TokenSet":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return TokenSet(self.images[idx].contiguous(), self.labels[idx].clone())


class SuffixModel(nn.Module):
    """Blocks ``start…`` + final norm + head of a timm ViT, fed cached prefix tokens.

    Mirrors timm's ``forward_features`` / ``forward_head`` split, so feature extraction (head init,
    reports) works on it as on the full model.
    """

    def __init__(self, model: nn.Module, start: int) -> None:
        super().__init__()
        self.model = model
        self.start = start

    def forward_features(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens
        for block in vit_blocks(self.model)[self.start:]:
            x = block(x)
        return self.model.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.model.forward_head(x, pre_logits=pre_logits)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(tokens))


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
    if not get_method(cfg.peft.method).prefix_cacheable:  # e.g. VPT: prompts change the token sequence
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
    return start  # == depth: nothing trainable in the blocks (linear probe), only norm + head run


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


def prefix_key(cfg: RunConfig, start: int) -> str:
    """What the cached tokens depend on: the data, the frozen backbone (and its seed when randomly
    initialised), the resolution and k. Not the PEFT sites: none may live in blocks < k."""
    random_init = cfg.model.pretrained in (None, False) and not cfg.model.init_from
    # The head's probe fit never reaches the tokens: left out, so a probe_l2 grid shares one cache (and the
    # keys of runs made before those fields existed stay the same).
    model = {k: v for k, v in asdict(cfg.model).items() if not k.startswith("probe_")}
    spec = {"format": CACHE_FORMAT, "data": asdict(cfg.data), "model": model, "start": start,
            "seed": cfg.train.seed if random_init else None}
    if cfg.model.init_from:  # the weights file, not just its name
        from .model import init_weights_path

        path = init_weights_path(cfg.model.init_from)
        spec["init_from_file"] = [str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns]
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _tokens(model: nn.Module, data: RunData, start: int, device: torch.device, store: Path | None,
            key: str) -> dict[str, torch.Tensor]:
    path = store / f"prefix-{key}.safetensors" if store is not None else None
    if path is not None and path.is_file():
        return load_file(str(path))
    tokens = {"train": prefix_tokens(model, data.ds.train, data.eval_tf, start, device),
              "test": prefix_tokens(model, data.ds.test, data.eval_tf, start, device)}
    if path is not None:  # atomic: a concurrent cell either sees the whole file or none
        atomic_save_safetensors(tokens, path)
    return tokens


def cache_prefix(data: RunData, model: nn.Module, start: int, device: torch.device, cfg: RunConfig
                 ) -> RunData:
    """RunData whose every set (train, meta-val, selection, test) is cached prefix tokens, split exactly
    as the images were, with identity transforms."""
    store = Path(cfg.train.prefix_cache_dir) if cfg.train.prefix_cache_dir else None
    tokens = _tokens(model, data, start, device, store, prefix_key(cfg, start))
    train, meta_val, selection = split_train(cfg, TokenSet(tokens["train"], data.ds.train.labels))

    def identity(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x

    return replace(data, train=train, meta_val=meta_val, selection=selection, test=TokenSet(tokens["test"], data.ds.test.labels),
                   train_tf=identity, val_tf=identity, eval_tf=identity)
