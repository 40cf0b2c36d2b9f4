"""Visual Prompt Tuning (shallow and deep) by wrapping blocks, not rewriting the forward."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .wrap import embed_dim, like, vit_blocks

if TYPE_CHECKING:
    from .config import PeftConfig


class PromptedBlock(nn.Module):
    """Runs a block with learnable prompt tokens appended after the existing tokens.

    ``replace`` drops the previous block's prompts first (VPT-deep); ``strip`` removes
    the prompts after the block, so pooling and the head see the original tokens.
    """

    def __init__(
        self,
        block: nn.Module,
        *,
        prompt: nn.Parameter | None,
        num_prompts: int,
        replace: bool,
        strip: bool,
    ) -> None:
        super().__init__()
        self.base_layer = block
        self.prompt = prompt
        self.num_prompts = num_prompts
        self.replace = replace
        self.strip = strip

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.prompt is not None:
            if self.replace:
                x = x[:, : -self.num_prompts]
            x = torch.cat([x, self.prompt.expand(x.shape[0], -1, -1).to(x.dtype)], dim=1)
        y = self.base_layer(x, *args, **kwargs)
        return y[:, : -self.num_prompts] if self.strip else y


def make_prompt(length: int, dim: int, patch_area: int) -> nn.Parameter:
    """Uniform init of VPT (Jia et al. 2022): U(±sqrt(6 / (3·patch_area + dim)))."""
    bound = math.sqrt(6.0 / (3 * patch_area + dim))
    return nn.Parameter(torch.empty(1, length, dim).uniform_(-bound, bound))


def apply_vpt(blocks: nn.Sequential, prompted: list[int], *, length: int, dim: int, patch_area: int,
              deep: bool) -> None:
    """Wrap blocks in place. Shallow: prompts enter before the first block only."""
    depth = len(blocks)
    if not deep:
        prompted = [0]
    first, last = prompted[0], depth - 1
    for i in range(first, depth):
        has_prompt = i in prompted
        blocks[i] = PromptedBlock(
            blocks[i],
            prompt=make_prompt(length, dim, patch_area) if has_prompt else None,
            num_prompts=length,
            replace=has_prompt and i != first,
            strip=i == last,
        )


def _apply(model: nn.Module, chosen: list[int], cfg: "PeftConfig", deep: bool) -> None:
    blocks = vit_blocks(model)
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", (16, 16))
    apply_vpt(blocks, chosen, length=cfg.vpt_length, dim=embed_dim(model), patch_area=math.prod(patch), deep=deep)
    like(blocks, model.patch_embed)


def apply_vpt_shallow(model: nn.Module, chosen: list[int], cfg: "PeftConfig") -> None:
    _apply(model, chosen, cfg, deep=False)


def apply_vpt_deep(model: nn.Module, chosen: list[int], cfg: "PeftConfig") -> None:
    _apply(model, chosen, cfg, deep=True)
