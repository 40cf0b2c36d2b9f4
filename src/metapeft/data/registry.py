"""``load_dataset``: one entry point for bundled sets and on-disk formats, plus the common LT steps."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import torch

from .bundled import load_bundled
from .formats_cifar import load_cifar100, load_eurosat
from .formats_dota import load_dota
from .formats_folder import load_imagefolder
from .formats_list import load_fusrs, load_listfile
from .groups import class_groups_from_counts, class_groups_from_names, load_group_file
from .imageset import LTDataset, RawData
from .longtail import long_tail_indices
from .roots import DataError
from .splits import seeded_generator, stratified_split

__all__ = ["DATASETS", "load_dataset", "register_dataset"]

Loader = Callable[..., RawData]

DATASETS: dict[str, Loader] = {
    "aid": partial(load_bundled, "aid"),
    "mstar_soc": partial(load_bundled, "mstar_soc"),
    "cifar100": load_cifar100,
    "eurosat": load_eurosat,
    "imagefolder": load_imagefolder,
    "listfile": load_listfile,
    "places_lt": partial(load_listfile, train_list="Places_LT_train.txt", test_list="Places_LT_test.txt",
                         classes_file="classnames.txt"),
    "imagenet_lt": partial(load_listfile, train_list="ImageNet_LT_train.txt", test_list="ImageNet_LT_test.txt",
                           classes_file="classnames.txt"),
    "dota": load_dota,
    "fusrs": load_fusrs,
    "fusrs_v17": partial(load_fusrs, version="v17"),
    "fusrs_v25": partial(load_fusrs, version="v25"),
}


def register_dataset(name: str, loader: Loader) -> None:
    """Add a loader ``loader(root, *, image_size=None, **kwargs) -> RawData`` under ``name``."""
    DATASETS[name.lower()] = loader


def _accepted(loader: Loader) -> set[str] | None:
    try:
        params = inspect.signature(loader).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None  # forwards **kwargs: let the inner loader check
    return {p.name for p in params}


def accepts_option(name: str, option: str) -> bool:
    """Whether dataset ``name``'s loader takes ``option`` (a forwarding ``**kwargs`` loader counts as yes)."""
    loader = DATASETS.get(name.lower())
    if loader is None:
        return False
    accepted = _accepted(loader)
    return accepted is None or option in accepted


def _cap_per_class(labels: torch.Tensor, cap: int, seed: int) -> torch.Tensor:
    g = seeded_generator(9, seed)
    keep = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        keep.append(idx[torch.randperm(idx.numel(), generator=g)[:cap]])
    return torch.cat(keep).sort().values


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    imbalance_ratio: float | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    group_thresholds: tuple[int, int] = (100, 20),
    max_per_class: int | None = None,
    image_size: int | None = None,
    n_max: int | None = None,
    class_order: str | Sequence[int] | None = None,
    groups: str | Path | Mapping[str, Sequence] | None = None,
    **format_kwargs,
) -> LTDataset:
    """Load a dataset by name or format and make its long-tailed training set.

    Args:
        name: a key of ``DATASETS``: ``aid``, ``mstar_soc`` (bundled arrays), ``cifar100``, ``eurosat``,
            ``imagefolder``, ``listfile``, ``places_lt``, ``imagenet_lt``, ``dota``, ``fusrs`` (``_v17``/``_v25``).
        root: data root (bundled: the directory holding ``<name>/``; formats: the dataset directory).
            Default for bundled sets: ``METAPEFT_DATA``, then ``<checkout>/../shared/data``.
        imbalance_ratio: None keeps the natural training distribution; a value IR (10, 50, 100...)
            keeps ``int(n_max * IR^(-i/(C-1)))`` training samples for the class at profile rank i.
        seed: fixes the stratified train/test split (sources without one), the class order of the
            profile (which class is the head), and which samples are kept.
        test_fraction: test share per class when the source has no test split.
        group_thresholds: (many_above, few_below) training counts for many/medium/few (default
            >100 / 20..100 / <20); unused for DOTA and FUSRS, whose groups are shipped lists.
        max_per_class: cap on training samples per class (applied before the long tail; it also caps n_max).
        image_size: resize every image to this square size on load.
        n_max: head-class count of the profile (default: the largest count <= the smallest class
            count whose tail count is whole, so every class can supply its target and max/min = IR).
        class_order: ``"seeded"`` (default; a seed-fixed permutation), ``"index"`` (class 0 is the head;
            the default for cifar100, as in LIFT) or an explicit list of class indices, head first.
        groups: explicit groups overriding the defaults: a YAML path or a {many, medium, few: names} mapping.
        **format_kwargs: passed to the format loader (e.g. ``train_list=``, ``cache_dir=``, ``download=``).

    The test split is never subsampled. Raises DataError for every bad input (missing files, corrupt
    images, labels outside the class list, a class left without training samples, size mismatch).
    """
    key = name.lower()
    if key not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; available: {', '.join(sorted(DATASETS))}")
    loader = DATASETS[key]
    accepted = _accepted(loader)
    if accepted is not None:
        unknown = sorted(set(format_kwargs) - accepted)
        if unknown:
            raise DataError(f"dataset '{name}' has no option(s) {unknown}; it accepts {sorted(accepted - {'root'})}")
    if image_size is not None:
        format_kwargs["image_size"] = int(image_size)
    raw = loader(root, **format_kwargs)
    classes = list(raw.classes)
    num_classes = len(classes)
    if num_classes < 2:  # a classifier needs two classes; refused here, not after an epoch in the metrics
        raise DataError(f"{name}: found {num_classes} class ({', '.join(classes) or 'none'}) at {root}; "
                        "classification needs at least 2 (one sub-folder per class)")
    info = dict(raw.info)

    train, test = raw.train, raw.test
    if test is None:
        tr, te = stratified_split(train.labels, test_fraction, seed)
        train, test = train.subset(tr), train.subset(te)
        info["split"] = f"stratified, seeded (test_fraction {test_fraction}, seed {seed})"

    counts = train.class_counts(num_classes)
    if bool((counts == 0).any()):
        empty = [classes[i] for i in torch.nonzero(counts == 0).flatten().tolist()]
        raise DataError(f"{name}: class(es) {empty} have no training samples")
    if max_per_class is not None:
        train = train.subset(_cap_per_class(train.labels, int(max_per_class), seed))
    if imbalance_ratio is not None:
        order = class_order if class_order is not None else raw.defaults.get("class_order", "seeded")
        idx = long_tail_indices(train.labels, float(imbalance_ratio), seed, num_classes=num_classes,
                                n_max=n_max, order=order, names=classes)
        train = train.subset(idx)
        info["imbalance_ratio"] = float(imbalance_ratio)
        info["class_order"] = order if isinstance(order, str) else list(order)
    info["seed"] = seed

    if groups is not None:
        cg = load_group_file(groups, classes) if isinstance(groups, (str, Path)) else \
            class_groups_from_names(groups, classes, source="groups=")
    elif raw.groups is not None:
        cg = raw.groups
    else:
        cg = class_groups_from_counts(train.class_counts(num_classes), group_thresholds)
    return LTDataset(key, train, test, classes, cg, info)
