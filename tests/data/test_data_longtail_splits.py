"""Long-tail subsampling, stratified splits, class groups, class-balanced sampling."""

import pytest
import torch

from metapeft.data import (
    ClassBalancedSampler, DataError, class_groups_from_counts, class_groups_from_names, long_tail_counts,
    long_tail_indices, shipped_groups, stratified_holdout, stratified_split,
)
from metapeft.data.groups import shipped_classes
from metapeft.data.longtail import class_order, default_n_max


def _labels(counts):
    return torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])


# ---------------------------------------------------------------- long tail

@pytest.mark.parametrize("ir,total,tail", [(100, 10847, 5), (50, 12608, 10), (10, 19573, 50)])
def test_cifar100_lt_counts_match_lift(ir, total, tail):
    counts = long_tail_counts(500, ir, 100)
    assert counts[0] == 500 and counts[-1] == tail and sum(counts) == total
    assert all(a >= b for a, b in zip(counts, counts[1:]))


def test_profile_is_robust_to_float_error():
    # 65 * (1 / 2.6) evaluates to 24.999999999999996 in floating point; the tail must still be 25.
    assert long_tail_counts(65, 2.6, 4)[-1] == 25
    assert long_tail_counts(39, 1.3, 2) == [39, 30]


def test_default_n_max_makes_ir_exact():
    assert default_n_max(176, 50) == 150
    assert default_n_max(500, 100) == 500
    assert default_n_max(232, 100) == 200
    assert default_n_max(3, 10) == 3  # tail would be empty: left for long_tail_indices to report


def test_long_tail_indices_profile_order_and_determinism():
    labels = _labels([40, 50, 60, 45, 70])[torch.randperm(265, generator=torch.Generator().manual_seed(0))]
    idx = long_tail_indices(labels, 10, seed=0, n_max=40)
    kept = torch.bincount(labels[idx], minlength=5)
    order = class_order(5, "seeded", 0)
    assert [int(kept[c]) for c in order] == long_tail_counts(40, 10, 5) == [40, 22, 12, 7, 4]
    assert torch.equal(idx, long_tail_indices(labels, 10, seed=0, n_max=40))
    assert len(set(idx.tolist())) == len(idx)
    other = long_tail_indices(labels, 10, seed=1, n_max=40)
    assert not torch.equal(idx, other)
    idx_i = long_tail_indices(labels, 10, seed=0, n_max=40, order="index")
    assert torch.bincount(labels[idx_i], minlength=5).tolist() == [40, 22, 12, 7, 4]
    idx_e = long_tail_indices(labels, 10, seed=0, n_max=40, order=[4, 3, 2, 1, 0])
    assert torch.bincount(labels[idx_e], minlength=5).tolist() == [4, 7, 12, 22, 40]


def test_seeded_class_orders_differ_across_seeds():
    orders = {tuple(class_order(30, "seeded", s)) for s in range(5)}
    assert len(orders) == 5


def test_long_tail_errors():
    labels = _labels([10, 10, 10])
    with pytest.raises(DataError, match="0 training samples"):
        long_tail_indices(labels, 100, seed=0)  # 10 / 100 -> empty tail class
    with pytest.raises(DataError, match="asks for"):
        long_tail_indices(labels, 2, seed=0, n_max=20)
    with pytest.raises(DataError, match="no training samples"):
        long_tail_indices(_labels([5, 0, 5]), 2, seed=0, names=["a", "b", "c"])
    with pytest.raises(DataError, match="permutation"):
        long_tail_indices(labels, 2, order=[0, 0, 1])
    with pytest.raises(DataError, match=">= 1"):
        long_tail_counts(10, 0.5, 3)


# ---------------------------------------------------------------- splits

def test_stratified_split_properties():
    labels = _labels([1, 2, 10, 37])
    tr, te = stratified_split(labels, 0.2, seed=0)
    assert set(tr.tolist()).isdisjoint(te.tolist()) and len(tr) + len(te) == len(labels)
    assert torch.bincount(labels[te], minlength=4).tolist() == [0, 1, 2, 7]
    assert torch.equal(te, stratified_split(labels, 0.2, seed=0)[1])
    assert not torch.equal(te, stratified_split(labels, 0.2, seed=1)[1])
    with pytest.raises(DataError):
        stratified_split(labels, 1.0)


def test_stratified_holdout_keeps_every_class_in_train():
    labels = _labels([1, 2, 3, 100])
    tr, va = stratified_holdout(labels, 0.2, seed=0)
    ctr, cva = (torch.bincount(labels[i], minlength=4).tolist() for i in (tr, va))
    assert ctr == [1, 1, 2, 80] and cva == [0, 1, 1, 20]  # 1-sample class stays in train only
    assert set(tr.tolist()).isdisjoint(va.tolist())
    assert not torch.equal(va, stratified_holdout(labels, 0.2, seed=1)[1])
    assert not torch.equal(va, stratified_split(labels, 0.2, seed=0)[1])  # independent streams


# ---------------------------------------------------------------- groups

def test_groups_from_counts_boundaries():
    g = class_groups_from_counts([101, 100, 20, 19, 0, 500])
    assert g == {"many": [0, 5], "medium": [1, 2], "few": [3, 4]}
    g = class_groups_from_counts([11, 10, 3, 2], thresholds=(10, 3))
    assert g == {"many": [0], "medium": [1, 2], "few": [3]}
    with pytest.raises(DataError):
        class_groups_from_counts([1], thresholds=(5, 10))


def test_shipped_groups_dota_and_fusrs():
    dota = shipped_classes("dota")
    assert len(dota) == 15 and dota == sorted(dota) and dota[10] == "small-vehicle"
    g = shipped_groups("dota", dota)
    assert [len(g[k]) for k in ("many", "medium", "few")] == [3, 6, 6]
    assert {dota[i] for i in g["many"]} == {"ship", "large-vehicle", "small-vehicle"}
    v17 = shipped_groups("fusrs_v17", shipped_classes("fusrs_v17"))
    assert v17 == {"many": [0, 1, 2], "medium": [], "few": [3, 4]}
    v25 = shipped_groups("fusrs_v25", shipped_classes("fusrs_v25"))
    assert v25 == {"many": [0, 1], "medium": [], "few": [2, 3]}


def test_group_names_must_partition():
    classes = ["a", "b", "c"]
    with pytest.raises(DataError, match="not one of the classes"):
        class_groups_from_names({"many": ["a", "zz"], "few": ["b", "c"]}, classes)
    with pytest.raises(DataError, match="in no group"):
        class_groups_from_names({"many": ["a"], "few": ["b"]}, classes)
    with pytest.raises(DataError, match="both"):
        class_groups_from_names({"many": ["a", "b"], "few": ["b", "c"]}, classes)


# ---------------------------------------------------------------- class-balanced sampling

def test_class_balanced_sampler_is_balanced_and_valid():
    labels = _labels([500, 50, 5, 1, 0, 44])  # class 4 has no samples: never drawn
    s = ClassBalancedSampler(labels, batch_size=64, num_classes=6)
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([s.sample(g) for _ in range(200)])
    assert idx.shape == (12800,)
    freq = torch.bincount(labels[idx], minlength=6).double() / len(idx)
    assert freq[4] == 0
    for c in (0, 1, 2, 3, 5):
        assert abs(freq[c] - 0.2) < 0.03
    # the 5-sample class uses all of its samples
    assert set(idx[labels[idx] == 2].tolist()) == set(torch.nonzero(labels == 2).flatten().tolist())
    # deterministic given the generator
    assert torch.equal(s.sample(torch.Generator().manual_seed(7)), s.sample(torch.Generator().manual_seed(7)))
    assert s.sample(torch.Generator().manual_seed(1), batch_size=8).shape == (8,)
