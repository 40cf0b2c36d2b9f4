"""Fields added by issues 13 and 15 default to None, so a sweep started before them still resumes."""

from __future__ import annotations

from metapeft.experiments.cellconfig import resolve_base
from metapeft.experiments.manifest import _diff

NEW = {"data": ("rs_augment", "eval_crop", "ram_budget_gb", "workers"),
       "train": ("export_merged", "export_onnx", "select_metric", "eval_split", "precision", "tf32", "compile",
                 "channels_last")}


def test_an_old_manifest_without_the_new_fields_is_compatible(tiny_run):
    base = resolve_base(None, tiny_run)
    old = {section: {k: v for k, v in values.items() if k not in NEW.get(section, ())}
           for section, values in base.items()}
    assert old != base and _diff(old, base) == []
