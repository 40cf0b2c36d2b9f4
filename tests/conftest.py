"""Shared test fixtures: tiny timm ViTs, offline hub, the bundled data root."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def tiny_vit(num_classes: int = 5, depth: int = 2, img_size: int = 32, seed: int = 0, **kw) -> torch.nn.Module:
    """A 2-block ViT-Tiny (dim 192) at 32 px: fast, but the real timm architecture."""
    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=img_size, depth=depth,
                              num_classes=num_classes, **kw)
    return model.eval()


# A real training run at test scale: tiny random ViT, bundled AID capped at 8 images/class.
TINY_RUN = [
    "model.name=vit_tiny_patch16_224", "model.pretrained=null", "model.img_size=32",
    "model.options={depth: 2, patch_size: 8, embed_dim: 48, num_heads: 2}",
    "data.max_per_class=8", "data.imbalance_ratio=4", "data.test_fraction=0.05",
    "train.epochs=2", "train.batch_size=16", "train.progress=false", "train.tensorboard=false",
]


@pytest.fixture
def tiny_run() -> list[str]:
    return list(TINY_RUN)


@pytest.fixture
def make_vit():
    return tiny_vit


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 32, 32, generator=g)


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ.get("METAPEFT_DATA", REPO.parent / "shared" / "data"))
    if not (root / "aid").is_dir():
        pytest.fail(f"bundled data not found at {root}: set METAPEFT_DATA")
    return root
