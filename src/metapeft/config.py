"""Run configuration: typed dataclass sections that round-trip to YAML.

``RunConfig`` has the sections ``data``, ``model``, ``peft``, ``meta``, ``train``; the CLI
loads a YAML file and applies ``--set section.key=value`` overrides on top. Unknown keys
and bad values are rejected with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .peft.config import PeftConfig
from .validation import check_depth, spec, validate_fields

__all__ = ["ConfigError", "DataConfig", "MetaConfig", "ModelConfig", "RunConfig", "TrainConfig", "apply_override"]


@dataclass
class DataConfig:
    name: str = field(default="aid", metadata=spec("dataset name or format (aid, mstar_soc, imagefolder, ...)"))
    root: str | None = field(default=None, metadata=spec("data root; default $METAPEFT_DATA or ../shared/data"))
    imbalance_ratio: float | None = field(default=None, metadata=spec(
        "subsample train to this long-tail IR (max/min class count); null = use the data as given", ge=1))
    split_seed: int = field(default=0, metadata=spec("seed of the train/test split and the LT subsampling", ge=0))
    test_fraction: float = field(default=0.2, metadata=spec("test share when the source has no split", gt=0, lt=1))
    group_thresholds: list[int] = field(default_factory=lambda: [100, 20], metadata=spec(
        "many > t0 >= medium >= t1 > few (train counts)", ge=0, length=2))
    max_per_class: int | None = field(default=None, metadata=spec("cap train images per class (before LT)", ge=1))
    image_size: int | None = field(default=None, metadata=spec(
        "decode size for folder/list formats (shorter side, then centre crop to square: aspect kept)", ge=1))
    augment: bool = field(default=True, metadata=spec("random resized crop + flip on training batches"))
    crop_scale: list[float] = field(default_factory=lambda: [0.5, 1.0], metadata=spec("RRC area range", gt=0, le=1,
                                                                                     length=2))
    # New fields default to None (= the old behaviour), so an old sweep directory still resumes.
    rs_augment: bool | None = field(default=None, metadata=spec(
        "remote-sensing augmentation: + vertical flip and random 90° rotations (scenes have no 'up'); null = off"))
    eval_crop: float | None = field(default=None, metadata=spec(
        "evaluation centre crop, share of the shorter side (0.875 = the 256→224 recipe); null = 1.0 (resize only)",
        gt=0, le=1))
    ram_budget_gb: float | None = field(default=None, metadata=spec(
        "folder/list formats: a split whose decoded size exceeds this is read lazily in DataLoader workers (same "
        "batches) instead of decoded into RAM; null = a quarter of the machine's RAM", gt=0))
    workers: int | None = field(default=None, metadata=spec(
        "DataLoader workers decoding a lazily read split; null = min(8, cores - 1)", ge=1))
    options: dict[str, Any] = field(default_factory=dict, metadata=spec("extra format kwargs (list files, ...)"))

    def __post_init__(self) -> None:
        validate_fields(self, "data")
        if self.crop_scale[0] > self.crop_scale[1]:
            raise ConfigError(f"data.crop_scale = {self.crop_scale}: must be [lo, hi] with lo <= hi")
        if self.group_thresholds[0] < self.group_thresholds[1]:
            raise ConfigError(f"data.group_thresholds = {self.group_thresholds}: must be [many, few] with many >= few")


@dataclass
class ModelConfig:
    name: str = field(default="vit_small_patch14_dinov2", metadata=spec("timm model name"))
    pretrained: str | None = field(default="bundled", metadata=spec("bundled | file path | timm tag | null"))
    img_size: int = field(default=56, metadata=spec("input resolution (a multiple of the patch size)", ge=8))
    head: Literal["cosine", "linear"] = field(default="cosine", metadata=spec("cosine | linear"))
    head_scale: float = field(default=25.0, metadata=spec("logit scale of the cosine classifier", gt=0))
    head_init: Literal["class_mean", "probe", "random"] = field(default="class_mean", metadata=spec(
        "class_mean (frozen features) | probe (a linear probe fitted on the frozen features before training: "
        "LP-FT; with train.epochs=0 the probe is the model) | random"))
    init_from: str | None = field(default=None, metadata=spec("run dir whose merged weights start the backbone"))
    # The probe fit (head_init=probe, train/probe.py). New fields default to None (= the documented default).
    probe_l2: float | None = field(default=None, metadata=spec(
        "head_init=probe, linear head: L2 weight on the standardised-feature weights (pick it on "
        "train.val_holdout); null = 1e-3", ge=0))
    probe_loss: Literal["balanced_ce", "la", "ce"] | None = field(default=None, metadata=spec(
        "head_init=probe: the fit's loss; null = balanced_ce (class-balanced weights, as a standard LT probe)"))
    probe_iters: int | None = field(default=None, metadata=spec(
        "head_init=probe: most L-BFGS iterations of the full-batch fit; null = 300", ge=1))
    options: dict[str, Any] = field(default_factory=dict,
                                    metadata=spec("extra timm create_model kwargs (depth, patch_size, ...)"))

    def __post_init__(self) -> None:
        validate_fields(self, "model")
        patch, source = self.options.get("patch_size"), "model.options.patch_size"
        if patch is None:
            m = re.search(r"patch(\d+)", self.name)
            patch, source = (int(m.group(1)) if m else None), self.name
        if isinstance(patch, int) and patch > 0 and self.img_size % patch:
            lo = self.img_size - self.img_size % patch
            raise ConfigError(f"model.img_size = {self.img_size}: must be a multiple of the patch size {patch} "
                              f"({source}), e.g. {lo or patch} or {lo + patch}; otherwise pixels are cropped away")


@dataclass
class MetaConfig:
    enabled: bool | None = field(default=None, metadata=spec(
        "learn γ by bi-level optimisation (MetaPEFT); null = on when the method has γ"))
    hypergrad: Literal["first_order", "unrolled", "neumann"] = field(default="first_order", metadata=spec(
        "first_order (default: same accuracy as unrolled here at 1.10x plain cost vs 1.24x) | unrolled | neumann"))
    val_mode: Literal["resample", "holdout"] = field(default="resample", metadata=spec(
        "resample (class-balanced from train) | holdout"))
    holdout_ratio: float = field(default=0.2, metadata=spec("stratified hold-out share (val_mode=holdout)",
                                                            gt=0, lt=1))
    val_batch_size: int = field(default=32, metadata=spec("images per meta-validation batch", ge=1))
    val_augment: bool = field(default=True, metadata=spec("augment meta-validation batches like training"))
    interval: int | None = field(default=None, metadata=spec(
        "one meta step every N inner steps (cost ~1/N); null = 10, or fewer so every epoch has >= 2", ge=1))
    optimizer: Literal["adam", "sgd"] = field(default="adam", metadata=spec("adam | sgd (for γ)"))
    lr: float = field(default=0.25, metadata=spec("meta learning rate (Adam moves γ ~lr per meta step). "
                                                  "0.25 is safe for every method; LoRA at short budgets "
                                                  "gained most at 1.0 (docs/results.md)", gt=0))
    momentum: float = field(default=0.9, metadata=spec("SGD momentum (optimizer=sgd)", ge=0, lt=1))
    weight_decay: float = field(default=0.0, metadata=spec("weight decay on γ (pulls γ to 0)", ge=0))
    outer_loss: Literal["balanced_ce", "ce", "la"] = field(default="balanced_ce", metadata=spec(
        "balanced_ce | ce | la"))
    neumann_terms: int = field(default=3, metadata=spec("Neumann series length (hypergrad=neumann)", ge=0))
    prune_threshold: float = field(default=0.1, metadata=spec("|γ| below this = site 'not inserted'", ge=0))
    prune: bool = field(default=False, metadata=spec("remove pruned sites before the final evaluation"))
    # The stepsize mode (issue 17, meta/stepsize.py). New fields default to None (= the documented default),
    # so a sweep started before they existed still resumes.
    mode: Literal["gamma", "stepsize"] | None = field(default=None, metadata=spec(
        "gamma (the paper's one learned output scale γ per site; by default after an LR range test, see "
        "meta.calibrate) | stepsize (the LR range test alone, or with meta.learn_split the learned split of the "
        "step size between head, input and output matrices; γ stays at its init); null = gamma"))
    step_groups: Literal["kind", "block"] | None = field(default=None, metadata=spec(
        "stepsize: kind (head, input, output matrices) | block (block × kind); null = kind"))
    scale_invariant: bool | None = field(default=None, metadata=spec(
        "stepsize: divide a zero-initialised output matrix's lr by (α·γ₀)², so α/r stops mattering; null = true"))
    calibrate: bool | None = field(default=None, metadata=spec(
        "an LR range test of calib_steps steps (see calib_restart) sets the run's lr (train.lr is then unused), "
        "and meta.guard watches the run; γ (gamma mode) learns once it has ended. null = true in both modes "
        "(gamma: false is the paper's method at train.lr). A null skips it in runs under 3 × calib_steps steps"))
    calib_steps: int | None = field(default=None, metadata=spec(
        "range test (meta.calibrate): its length in steps; null = 20 (10 collapsed a run, results.md)", ge=3))
    calib_restart: Literal["inline", "initial", "warm"] | None = field(default=None, metadata=spec(
        "range test: inline = it is the run's first steps, and the run goes on from the weights it restored with "
        "what is left of its schedule (sessions 1-5); initial = it runs on batches of its own before the run, "
        "which then starts from its initial weights with its whole schedule at the found lr; warm = the same, "
        "but the run starts from the weights the test restored (trained only below the found lr: a warm-up); "
        "null = warm for adapter and adaptformer, inline for every other method (the hold-out's picks)"))
    calib_range: list[float] | None = field(default=None, metadata=spec(
        "range test: its [lo, hi] lr; null = sgd [1e-3, 1], adamw [1e-5, 0.1]", gt=0, length=2))
    calib_probe: int | None = field(default=None, metadata=spec(
        "range test: it watches the loss of this many fixed class-balanced val batches (0: the "
        "smoothed train loss instead); null = 2", ge=0))
    calib_rise: float | None = field(default=None, metadata=spec(
        "range test: it ends where the watched loss exceeds (1 + this) × its minimum so far; null = 0.3", gt=0))
    calib_safety: float | None = field(default=None, metadata=spec(
        "the run's lr = the lr where the range test's loss rose ÷ this; null = 4 up to 3 epochs, 8 at 10 "
        "(the hold-out's picks), log-linear in train.epochs between and beyond, at most 16", ge=1))
    max_mult: float | None = field(default=None, metadata=spec(
        "stepsize: highest learned multiplier of a group's lr; null = 2", ge=1))
    step_relative: bool | None = field(default=None, metadata=spec(
        "stepsize: learn only the split of the lr between groups (the range test sets its level); null = true"))
    learn_split: bool | None = field(default=None, metadata=spec(
        "stepsize: learn the split of the lr between head, input and output matrices from the hypergradient "
        "(false: the range test alone sets one lr, no meta backward); null = false (on the hold-out it tied "
        "on AID-LT and lost on MSTAR-LT: docs/results.md)"))
    guard_spike: float | None = field(default=None, metadata=spec(
        "with the range test (both modes): smoothed train loss above this × its minimum restores the last snapshot and halves the step "
        "sizes (0: off); null = 2", ge=0))
    guard: Literal["loss", "probe"] | None = field(default=None, metadata=spec(
        "with the range test (both modes): what the guard restores. loss: the newest snapshot, on a train-loss spike only. probe: "
        "at every snapshot the range test's probe loss is also read; above 1.3x its best at 2 snapshots in a "
        "row the run goes back to the snapshot with the best probe loss (a collapse damages the newest one "
        "too); without a probe (calibrate=false or calib_probe=0) it acts as loss; null = probe"))

    def __post_init__(self) -> None:
        validate_fields(self, "meta")
        if self.calib_range is not None and not self.calib_range[0] < self.calib_range[1]:
            raise ConfigError(f"meta.calib_range = {self.calib_range}: must be [lo, hi] with lo < hi")
        if self.guard_spike is not None and 0 < self.guard_spike <= 1:
            raise ConfigError(f"meta.guard_spike = {self.guard_spike}: must be 0 (off) or > 1")


@dataclass
class TrainConfig:
    epochs: int = field(default=10, metadata=spec(
        "training epochs (0: no training, the initialised head is the model, e.g. a linear probe)", ge=0))
    batch_size: int = field(default=32, metadata=spec("images per optimizer step", ge=1))
    grad_accum: int = field(default=1, metadata=spec("micro-batches per optimizer step", ge=1))
    optimizer: Literal["sgd", "adamw"] = field(default="sgd", metadata=spec("sgd | adamw"))
    lr: float = field(default=0.01, metadata=spec("learning rate of φ", gt=0))
    head_lr_mult: float | None = field(default=None, metadata=spec(
        "the classifier head's lr = train.lr × this (a tuned LR's gain is largely the head's); null = 1", gt=0))
    momentum: float = field(default=0.9, metadata=spec("SGD momentum", ge=0, lt=1))
    layer_decay: float | None = field(default=None, metadata=spec(
        "layer-wise lr decay (BEiT/MAE): block i of L gets lr × this^(L − i), the head lr × 1, the stem "
        "this^(L + 1); biases and norms get no weight decay; null = off (one lr for every weight)", gt=0, le=1))
    weight_decay: float = field(default=5e-4, metadata=spec("weight decay of φ", ge=0))
    warmup_steps: int = field(default=0, metadata=spec("linear warm-up steps before the cosine schedule", ge=0))
    loss: Literal["ce", "la", "balanced_softmax", "focal"] = field(default="la", metadata=spec(
        "ce | la | balanced_softmax | focal"))
    la_tau: float = field(default=1.0, metadata=spec("logit-adjustment temperature τ", ge=0))
    focal_gamma: float = field(default=2.0, metadata=spec("focal loss γ", ge=0))
    clip_grad: float | None = field(default=None, metadata=spec("clip the gradient norm of φ", gt=0))
    bf16: bool = field(default=False, metadata=spec("bf16 autocast (legacy switch: train.precision=bf16)"))
    seed: int = field(default=0, metadata=spec("seed of init, data order, augmentation, meta sampling",
                                               ge=0, lt=2**32))
    eval_every: int = field(default=0, metadata=spec("evaluate on test every N epochs (0: at the end)", ge=0))
    val_holdout: float = field(default=0.0, metadata=spec(
        "stratified share of train held out for model selection (HPO); reported as metrics.json 'val'", ge=0, lt=1))
    select_metric: Literal["overall", "balanced", "many", "medium", "few"] | None = field(default=None, metadata=spec(
        "with val_holdout > 0: the validation metric that picks the epoch whose model is tested; null = balanced"))
    eval_split: Literal["val", "test"] | None = field(default=None, metadata=spec(
        "what eval_every evaluates during training: val | test; null = val with a hold-out, else test"))
    eval_batch_size: int = field(default=128, metadata=spec("images per evaluation batch", ge=1))
    device: str = field(default="auto", metadata=spec("auto | cpu | cuda | cuda:N | mps"))
    threads: int | None = field(default=None, metadata=spec("torch CPU threads (default: torch's)", ge=1))
    tensorboard: bool = field(default=True, metadata=spec("write TensorBoard scalars"))
    progress: bool = field(default=True, metadata=spec("show progress bars"))
    keep_checkpoints: int = field(default=1, metadata=spec("epoch checkpoints to keep", ge=1))
    cache_prefix: bool = field(default=True, metadata=spec(
        "cache the frozen blocks before the first trainable site (only when data.augment=false)"))
    prefix_cache_dir: str | None = field(default=None, metadata=spec(
        "directory where cached prefix tokens are stored and shared between runs (sweeps: SWEEP/prefix_cache)"))
    export_merged: bool | None = field(default=None, metadata=spec(
        "write export/merged.safetensors (the whole backbone, for plain timm); null = yes, but not in sweep cells"))
    export_onnx: bool | None = field(default=None, metadata=spec(
        "write export/model.onnx (the whole classifier); null = yes, but not in sweep cells"))
    # Issue 15 (GPU scale). New fields default to None (= the documented default): old run dirs resume unchanged.
    precision: Literal["fp32", "bf16", "fp16"] | None = field(default=None, metadata=spec(
        "compute precision of inner steps, meta steps and evaluation (weights, losses, γ stay fp32; fp16 uses a "
        "GradScaler); null = bf16 on a CUDA GPU that supports it, else fp32 (bf16 is slower on CPUs without AMX)"))
    tf32: bool | None = field(default=None, metadata=spec("TF32 matmuls on CUDA; null = on (no effect on CPU)"))
    compile: bool | None = field(default=None, metadata=spec(
        "torch.compile the model for ordinary inner steps (meta steps and evaluation stay eager); null = off "
        "(1.18x per step on a 2-core CPU after ~14 s of compiling: worth it for runs longer than a few minutes)"))
    channels_last: bool | None = field(default=None, metadata=spec(
        "channels-last memory format for the patch-embedding convolution and its input; null = off (a ViT has "
        "one convolution; 1.03x on a 2-core CPU, within noise: bench/compile_channels_last.py)"))
    sync_free: bool | None = field(default=None, metadata=spec(
        "ordinary steps read nothing from the device: a fused optimizer skips a bad step on the device and losses "
        "are read every few steps (a skipped step then still advances the schedule); null = on for CUDA, off on "
        "CPU (where a read costs nothing). Not with meta.mode=stepsize or fp16, which read every step"))

    def __post_init__(self) -> None:
        validate_fields(self, "train")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"train.batch_size = {self.batch_size}: must be divisible by train.grad_accum "
                              f"({self.grad_accum})")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError(f"train.device = {self.device!r}: allowed auto | cpu | cuda | cuda:N | mps")


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
            self.meta.enabled = self.peft.has_gamma or self.meta.mode == "stepsize"  # stepsize needs no γ
        if self.meta.enabled and (self.meta.mode or "gamma") == "gamma" and not self.peft.has_gamma:
            raise ConfigError(f"meta.enabled needs a method with γ modulators (lora, adaptformer, adapter) "
                              f"and peft.gamma=true; got peft.method={self.peft.method!r}")

        if self.train.layer_decay is not None and self.meta.enabled and self.meta.mode == "stepsize":
            raise ConfigError("train.layer_decay does not combine with meta.mode=stepsize (it builds its own "
                              "param groups and learns their lrs); set train.layer_decay=null or meta.mode=gamma")
        if self.train.sync_free:
            reads = ("meta.mode=stepsize" if self.meta.enabled and self.meta.mode == "stepsize"
                     else "train.precision=fp16" if self.train.precision == "fp16" else None)
            if reads:
                raise ConfigError(f"train.sync_free=true does not combine with {reads}, which reads the step's loss "
                                  f"on the host every step; set train.sync_free=null")

    def to_dict(self) -> dict[str, Any]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "RunConfig":
        data = data or {}
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a mapping of sections, got {type(data).__name__}")
        unknown = sorted(set(map(str, data)) - set(SECTIONS))
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
            data = read_yaml_file(p)
        for item in overrides or []:
            apply_override(data, item)
        return cls.from_dict(data)


def read_yaml_file(p: Path) -> Any:
    """A YAML config file's content, with every way it can be bad as one ConfigError naming the file."""
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
    except (OSError, UnicodeDecodeError, RecursionError, ValueError) as e:
        raise ConfigError(f"config file {p} cannot be read ({type(e).__name__}): fix or replace it") from None
    check_depth(f"config file {p}", data)
    return data


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one ``section.key=value`` override; the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or parts[0] not in SECTIONS:
        raise ConfigError(f"override {item!r}: key must be <section>.<field> with section in {', '.join(SECTIONS)}")
    if not raw.strip():
        raise ConfigError(f"override {item!r} has no value; write {key.strip()}=null for the default")
    try:
        value = yaml.safe_load(raw)
    except RecursionError:
        raise ConfigError(f"override {key.strip()}: the value is nested too deeply") from None
    except (yaml.YAMLError, ValueError, OverflowError):  # not YAML (or a bad date): keep the text
        value = raw
    check_depth(key.strip(), value)
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {p} is not a section")
    node[parts[-1]] = value


def _build_section(name: str, section_cls: type, values: dict[str, Any]) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config section {name!r} must be a mapping, got {values!r}")
    known = {f.name for f in fields(section_cls)}
    unknown = sorted(set(map(str, values)) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in {name}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return section_cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(f"{name}.") else f"{name}: {msg}") from None
