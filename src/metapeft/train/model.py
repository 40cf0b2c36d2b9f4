"""Build the model a run trains: backbone → classifier head → PEFT (the order matters)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..backbones import create_backbone
from ..config import RunConfig
from ..data import LTDataset
from ..errors import ConfigError, MissingFileError
from ..peft import apply_peft
from ..progress import progress
from .heads import build_head
from .pipeline import RunData, load_run_dataset, prepare_data


def init_weights_path(init_from: str) -> Path:
    """The merged weights exported by an earlier run (``RUN/export/merged.safetensors``)."""
    p = Path(init_from)
    candidate = p / "export" / "merged.safetensors" if p.is_dir() else p
    if not candidate.is_file():
        raise MissingFileError(f"model.init_from: no merged weights at {candidate} "
                                f"(give a run directory that finished, or a .safetensors file)")
    return candidate


def build_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    """Backbone with the run's head and PEFT method; head weights are initialised later."""
    m = cfg.model
    pretrained = str(init_weights_path(m.init_from)) if m.init_from else m.pretrained
    # Everything built here (random-init backbones, PEFT init, head) is a function of the seed, so
    # `metapeft eval` rebuilds the exact frozen weights of a run that had no pretrained file.
    torch.manual_seed(cfg.train.seed)
    # Fused SDPA stays on; the trainer turns it off only for second-order meta steps (unfused_attention).
    try:
        model = create_backbone(m.name, pretrained, img_size=m.img_size, num_classes=num_classes, **m.options)
    except (TypeError, AssertionError) as e:
        if not m.options:
            raise  # not the user's kwargs: a bug, keep the traceback
        raise ConfigError(f"model.options = {m.options}: timm cannot build {m.name} with them "
                          f"({type(e).__name__}: {e})") from None
    model.head = build_head(m.head, model.num_features, num_classes, m.head_scale)
    return apply_peft(model, cfg.peft)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_run(cfg: RunConfig, device: torch.device) -> tuple[LTDataset, nn.Module, RunData]:
    """The dataset, the model (on ``device``, freshly initialised) and the run's data a config describes.

    Training (:class:`~metapeft.train.Trainer`) and every rebuild of a finished run
    (:func:`~metapeft.train.reload.load_run`) go through here, so they cannot drift apart.
    """
    ds = load_run_dataset(cfg)
    model = build_model(cfg, ds.num_classes).to(device)
    pcfg = model.pretrained_cfg
    return ds, model, prepare_data(cfg, pcfg.get("mean"), pcfg.get("std"), ds)


@torch.no_grad()
def extract_features(model: nn.Module, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-logit features of every batch (used for class-mean head init)."""
    feats, labels = [], []
    for x, y in progress(batches, "head init (class-mean features)", unit="batches"):
        feats.append(model.forward_head(model.forward_features(x), pre_logits=True).float().cpu())
        labels.append(y.cpu())
    return torch.cat(feats), torch.cat(labels)
