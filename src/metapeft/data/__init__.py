"""Data: bundled real datasets, on-disk formats, long-tail subsampling, class groups, batch pipeline.

    ds = metapeft.data.load_dataset("aid", imbalance_ratio=50, seed=0)
    ds.train, ds.test, ds.classes, ds.train_class_counts, ds.class_groups
"""

from .augment import BatchAugment, random_resized_crop_boxes
from .bundled import BUNDLED
from .groups import class_groups_from_counts, class_groups_from_names, load_group_file, shipped_groups
from .imageset import GROUP_NAMES, ImageSet, LTDataset, RawData
from .loader import BatchLoader
from .longtail import class_order, default_n_max, long_tail_counts, long_tail_indices
from .lazy import LazyImages
from .registry import DATASETS, accepts_option, load_dataset, register_dataset
from .roots import ENV_VAR, DataError, resolve_data_root
from .samplers import ClassBalancedSampler
from .splits import seeded_generator, stratified_holdout, stratified_split

__all__ = [
    "BUNDLED", "DATASETS", "ENV_VAR", "GROUP_NAMES",
    "BatchAugment", "BatchLoader", "ClassBalancedSampler", "DataError", "ImageSet", "LTDataset", "LazyImages",
    "RawData", "accepts_option", "class_groups_from_counts", "class_groups_from_names", "class_order", "default_n_max", "load_dataset", "load_group_file",
    "long_tail_counts", "long_tail_indices", "random_resized_crop_boxes", "register_dataset",
    "resolve_data_root", "seeded_generator", "shipped_groups", "stratified_holdout", "stratified_split",
]
