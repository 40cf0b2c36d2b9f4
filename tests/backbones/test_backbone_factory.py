"""create_backbone on tiny random ViTs: file loading, head handling, strictness, fused-attention switch."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from timm.layers import resample_abs_pos_embed, use_fused_attn  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

from metapeft.backbones import (BackboneWeightsError, create_backbone, set_fused_attention,  # noqa: E402
                                unfused_attention)

NAME = "vit_tiny_patch16_224"


def tiny(num_classes: int = 5, img_size: int = 32, pretrained: object = None, **kw: object) -> torch.nn.Module:
    """2-block ViT-Tiny at 32 px (2x2 patch grid): the real timm architecture, milliseconds to run."""
    kw.setdefault("depth", 2)
    return create_backbone(NAME, pretrained, img_size=img_size, num_classes=num_classes, **kw).eval()


@pytest.fixture
def source() -> torch.nn.Module:
    torch.manual_seed(0)
    return tiny()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _save(sd: dict[str, torch.Tensor], path: Path, wrap: str | None = None) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save({wrap: sd, "epoch": 3} if wrap else sd, path)
    return path


def test_random_init_is_plain_timm_vit() -> None:
    model = tiny()
    assert type(model) is VisionTransformer
    assert len(model.blocks) == 2 and model.head.out_features == 5
    assert len(model.pretrained_cfg["mean"]) == 3 and len(model.pretrained_cfg["std"]) == 3


@pytest.mark.parametrize("fname,wrap", [("w.safetensors", None), ("w.pth", None), ("w.pt", "model"),
                                        ("w.bin", "state_dict")])
def test_file_roundtrip_gives_identical_outputs(tmp_path: Path, source: torch.nn.Module, x: torch.Tensor,
                                                fname: str, wrap: str | None) -> None:
    path = _save(source.state_dict(), tmp_path / fname, wrap)
    torch.manual_seed(123)  # different random init, so equality proves the load
    loaded = tiny(pretrained=path)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    assert loaded.pretrained_cfg["file"] == str(path)
    assert tiny(pretrained=str(path)) is not None  # str paths too


def test_pos_embed_resampled_to_new_grid(tmp_path: Path, source: torch.nn.Module) -> None:
    path = _save(source.state_dict(), tmp_path / "w.safetensors")
    big = tiny(img_size=64, pretrained=path)  # 2x2 -> 4x4 patch grid
    assert big.pos_embed.shape == (1, 1 + 16, 192)
    expect = resample_abs_pos_embed(source.pos_embed.detach(), [4, 4], [2, 2], num_prefix_tokens=1)
    torch.testing.assert_close(big.pos_embed.detach(), expect)
    with torch.no_grad():
        assert big(torch.randn(1, 3, 64, 64)).shape == (1, 5)


@pytest.mark.parametrize("num_classes", [7, 0])
def test_head_of_other_size_is_dropped(tmp_path: Path, source: torch.nn.Module, x: torch.Tensor,
                                       num_classes: int) -> None:
    path = _save(source.state_dict(), tmp_path / "w.safetensors")
    model = tiny(num_classes=num_classes, pretrained=path)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), source.forward_features(x), rtol=0, atol=0)
        assert model(x).shape == (2, num_classes if num_classes else 192)


def test_missing_backbone_key_raises(tmp_path: Path, source: torch.nn.Module) -> None:
    sd = source.state_dict()
    del sd["blocks.1.mlp.fc1.weight"]
    with pytest.raises(BackboneWeightsError, match="missing backbone keys.*blocks.1.mlp.fc1.weight"):
        tiny(pretrained=_save(sd, tmp_path / "w.safetensors"))


def test_unexpected_key_or_wrong_depth_raises(tmp_path: Path, source: torch.nn.Module) -> None:
    sd = dict(source.state_dict(), **{"extra.weight": torch.zeros(3)})
    with pytest.raises(BackboneWeightsError, match="unexpected keys.*extra.weight"):
        tiny(pretrained=_save(sd, tmp_path / "a.safetensors"))
    with pytest.raises(BackboneWeightsError, match="missing backbone keys.*blocks.2"):
        tiny(pretrained=_save(source.state_dict(), tmp_path / "b.safetensors"), depth=3)


def test_backbone_shape_mismatch_raises(tmp_path: Path, source: torch.nn.Module) -> None:
    path = _save(source.state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(BackboneWeightsError, match="shape mismatch"):
        tiny(pretrained=path, embed_dim=96, num_heads=3)


def test_bad_names_and_specs_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"timm.list_models\('vit\*'\)"):
        create_backbone("vit_does_not_exist")
    with pytest.raises(ValueError, match="not a supported ViT"):
        create_backbone("resnet18")
    with pytest.raises(ValueError, match="only fits 'vit_small_patch14_dinov2'"):
        create_backbone(NAME, "bundled")
    with pytest.raises(FileNotFoundError):
        create_backbone(NAME, str(tmp_path / "missing.safetensors"))
    with pytest.raises(FileNotFoundError):
        create_backbone(NAME, tmp_path / "weights")  # a PathLike is always a path, never a hub tag
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_backbone(NAME, "no_such_tag", img_size=32, depth=2)
    with pytest.raises(TypeError):
        create_backbone(NAME, 3)  # type: ignore[arg-type]


def test_hub_failure_offline_is_explained() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(BackboneWeightsError, match="no network.*pass pretrained=<path"):
        create_backbone(NAME, "augreg_in21k_ft_in1k", img_size=32, depth=2)


def _double_backward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Hessian-vector-style second derivative through attention, as the unrolled hypergradient needs."""
    params = [model.blocks[0].attn.qkv.weight]
    (g,) = torch.autograd.grad(model(x).pow(2).sum(), params, create_graph=True)
    (h,) = torch.autograd.grad(g.pow(2).sum(), params)
    return h


@pytest.mark.slow
def test_fused_attention_switch_enables_double_backward(x: torch.Tensor) -> None:
    default = tiny()
    attn = [m for m in default.modules() if hasattr(m, "fused_attn")]
    assert len(attn) == 2 and all(m.fused_attn == use_fused_attn() for m in attn)
    if use_fused_attn():  # timm default on this torch: fused SDPA, whose CPU backward has no derivative
        with pytest.raises(RuntimeError, match="not implemented"):
            _double_backward(default, x)

    off = tiny(fused_attn=False)
    assert all(not m.fused_attn for m in off.modules() if hasattr(m, "fused_attn"))
    h = _double_backward(off, x)
    assert torch.isfinite(h).all() and h.abs().sum() > 0

    assert set_fused_attention(off, True) == 2 and set_fused_attention(off, True) == 0
    off.load_state_dict(default.state_dict())
    set_fused_attention(off, False)
    with torch.no_grad():  # same numbers either way
        torch.testing.assert_close(off(x), default(x), rtol=1e-5, atol=1e-5)


def test_unfused_attention_is_scoped_and_restores_each_module(x: torch.Tensor) -> None:
    model = tiny()
    attn = [m for m in model.modules() if hasattr(m, "fused_attn")]
    attn[0].fused_attn, attn[1].fused_attn = True, False  # a mixed setting must come back as it was
    with unfused_attention(model):
        assert not any(m.fused_attn for m in attn)
        assert torch.isfinite(_double_backward(model, x)).all()  # what the trainer needs it for
    assert [m.fused_attn for m in attn] == [True, False]
    with pytest.raises(KeyError), unfused_attention(model):
        raise KeyError("restored on error too")
    assert [m.fused_attn for m in attn] == [True, False]


def test_timm_kwargs_pass_through() -> None:
    model = tiny(drop_path_rate=0.1, global_pool="avg")
    assert model.global_pool == "avg"
    assert timm.layers.DropPath in {type(m) for m in model.modules()}
