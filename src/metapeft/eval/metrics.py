"""Classification metrics for long-tailed evaluation: overall, balanced, many/medium/few, per-class, macro-F1."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text

__all__ = ["Metrics", "compute_metrics"]

GROUPS = ("many", "medium", "few")


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


def _none_to_nan(x: Any) -> Any:
    return [math.nan if v is None else v for v in x] if isinstance(x, list) else (math.nan if x is None else x)


@dataclass
class Metrics:
    """Evaluation result. Accuracies are fractions in [0, 1]; NaN where undefined (empty group, no test sample).

    Attributes:
        overall: sample-weighted accuracy.
        balanced: mean per-class accuracy over classes with test samples.
        many / medium / few: mean per-class accuracy within each group (NaN if the group is empty).
        per_class: accuracy (recall) per class, NaN for a class without test samples.
        macro_f1: F1 averaged over classes present in targets or predictions (sklearn's default).
        confusion: confusion[true][pred] counts.
        counts: test samples per class.
        num_samples: number of evaluated samples.
        class_names: optional names for printing.
    """

    overall: float
    balanced: float
    many: float
    medium: float
    few: float
    per_class: list[float]
    macro_f1: float
    confusion: list[list[int]]
    counts: list[int]
    num_samples: int
    class_groups: dict[str, list[int]] = field(default_factory=dict)
    class_names: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; NaN becomes None."""
        return _nan_to_none(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Metrics:
        """Inverse of ``to_dict`` (None back to NaN)."""
        d = dict(d)
        for k in ("overall", "balanced", "many", "medium", "few", "macro_f1", "per_class"):
            d[k] = _none_to_nan(d[k])
        return cls(**d)

    def to_json(self, path: str | Path) -> Path:
        """Write ``to_dict()`` as JSON atomically (temp file + rename in the same directory)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    def summary_row(self) -> str:
        """One line: ``overall 85.20 | balanced 80.10 | many ... | medium ... | few ... | macro_f1 ...`` (percent)."""
        return " | ".join(f"{k} {_pct(getattr(self, k))}" for k in ("overall", "balanced", *GROUPS, "macro_f1"))

    def __str__(self) -> str:
        sizes = {g: len(self.class_groups.get(g, [])) for g in GROUPS}
        rows = [("overall", self.overall, f"{self.num_samples} samples"),
                ("balanced", self.balanced, f"{len(self.per_class)} classes")]
        rows += [(g, getattr(self, g), f"{sizes[g]} classes") for g in GROUPS]
        rows.append(("macro_f1", self.macro_f1, ""))
        lines = [f"{'metric':<10} {'%':>7}  note", "-" * 32]
        lines += [f"{k:<10} {_pct(v):>7}  {note}".rstrip() for k, v, note in rows]
        if len(self.per_class) <= 40:
            names = self.class_names or [str(i) for i in range(len(self.per_class))]
            width = max(10, max(len(n) for n in names))
            lines += ["", f"{'class':<{width}} {'acc %':>7} {'n':>6}"]
            lines += [f"{n:<{width}} {_pct(a):>7} {c:>6}" for n, a, c in zip(names, self.per_class, self.counts)]
        return "\n".join(lines)


def _pct(v: float) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{100 * v:.2f}"


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def compute_metrics(
    logits_or_preds: torch.Tensor,
    targets: torch.Tensor,
    ds_or_groups: Any = None,
    num_classes: int | None = None,
) -> Metrics:
    """Compute all metrics from logits [N, C] (argmax is taken) or predicted labels [N].

    Args:
        logits_or_preds: float logits [N, C] or integer predictions [N].
        targets: true labels [N].
        ds_or_groups: an ``LTDataset`` (groups, class count and names come from it), a groups mapping
            {"many": [...], "medium": [...], "few": [...]}, or None (group accuracies are then NaN).
        num_classes: number of classes (default: from the dataset, the logits, or the labels seen).
    """
    groups: dict[str, list[int]] = {g: [] for g in GROUPS}
    names = None
    if ds_or_groups is not None and hasattr(ds_or_groups, "class_groups"):
        groups.update({g: list(v) for g, v in ds_or_groups.class_groups.items() if g in GROUPS})
        names = list(ds_or_groups.classes)
        num_classes = num_classes if num_classes is not None else ds_or_groups.num_classes
    elif isinstance(ds_or_groups, Mapping):
        bad = set(ds_or_groups) - set(GROUPS)
        if bad:
            raise ValueError(f"group keys must be {GROUPS}; got extra {sorted(bad)}")
        groups.update({g: [int(i) for i in (v or [])] for g, v in ds_or_groups.items()})
    elif ds_or_groups is not None:
        raise TypeError(f"ds_or_groups must be an LTDataset, a groups mapping or None; "
                        f"got {type(ds_or_groups).__name__}")

    out = torch.as_tensor(logits_or_preds).detach().cpu()
    targets = torch.as_tensor(targets).detach().cpu().long().reshape(-1)
    if out.dim() == 2:
        if num_classes is None:
            num_classes = out.shape[1]
        elif out.shape[1] != num_classes:
            raise ValueError(f"logits have {out.shape[1]} columns but there are {num_classes} classes")
        preds = out.argmax(dim=1)
    elif out.dim() == 1:
        preds = out.long()
    else:
        raise ValueError(f"expected logits [N, C] or predictions [N]; got shape {tuple(out.shape)}")
    if preds.numel() != targets.numel():
        raise ValueError(f"{preds.numel()} predictions but {targets.numel()} targets")
    if num_classes is None:
        seen = [int(t.max()) for t in (preds, targets) if t.numel()]
        seen += [max(v) for v in groups.values() if v]
        num_classes = max(seen) + 1 if seen else 0
    c = int(num_classes)
    for what, t in (("target", targets), ("prediction", preds)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= c):
            raise ValueError(f"{what} label outside 0..{c - 1}")
    for g, v in groups.items():
        if any(not 0 <= i < c for i in v):
            raise ValueError(f"group '{g}' has a class index outside 0..{c - 1}")

    from torchmetrics.functional.classification import multiclass_confusion_matrix, multiclass_f1_score

    if targets.numel():
        cm = multiclass_confusion_matrix(preds, targets, num_classes=c).long()
        f1 = float(multiclass_f1_score(preds, targets, num_classes=c, average="macro"))
    else:
        cm, f1 = torch.zeros(c, c, dtype=torch.long), math.nan
    support = cm.sum(dim=1)
    correct = cm.diagonal()
    per_class = [float(correct[k]) / int(support[k]) if int(support[k]) else math.nan for k in range(c)]
    n = int(targets.numel())
    overall = float(correct.sum()) / n if n else math.nan
    group_acc = {g: _mean([per_class[k] for k in groups[g]]) for g in GROUPS}
    return Metrics(
        overall=overall,
        balanced=_mean(per_class),
        many=group_acc["many"],
        medium=group_acc["medium"],
        few=group_acc["few"],
        per_class=per_class,
        macro_f1=f1,
        confusion=cm.tolist(),
        counts=support.tolist(),
        num_samples=n,
        class_groups=groups,
        class_names=names,
    )
