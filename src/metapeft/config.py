"""Run configuration: typed dataclass sections that round-trip to YAML.

``RunConfig`` has the sections ``data``, ``model``, ``peft``, ``meta``, ``train``; the CLI
loads a YAML file and applies ``--set section.key=value`` overrides on top. Unknown keys
and bad values are rejected with a message naming the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from .peft.config import PeftConfig


class ConfigError(ValueError):
    """A bad configuration key or value (the CLI prints it and exits with code 2)."""


@dataclass
class DataConfig:
    name: str = field(default="aid", metadata={"help": "dataset name or format (aid, mstar_soc, imagefolder, ...)"})
    root: str | None = field(default=None, metadata={"help": "data root; default $METAPEFT_DATA or ../shared/data"})
    imbalance_ratio: float | None = field(default=None, metadata={
        "help": "subsample train to this long-tail IR (max/min class count); null = use the data as given"})
    split_seed: int = field(default=0, metadata={"help": "seed of the train/test split and the LT subsampling"})
    test_fraction: float = field(default=0.2, metadata={"help": "test share when the source has no split"})
    group_thresholds: list[int] = field(default_factory=lambda: [100, 20],
                                        metadata={"help": "many > t0 >= medium >= t1 > few (train counts)"})
    max_per_class: int | None = field(default=None, metadata={"help": "cap train images per class (before LT)"})
    image_size: int | None = field(default=None, metadata={
        "help": "decode size for folder/list formats (shorter side, then centre crop to square: aspect kept)"})
    augment: bool = field(default=True, metadata={"help": "random resized crop + flip on training batches"})
    crop_scale: list[float] = field(default_factory=lambda: [0.5, 1.0], metadata={"help": "RRC area range"})
    # New fields default to None (= the old behaviour), so an old sweep directory still resumes.
    rs_augment: bool | None = field(default=None, metadata={
        "help": "remote-sensing augmentation: + vertical flip and random 90° rotations (scenes have no 'up'); "
                "null = off"})
    eval_crop: float | None = field(default=None, metadata={
        "help": "evaluation centre crop, share of the shorter side (0.875 = the 256→224 recipe); null = 1.0 "
                "(resize only)"})
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "extra format kwargs (list files, ...)"})

    def __post_init__(self) -> None:
        if self.imbalance_ratio is not None and self.imbalance_ratio < 1:
            raise ConfigError(f"data.imbalance_ratio must be >= 1 (or null), got {self.imbalance_ratio}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"data.test_fraction must be in (0, 1), got {self.test_fraction}")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"data.crop_scale must be [lo, hi] with 0 < lo <= hi <= 1, got {self.crop_scale}")
        if self.eval_crop is not None and not 0 < self.eval_crop <= 1:
            raise ConfigError(f"data.eval_crop must be in (0, 1], got {self.eval_crop}")
        if len(self.group_thresholds) != 2 or self.group_thresholds[0] < self.group_thresholds[1]:
            raise ConfigError(f"data.group_thresholds must be [many, few] with many >= few, got {self.group_thresholds}")


@dataclass
class ModelConfig:
    name: str = field(default="vit_small_patch14_dinov2", metadata={"help": "timm model name"})
    pretrained: str | None = field(default="bundled", metadata={"help": "bundled | file path | timm tag | null"})
    img_size: int = field(default=56, metadata={"help": "input resolution"})
    head: str = field(default="cosine", metadata={"help": "cosine | linear"})
    head_scale: float = field(default=25.0, metadata={"help": "logit scale of the cosine classifier"})
    head_init: str = field(default="class_mean", metadata={"help": "class_mean (frozen features) | random"})
    init_from: str | None = field(default=None, metadata={"help": "run dir whose merged weights start the backbone"})
    options: dict[str, Any] = field(default_factory=dict,
                                    metadata={"help": "extra timm create_model kwargs (depth, patch_size, ...)"})

    def __post_init__(self) -> None:
        if self.head not in ("cosine", "linear"):
            raise ConfigError(f"model.head must be cosine|linear, got {self.head!r}")
        if self.head_init not in ("class_mean", "random"):
            raise ConfigError(f"model.head_init must be class_mean|random, got {self.head_init!r}")
        if self.img_size < 8:
            raise ConfigError(f"model.img_size too small: {self.img_size}")
        if self.head_scale <= 0:
            raise ConfigError(f"model.head_scale must be > 0, got {self.head_scale}")


@dataclass
class MetaConfig:
    enabled: bool | None = field(default=None, metadata={
        "help": "learn γ by bi-level optimisation (MetaPEFT); null = on when the method has γ"})
    hypergrad: str = field(default="first_order", metadata={
        "help": "first_order (default: same accuracy as unrolled here at 1.10x plain cost vs 1.24x) | unrolled | neumann"})
    val_mode: str = field(default="resample", metadata={"help": "resample (class-balanced from train) | holdout"})
    holdout_ratio: float = field(default=0.2, metadata={"help": "stratified hold-out share (val_mode=holdout)"})
    val_batch_size: int = field(default=32, metadata={"help": "images per meta-validation batch"})
    val_augment: bool = field(default=True, metadata={"help": "augment meta-validation batches like training"})
    interval: int | None = field(default=None, metadata={
        "help": "one meta step every N inner steps (cost ~1/N); null = 10, or fewer so every epoch has >= 2"})
    optimizer: str = field(default="adam", metadata={"help": "adam | sgd (for γ)"})
    lr: float = field(default=0.25, metadata={"help": "meta learning rate (Adam moves γ ~lr per meta step). "
                                                        "0.25 is safe for every method; LoRA at short budgets "
                                                        "gained most at 1.0 (docs/results.md)"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (optimizer=sgd)"})
    weight_decay: float = field(default=0.0, metadata={"help": "weight decay on γ (pulls γ to 0)"})
    outer_loss: str = field(default="balanced_ce", metadata={"help": "balanced_ce | ce | la"})
    neumann_terms: int = field(default=3, metadata={"help": "Neumann series length (hypergrad=neumann)"})
    prune_threshold: float = field(default=0.1, metadata={"help": "|γ| below this = site 'not inserted'"})
    prune: bool = field(default=False, metadata={"help": "remove pruned sites before the final evaluation"})

    def __post_init__(self) -> None:
        choices = {"hypergrad": ("first_order", "unrolled", "neumann"), "val_mode": ("resample", "holdout"),
                   "optimizer": ("adam", "sgd"), "outer_loss": ("balanced_ce", "ce", "la")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"meta.{key} must be one of {'|'.join(allowed)}, got {getattr(self, key)!r}")
        if self.interval is not None and self.interval < 1:
            raise ConfigError(f"meta.interval must be >= 1, got {self.interval}")
        if not 0 < self.holdout_ratio < 1:
            raise ConfigError(f"meta.holdout_ratio must be in (0, 1), got {self.holdout_ratio}")
        if self.lr <= 0 or self.val_batch_size < 1 or self.neumann_terms < 0:
            raise ConfigError("meta.lr must be > 0, meta.val_batch_size >= 1, meta.neumann_terms >= 0")


@dataclass
class TrainConfig:
    epochs: int = field(default=10, metadata={"help": "training epochs"})
    batch_size: int = field(default=32, metadata={"help": "images per optimizer step"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    optimizer: str = field(default="sgd", metadata={"help": "sgd | adamw"})
    lr: float = field(default=0.01, metadata={"help": "learning rate of φ"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    weight_decay: float = field(default=5e-4, metadata={"help": "weight decay of φ"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps before the cosine schedule"})
    loss: str = field(default="la", metadata={"help": "ce | la | balanced_softmax | focal"})
    la_tau: float = field(default=1.0, metadata={"help": "logit-adjustment temperature τ"})
    focal_gamma: float = field(default=2.0, metadata={"help": "focal loss γ"})
    clip_grad: float | None = field(default=None, metadata={"help": "clip the gradient norm of φ"})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (slow on CPUs without AMX)"})
    seed: int = field(default=0, metadata={"help": "seed of init, data order, augmentation, meta sampling"})
    eval_every: int = field(default=0, metadata={"help": "evaluate on test every N epochs (0: at the end)"})
    val_holdout: float = field(default=0.0, metadata={
        "help": "stratified share of train held out for model selection (HPO); reported as metrics.json 'val'"})
    select_metric: str | None = field(default=None, metadata={
        "help": "with val_holdout > 0: the validation metric that picks the epoch whose model is tested; "
                "null = balanced"})
    eval_split: str | None = field(default=None, metadata={
        "help": "what eval_every evaluates during training: val | test; null = val with a hold-out, else test"})
    eval_batch_size: int = field(default=128, metadata={"help": "images per evaluation batch"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's)"})
    tensorboard: bool = field(default=True, metadata={"help": "write TensorBoard scalars"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})
    keep_checkpoints: int = field(default=1, metadata={"help": "epoch checkpoints to keep"})
    cache_prefix: bool = field(default=True, metadata={
        "help": "cache the frozen blocks before the first trainable site (only when data.augment=false)"})
    prefix_cache_dir: str | None = field(default=None, metadata={
        "help": "directory where cached prefix tokens are stored and shared between runs (sweeps: SWEEP/prefix_cache)"})
    export_merged: bool | None = field(default=None, metadata={
        "help": "write export/merged.safetensors (the whole backbone, for plain timm); null = yes, but not in sweep cells"})
    export_onnx: bool | None = field(default=None, metadata={
        "help": "write export/model.onnx (the whole classifier); null = yes, but not in sweep cells"})

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"train.optimizer must be sgd|adamw, got {self.optimizer!r}")
        if self.loss not in ("ce", "la", "balanced_softmax", "focal"):
            raise ConfigError(f"train.loss must be ce|la|balanced_softmax|focal, got {self.loss!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("train.epochs, train.batch_size and train.grad_accum must be >= 1")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"train.batch_size ({self.batch_size}) must be divisible by grad_accum")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.val_holdout < 1.0:
            raise ConfigError(f"train.val_holdout must be in [0, 1), got {self.val_holdout}")
        if self.select_metric not in (None, "overall", "balanced", "many", "medium", "few"):
            raise ConfigError(f"train.select_metric must be overall|balanced|many|medium|few, got {self.select_metric!r}")
        if self.eval_split not in (None, "val", "test"):
            raise ConfigError(f"train.eval_split must be val|test (or null), got {self.eval_split!r}")
        if self.keep_checkpoints < 1:
            raise ConfigError("train.keep_checkpoints must be >= 1")


SECTIONS: dict[str, type] = {
    "data": DataConfig, "model": ModelConfig, "peft": PeftConfig, "meta": MetaConfig, "train": TrainConfig,
}


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.meta.enabled is None:  # the product's method is the default wherever it applies
            self.meta.enabled = self.peft.has_gamma
        if self.meta.enabled and not self.peft.has_gamma:
            raise ConfigError(f"meta.enabled needs a method with γ modulators (lora, adaptformer, adapter) "
                              f"and peft.gamma=true; got peft.method={self.peft.method!r}")

    def to_dict(self) -> dict[str, Any]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "RunConfig":
        data = data or {}
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a mapping of sections, got {type(data).__name__}")
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown config section(s) {unknown}; sections: {', '.join(SECTIONS)}")
        parts = {}
        for name, section_cls in SECTIONS.items():
            parts[name] = _build_section(name, section_cls, data.get(name) or {})
        try:
            return cls(**parts)
        except ConfigError:
            raise
        except ValueError as e:
            raise ConfigError(str(e)) from None

    @classmethod
    def load(cls, path: str | Path | None, overrides: list[str] | None = None) -> "RunConfig":
        data: dict[str, Any] = {}
        if path is not None:
            from .config_presets import preset_names, resolve_config_path

            p = resolve_config_path(path)
            if p is None:
                raise ConfigError(f"config file not found: {path} (or a preset name: {', '.join(preset_names())})")
            try:
                data = yaml.safe_load(p.read_text()) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
        for item in overrides or []:
            apply_override(data, item)
        return cls.from_dict(data)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one ``section.key=value`` override; the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or parts[0] not in SECTIONS:
        raise ConfigError(f"override {item!r}: key must be <section>.<field> with section in {', '.join(SECTIONS)}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {p} is not a section")
    node[parts[-1]] = value


def _build_section(name: str, section_cls: type, values: dict[str, Any]) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config section {name!r} must be a mapping, got {values!r}")
    hints = get_type_hints(section_cls)
    known = {f.name for f in fields(section_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in {name}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    checked = {k: _check_type(f"{name}.{k}", v, hints[k]) for k, v in values.items()}
    try:
        return section_cls(**checked)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(f"{name}.") else f"{name}: {msg}") from None


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """Coerce YAML scalars to the field type (int → float is fine); reject the rest clearly."""
    allowed = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    if value is None:
        if type(None) in allowed or hint is Any:
            return None
        raise ConfigError(f"{key} may not be null")
    for t in allowed:
        origin = get_origin(t) or t
        if t is Any:
            return value
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is bool and isinstance(value, bool):
            return value
        if origin is str and isinstance(value, str):
            return value
        if origin is list and isinstance(value, (list, tuple)):
            return list(value)
        if origin is list and isinstance(value, str):  # "q,v" or "q" from the command line
            return [v.strip() for v in value.split(",") if v.strip()]
        if origin is dict and isinstance(value, dict):
            return value
    names = ", ".join(getattr(get_origin(t) or t, "__name__", str(t)) for t in allowed)
    raise ConfigError(f"{key}: expected {names}, got {value!r}")
