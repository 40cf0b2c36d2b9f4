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
    "meta.enabled=false",  # plain PEFT unless a test turns MetaPEFT on (the library default is on)
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


# The tiny model of TINY_RUN without its data keys: for runs on a user's own folder.
TINY_MODEL = [o for o in TINY_RUN if o.split("=", 1)[0].startswith(("model.", "train."))]


def write_image_folder(root: Path, data_root: Path, train_counts: list[int], n_test: int = 4) -> Path:
    """A user's ImageFolder (root/train/<class>/*.png, root/test/<class>/*.png) of real AID scenes.

    Class ``i`` gets ``train_counts[i]`` training images: pass a long tail to mimic data that is
    already imbalanced (the case the old default IR 50 broke).
    """
    import numpy as np
    from PIL import Image

    x = np.load(data_root / "aid" / "images.npy", mmap_mode="r")
    y = np.load(data_root / "aid" / "labels.npy")
    for c, n in enumerate(train_counts):
        idx = np.flatnonzero(y == c)
        for split, ids in (("train", idx[:n]), ("test", idx[n:n + n_test])):
            d = root / split / f"class_{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in ids:
                Image.fromarray(np.asarray(x[i])).save(d / f"{i}.png")
    return root


@pytest.fixture
def tiny_model() -> list[str]:
    return list(TINY_MODEL)


@pytest.fixture
def own_folder(tmp_path, data_root) -> Path:
    """A long-tailed 4-class folder (24, 12, 6, 3 training images; 4 test images per class)."""
    return write_image_folder(tmp_path / "mydata", data_root, [24, 12, 6, 3])


def perturb_peft(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random LoRA/adapter matrices and γ in [0.5, 1.5): a fresh model would compute the plain backbone."""
    from metapeft.peft import gamma_parameters, site_modules

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for branch in site_modules(model).values():
            for p in branch.parameters():
                if p.dim() == 2:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        for gamma in gamma_parameters(model):
            gamma.copy_(0.5 + torch.rand(gamma.shape, generator=g))
    return model.eval()


@pytest.fixture
def perturbed():
    return perturb_peft
