"""Data root resolution and the real bundled datasets (AID, MSTAR SOC)."""

import math
import os
from pathlib import Path

import pytest
import torch

import metapeft.data as mpd
from metapeft.data import DataError, load_dataset, resolve_data_root
from metapeft.data.longtail import default_n_max, long_tail_counts

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _real_root() -> Path | None:
    try:
        root = resolve_data_root()
    except DataError:
        return None
    return root if (root / "aid" / "images.npy").is_file() and (root / "mstar_soc" / "images.npy").is_file() else None


REAL = _real_root()
# Fails (via the shared `data_root` fixture) rather than skips when the bundled data is missing.
needs_real = pytest.mark.usefixtures("data_root")


# ---------------------------------------------------------------- root resolution

def test_explicit_root_wins_over_env(tmp_path, monkeypatch):
    monkeypatch.setenv("METAPEFT_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_root(None) == tmp_path / "env"


def test_fallback_is_checkout_sibling(monkeypatch):
    monkeypatch.delenv("METAPEFT_DATA", raising=False)
    repo = Path(mpd.__file__).resolve().parents[3]
    assert (repo / "pyproject.toml").is_file()
    sibling = repo.parent / "shared" / "data"
    if sibling.is_dir():
        assert resolve_data_root() == sibling
    else:
        with pytest.raises(DataError, match="METAPEFT_DATA"):
            resolve_data_root()


@pytest.mark.parametrize("name,source", [("aid", "Xia et al"), ("mstar_soc", "AFRL/DARPA")])
def test_missing_bundled_dataset_names_source_and_fix(tmp_path, monkeypatch, name, source):
    monkeypatch.setenv("METAPEFT_DATA", str(tmp_path))
    with pytest.raises(DataError) as e:
        load_dataset(name)
    msg = str(e.value)
    for needle in (source, "METAPEFT_DATA", "data.root", "images.npy", str(tmp_path / name)):
        assert needle in msg, needle


def test_unknown_dataset_and_option():
    with pytest.raises(DataError, match="available"):
        load_dataset("no_such_set")
    with pytest.raises(DataError, match="no option"):
        load_dataset("imagefolder", root=".", bogus=1)


# ---------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def aid_lt():
    return load_dataset("aid", imbalance_ratio=50, seed=0, root=REAL)


@needs_real
def test_aid_natural_split_is_stratified_and_seeded():
    a = load_dataset("aid", seed=0)
    assert a.num_classes == 30 and a.classes[0] == "Airport"
    assert len(a.train) + len(a.test) == 10000
    assert a.train.images.shape[1:] == (3, 64, 64) and a.train.images.dtype == torch.uint8
    full = a.train_class_counts + a.test_class_counts
    assert full[0] == 360 and full[2] == 220 and full[19] == 420  # SOURCE.md counts
    # 20 % per class to test, rounded
    assert torch.equal(a.test_class_counts, torch.round(full.double() * 0.2).long())
    # same seed -> identical split; another seed -> a different one
    b = load_dataset("aid", seed=0)
    assert torch.equal(a.test.images, b.test.images)
    c = load_dataset("aid", seed=1)
    assert not torch.equal(a.test.images, c.test.images)
    assert torch.equal(a.test_class_counts, c.test_class_counts)


@needs_real
def test_aid_long_tail_follows_profile_exactly(aid_lt):
    ds = aid_lt
    counts = ds.train_class_counts
    order = ds.info["class_order"]
    assert order == "seeded"
    # sorted counts equal the exponential profile with n_max = default_n_max(min natural train count, 50)
    n_max = default_n_max(176, 50)  # BaseballField: 220 images, 176 after the 80/20 split
    assert n_max == 150
    expected = long_tail_counts(n_max, 50, 30)
    assert sorted(counts.tolist(), reverse=True) == sorted(expected, reverse=True)
    assert int(counts.max()) / int(counts.min()) == pytest.approx(50.0)
    assert ds.imbalance_ratio == pytest.approx(50.0)
    assert len(ds.test) == 2000  # test untouched
    sizes = {g: len(v) for g, v in ds.class_groups.items()}
    assert sizes == {"many": 3, "medium": 12, "few": 15}
    assert sorted(sum(ds.class_groups.values(), [])) == list(range(30))
    assert "IR 50.0" in ds.describe()


@needs_real
def test_aid_long_tail_seed_changes_head_class(aid_lt):
    other = load_dataset("aid", imbalance_ratio=50, seed=3)
    assert not torch.equal(aid_lt.train_class_counts, other.train_class_counts)  # another class order
    assert sorted(aid_lt.train_class_counts.tolist()) == sorted(other.train_class_counts.tolist())


@needs_real
def test_mstar_official_split_and_lt():
    ds = load_dataset("mstar_soc")
    assert (len(ds.train), len(ds.test)) == (2747, 2425)
    assert ds.train.images.shape[1:] == (1, 64, 64)
    assert ds.train_class_counts.tolist() == [299, 233, 298, 256, 233, 299, 299, 232, 299, 299]
    assert ds.test_class_counts.tolist() == [274, 195, 274, 195, 196, 274, 273, 196, 274, 274]
    assert ds.class_groups == {"many": list(range(10)), "medium": [], "few": []}
    lt = load_dataset("mstar_soc", imbalance_ratio=100, seed=0)
    assert sorted(lt.train_class_counts.tolist(), reverse=True) == long_tail_counts(200, 100, 10)
    assert torch.equal(lt.test.images, ds.test.images)
    assert lt.train.files is not None and lt.train.files[0].startswith("train/")
    # every kept sample is a real training row (same pixels as in the natural training set)
    first = lt.train.images[0]
    assert any(torch.equal(first, im) for im in ds.train.images[ds.train.labels == lt.train.labels[0]])


@needs_real
def test_mstar_zero_sample_class_is_an_error():
    with pytest.raises(DataError, match="0 training samples"):
        load_dataset("mstar_soc", imbalance_ratio=1000, n_max=100)


@needs_real
def test_bundled_image_size_and_cap():
    ds = load_dataset("mstar_soc", image_size=32, max_per_class=20)
    assert ds.train.images.shape[1:] == (1, 32, 32)
    assert ds.train_class_counts.tolist() == [20] * 10
    assert math.isinf(ds.imbalance_ratio) is False
