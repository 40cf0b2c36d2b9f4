"""Metrics against hand-computed values and scikit-learn; NaN handling; JSON/table output."""

import json
import math

import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

from metapeft.data import ImageSet, LTDataset
from metapeft.eval import Metrics, compute_metrics

GROUPS = {"many": [0], "medium": [1], "few": [2, 3]}


def test_hand_computed_example():
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 2, 3])
    preds = torch.tensor([0, 0, 0, 1, 1, 0, 2, 1])
    m = compute_metrics(preds, targets, GROUPS, num_classes=4)
    assert m.overall == pytest.approx(5 / 8)
    assert m.per_class == pytest.approx([0.75, 0.5, 1.0, 0.0])
    assert m.balanced == pytest.approx((0.75 + 0.5 + 1 + 0) / 4)
    assert (m.many, m.medium, m.few) == pytest.approx((0.75, 0.5, 0.5))
    assert m.confusion == [[3, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]]
    assert m.counts == [4, 2, 1, 1] and m.num_samples == 8
    # F1 per class: c0 p=3/4 r=3/4 -> .75; c1 p=1/3 r=1/2 -> .4; c2 1; c3 0
    assert m.macro_f1 == pytest.approx((0.75 + 0.4 + 1.0 + 0.0) / 4)


def test_logits_equal_preds_and_match_sklearn():
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 7, (300,), generator=g)
    logits = torch.randn(300, 7, generator=g) + 2.0 * torch.nn.functional.one_hot(targets, 7)
    m = compute_metrics(logits, targets, None)
    preds = logits.argmax(1)
    assert m.to_dict() == compute_metrics(preds, targets, None, num_classes=7).to_dict()
    assert m.balanced == pytest.approx(balanced_accuracy_score(targets, preds))
    assert m.macro_f1 == pytest.approx(f1_score(targets, preds, average="macro"))
    assert m.confusion == confusion_matrix(targets, preds, labels=range(7)).tolist()
    assert math.isnan(m.many) and math.isnan(m.medium) and math.isnan(m.few)


def test_absent_classes_follow_sklearn_macro_f1_and_nan_per_class():
    targets = torch.tensor([0, 0, 1, 1, 2])
    preds = torch.tensor([0, 1, 1, 1, 4])  # class 3: never seen; class 4: predicted only
    m = compute_metrics(preds, targets, {"many": [0, 1], "medium": [3], "few": [2, 4]}, num_classes=5)
    assert m.macro_f1 == pytest.approx(f1_score(targets, preds, average="macro"))
    assert math.isnan(m.per_class[3]) and math.isnan(m.per_class[4])
    assert math.isnan(m.medium)  # the group's only class has no test sample
    assert m.few == pytest.approx(0.0) and m.balanced == pytest.approx((0.5 + 1 + 0) / 3)
    d = m.to_dict()
    assert d["medium"] is None and d["per_class"][3] is None
    json.dumps(d, allow_nan=False)


def test_from_dataset_and_serialisation(tmp_path):
    img = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    ds = LTDataset("toy", ImageSet(img, torch.tensor([0, 0, 1, 2])), ImageSet(img, torch.tensor([0, 1, 2, 2])),
                   ["cat", "dog", "eel"], {"many": [0], "medium": [], "few": [1, 2]})
    m = compute_metrics(torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2, 2]), ds)
    assert m.class_names == ["cat", "dog", "eel"] and math.isnan(m.medium)
    assert m.few == pytest.approx(0.75)
    path = m.to_json(tmp_path / "out" / "metrics.json")
    text = path.read_text()
    assert "NaN" not in text and not list(path.parent.glob(".metrics.json.*"))
    back = Metrics.from_dict(json.loads(text))
    assert back.overall == m.overall and math.isnan(back.medium) and back.confusion == m.confusion
    table = str(m)
    assert "balanced" in table and "n/a" in table and "eel" in table and "75.00" in table
    row = m.summary_row()
    assert row.startswith("overall 75.00 | balanced") and "medium n/a" in row


def test_bad_inputs():
    with pytest.raises(ValueError, match="predictions"):
        compute_metrics(torch.tensor([0, 1]), torch.tensor([0]), None)
    with pytest.raises(ValueError, match="outside"):
        compute_metrics(torch.tensor([0, 5]), torch.tensor([0, 1]), None, num_classes=3)
    with pytest.raises(ValueError, match="columns"):
        compute_metrics(torch.zeros(2, 4), torch.tensor([0, 1]), None, num_classes=3)
    with pytest.raises(ValueError, match="group keys"):
        compute_metrics(torch.tensor([0]), torch.tensor([0]), {"head": [0]})
