"""``metapeft eval --checkpoint RUN [--set data.KEY=VALUE ...]``: LT metrics on any labelled set with the run's classes.

The model comes from the run directory alone (``rebuild.py``). The labelled set is the run's own data
config with the ``data.*`` overrides applied: an ImageFolder is read from its ``test/`` (or ``val/``)
tree, or the whole tree when it has neither — its training images are never needed; other formats
use their test split. Classes are matched **by name** to the run's classes (a folder with a subset
of them is fine; an unknown class is an error naming it). Many / medium / few groups stay the run's
own (its training counts), so the numbers compare with the run's metrics.json.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from ..config import ConfigError, RunConfig, apply_override
from ..data import BatchLoader, DataError, ImageSet
from ..eval import Metrics
from .rebuild import InferenceModel, load_inference_model


def eval_config(run_cfg: RunConfig, overrides: list[str]) -> RunConfig:
    bad = [o for o in overrides if not o.strip().startswith("data.")]
    if bad:
        raise ConfigError(f"eval --set takes data.* keys only (the model is the run's); got {', '.join(bad)}")
    data = run_cfg.to_dict()
    for item in overrides:
        apply_override(data, item)
    return RunConfig.from_dict(data)


def labelled_images(cfg: RunConfig) -> tuple[ImageSet, list[str]]:
    """(images, their class names by label index) of the set to evaluate."""
    d = cfg.data
    if d.name == "imagefolder":
        from ..data.formats_folder import decode_to_imageset, scan_tree

        if d.root is None:
            raise DataError("imagefolder needs data.root=DIR")
        root = Path(d.root).expanduser()
        tree = next((root / n for n in ("test", "val") if (root / n).is_dir()), root)
        classes, files, owners = scan_tree(tree)
        index = {c: i for i, c in enumerate(classes)}
        return decode_to_imageset(files, [index[o] for o in owners], image_size=d.image_size,
                                  cache_dir=d.options.get("cache_dir")), classes
    from ..train.pipeline import load_run_dataset

    ds = load_run_dataset(cfg)
    return ds.test, list(ds.classes)


def match_classes(names: list[str], run_classes: list[str]) -> torch.Tensor:
    """Label map eval index → run index; DataError on a class the run never learned."""
    index = {c: i for i, c in enumerate(run_classes)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise DataError(f"class(es) {unknown} are not among the run's {len(run_classes)} classes "
                        f"({', '.join(run_classes[:10])}{', ...' if len(run_classes) > 10 else ''})")
    return torch.tensor([index[n] for n in names], dtype=torch.long)


def evaluate_checkpoint(path: str | Path, overrides: list[str] | None = None,
                        im: InferenceModel | None = None) -> Metrics:
    """Metrics of the run at ``path`` on its test set, or on the set the ``data.*`` overrides name."""
    from ..train.evaluate import evaluate

    im = im or load_inference_model(path, merge=False)  # unmerged: the exact numbers of the run
    cfg = eval_config(im.cfg, overrides or [])
    images, names = labelled_images(cfg)
    labels = match_classes(names, im.classes)[images.labels]
    images = ImageSet(images.images, labels, images.files)
    groups = im.export.get("class_groups") or {"many": [], "medium": [], "few": []}
    ds = SimpleNamespace(class_groups=groups, classes=im.classes, num_classes=len(im.classes))
    loader = BatchLoader(images, cfg.train.eval_batch_size, shuffle=False, transform=im.transform, device=im.device)
    return evaluate(im.model, loader, ds)
