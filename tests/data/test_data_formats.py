"""On-disk formats on fixtures written here: CIFAR pickle, ImageFolder, list files, DOTA, FUSRS; bad input."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metapeft.data import DataError, load_dataset
from metapeft.data.longtail import long_tail_counts


def _img(path: Path, size=(12, 10), color=(200, 30, 60), mode="RGB", fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[...] = color
    arr[0, 0] = (255 - color[0], 0, 0)  # a marker pixel so flips/crops are visible
    im = Image.fromarray(arr)
    if mode == "L":
        im = im.convert("L")
    im.save(path, format=fmt)
    return path


def _tree(root: Path, split: str, spec: dict, size=(12, 10), ext=".png"):
    for ci, (cls, n) in enumerate(spec.items()):
        for i in range(n):
            _img(root / split / cls / f"{i:03d}{ext}", size, color=(10 * ci, 5 * i % 256, 100))


# ---------------------------------------------------------------- CIFAR-100 pickle

def _cifar(root: Path, n_classes=4, per_class=(30, 5)):
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class[0]), ("test", per_class[1])):
        labels = [c for c in range(n_classes) for _ in range(n)]
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        data[:, 0] = np.array(labels, np.uint8)  # red channel, pixel (0,0) = label
        with open(d / split, "wb") as f:
            pickle.dump({"data": data, "fine_labels": labels, "coarse_labels": labels,
                         "filenames": [f"{i}.png" for i in range(len(labels))]}, f, protocol=2)
    with open(d / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(n_classes)], "coarse_label_names": ["x"]}, f)
    return root


def test_cifar_pickle_and_lift_long_tail(tmp_path):
    root = _cifar(tmp_path)
    ds = load_dataset("cifar100", root=root)
    assert ds.classes == ["c0", "c1", "c2", "c3"] and (len(ds.train), len(ds.test)) == (120, 20)
    assert ds.train.images.shape[1:] == (3, 32, 32)
    assert torch.equal(ds.train.images[:, 0, 0, 0].long(), ds.train.labels)  # CHW decoding is right
    lt = load_dataset("cifar100", root=root, imbalance_ratio=10, seed=0)
    # LIFT convention: class index = profile rank (class 0 is the head)
    assert lt.train_class_counts.tolist() == long_tail_counts(30, 10, 4) == [30, 13, 6, 3]
    assert lt.info["class_order"] == "index"
    assert len(lt.test) == 20
    seeded = load_dataset("cifar100", root=root, imbalance_ratio=10, seed=0, class_order="seeded")
    assert sorted(seeded.train_class_counts.tolist()) == [3, 6, 13, 30]


def test_cifar_missing_and_corrupt(tmp_path):
    with pytest.raises(DataError, match="cifar-100-python"):
        load_dataset("cifar100", root=tmp_path)
    root = _cifar(tmp_path)
    (root / "cifar-100-python" / "train").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cifar-100-python/train"):
        load_dataset("cifar100", root=root)


# ---------------------------------------------------------------- ImageFolder

def test_imagefolder_split_layout(tmp_path):
    _tree(tmp_path, "train", {"b_cls": 6, "a_cls": 3}, ext=".png")
    _tree(tmp_path, "test", {"a_cls": 2, "b_cls": 2}, ext=".jpg")
    ds = load_dataset("imagefolder", root=tmp_path)
    assert ds.classes == ["a_cls", "b_cls"]
    assert ds.train_class_counts.tolist() == [3, 6] and ds.test_class_counts.tolist() == [2, 2]
    assert ds.train.images.shape == (9, 3, 10, 12)
    assert ds.class_groups == {"many": [], "medium": [], "few": [0, 1]}
    assert ds.info["split"].startswith("official")
    # "a_cls" was written second (colour index 1): exact PNG pixels, RGB order
    assert ds.train.images[ds.train.labels == 0][0, :, 5, 5].tolist() == [10, 0, 100]
    assert ds.train.images[ds.train.labels == 1][0, :, 5, 5].tolist() == [0, 0, 100]
    ds = load_dataset("imagefolder", root=tmp_path, image_size=8, group_thresholds=(5, 2))
    assert ds.train.images.shape[2:] == (8, 8) and ds.class_groups == {"many": [1], "medium": [0], "few": []}


def test_imagefolder_single_tree_is_split_by_seed(tmp_path):
    _tree(tmp_path, "", {"x": 10, "y": 5})
    a = load_dataset("imagefolder", root=tmp_path, seed=0)
    assert (len(a.train), len(a.test)) == (12, 3) and a.test_class_counts.tolist() == [2, 1]
    b = load_dataset("imagefolder", root=tmp_path, seed=5)
    assert a.test.files != b.test.files or a.train.files != b.train.files
    assert a.test.files == load_dataset("imagefolder", root=tmp_path, seed=0).test.files


def test_imagefolder_gray_and_rgb_mix_to_rgb(tmp_path):
    _tree(tmp_path, "train", {"a": 2, "b": 2})
    _img(tmp_path / "train" / "a" / "gray.png", mode="L")
    _tree(tmp_path, "test", {"a": 1})
    ds = load_dataset("imagefolder", root=tmp_path)
    assert ds.train.channels == 3
    all_gray = tmp_path / "g"
    for s in ("train", "test"):
        _img(all_gray / s / "k" / "1.png", mode="L")
    _img(all_gray / "train" / "j" / "1.png", mode="L")
    assert load_dataset("imagefolder", root=all_gray).train.channels == 1


def test_imagefolder_mismatched_sizes_names_both_files(tmp_path):
    _tree(tmp_path, "train", {"a": 2, "b": 1})
    _img(tmp_path / "train" / "a" / "zz_big.png", size=(20, 20))
    _tree(tmp_path, "test", {"a": 1})
    with pytest.raises(DataError, match=r"000\.png.*zz_big\.png.*image_size"):
        load_dataset("imagefolder", root=tmp_path)
    assert load_dataset("imagefolder", root=tmp_path, image_size=16).train.images.shape[1:] == (3, 16, 16)


def test_imagefolder_corrupt_image_is_named(tmp_path):
    _tree(tmp_path, "train", {"a": 2, "b": 2})
    _tree(tmp_path, "test", {"a": 1})
    good = (tmp_path / "train" / "a" / "000.png")
    bad = tmp_path / "train" / "b" / "broken.jpg"
    Image.open(good).save(bad, format="JPEG")
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    with pytest.raises(DataError, match=r"broken\.jpg"):
        load_dataset("imagefolder", root=tmp_path)


def test_imagefolder_bad_layouts(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset("imagefolder", root=tmp_path / "nope")
    with pytest.raises(DataError, match="needs root"):
        load_dataset("imagefolder")
    _tree(tmp_path, "train", {"a": 2})
    (tmp_path / "train" / "empty").mkdir()
    _tree(tmp_path, "test", {"a": 1})
    with pytest.raises(DataError, match="no images"):
        load_dataset("imagefolder", root=tmp_path)
    (tmp_path / "train" / "empty").rmdir()
    _tree(tmp_path, "test", {"zebra": 1})
    with pytest.raises(DataError, match="outside the class list"):
        load_dataset("imagefolder", root=tmp_path)


def test_imagefolder_zero_class_after_long_tail(tmp_path):
    _tree(tmp_path, "train", {"a": 6, "b": 6, "c": 6})
    _tree(tmp_path, "test", {"a": 1})
    with pytest.raises(DataError, match="0 training samples"):
        load_dataset("imagefolder", root=tmp_path, imbalance_ratio=10)
    ok = load_dataset("imagefolder", root=tmp_path, imbalance_ratio=6, seed=0)
    assert sorted(ok.train_class_counts.tolist()) == [1, 2, 6]


def test_decode_cache_is_reused(tmp_path):
    _tree(tmp_path, "train", {"a": 3, "b": 2})
    _tree(tmp_path, "test", {"a": 1, "b": 1})
    cache = tmp_path / "cache"
    a = load_dataset("imagefolder", root=tmp_path, cache_dir=cache)
    files = sorted(cache.glob("metapeft-*.npy"))
    assert len(files) == 2
    b = load_dataset("imagefolder", root=tmp_path, cache_dir=cache)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.images, b.test.images)
    load_dataset("imagefolder", root=tmp_path, cache_dir=cache, image_size=6)  # other size: new entries
    assert len(list(cache.glob("metapeft-*.npy"))) == 4


# ---------------------------------------------------------------- list files (Places-LT / ImageNet-LT / FUSRS)

def _listset(root: Path, n_train=(5, 3, 1), n_test=(2, 2, 2), classes_file=True):
    lines = {"train": [], "test": []}
    for split, ns in (("train", n_train), ("test", n_test)):
        for c, n in enumerate(ns):
            for i in range(n):
                rel = f"{split}/k{c}/img {i}.png"  # a space in the name
                _img(root / rel, size=(8, 8), color=(c * 50, i * 10, 0))
                lines[split].append(f"{rel} {c}")
    (root / "train.txt").write_text("\n".join(lines["train"]) + "\n")
    (root / "test.txt").write_text("# comment\n" + "\n".join(lines["test"]) + "\n\n")
    if classes_file:
        (root / "classnames.txt").write_text("k0 zero\nk1 one\nk2 two\n")
    return root


def test_listfile_loads_with_id_name_classes(tmp_path):
    ds = load_dataset("listfile", root=_listset(tmp_path))
    assert ds.classes == ["zero", "one", "two"]
    assert ds.train_class_counts.tolist() == [5, 3, 1] and len(ds.test) == 6
    assert ds.train.images[ds.train.labels == 1][0, 0, 4, 4] == 50
    places = load_dataset("places_lt", root=tmp_path, train_list="train.txt", test_list="test.txt")
    assert places.classes == ["zero", "one", "two"]


def test_listfile_errors(tmp_path):
    root = _listset(tmp_path)
    with pytest.raises(DataError, match="list file not found"):
        load_dataset("listfile", root=root, train_list="missing.txt")
    (root / "bad.txt").write_text("train/k0/img 0.png 7\n")
    with pytest.raises(DataError, match=r"bad\.txt:1: label 7 is outside the class list"):
        load_dataset("listfile", root=root, train_list="bad.txt")
    (root / "bad2.txt").write_text("train/k0/nothere.png 0\n")
    with pytest.raises(DataError, match=r"nothere\.png"):
        load_dataset("listfile", root=root, train_list="bad2.txt")
    (root / "bad3.txt").write_text("train/k0/img 0.png zero\n")
    with pytest.raises(DataError, match="not an integer"):
        load_dataset("listfile", root=root, train_list="bad3.txt")
    with pytest.raises(DataError, match="classes file not found"):
        load_dataset("listfile", root=root, classes_file="nope.txt")


def test_fusrs_v17_groups_and_labels(tmp_path):
    lines = {"train": [], "test": []}
    for split, n in (("train", (6, 4, 3, 2, 1)), ("test", (2, 2, 2, 1, 1))):
        for c, k in enumerate(n):
            for i in range(k):
                name = f"L{split}{c}_{i}.png"
                _img(tmp_path / name, size=(8, 8), mode="L", color=(c * 40, 0, 0))
                lines[split].append(f"{name} {c}")
    for split in lines:
        (tmp_path / f"{split}.txt").write_text("\n".join(lines[split]))
    ds = load_dataset("fusrs", root=tmp_path, version="v17")
    assert ds.classes == ["cargo", "other", "fishing", "tanker", "dredger"]
    assert ds.class_groups == {"many": [0, 1, 2], "medium": [], "few": [3, 4]}
    assert ds.train.channels == 1
    with pytest.raises(DataError, match="outside the class list"):
        load_dataset("fusrs_v25", root=tmp_path)  # label 4 does not exist in v2.5


# ---------------------------------------------------------------- DOTA

def _dota(root: Path):
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        Image.fromarray(big).save(root / split / "images" / "P0001.png")
    return big


def test_dota_crops_from_full_images_and_crop_files(tmp_path):
    big = _dota(tmp_path)
    (tmp_path / "dota_train_idx.txt").write_text(
        "train/ship/P0001_10_20_50_40.png 9\n"
        "P0001 0_0_16_16 10\n"
        "train/plane/P0001_100_60_164_130.png 7\n"  # box runs past the border: clipped
        + "".join(f"P0001 {k}_{k}_{k + 8}_{k + 9} {k}\n" for k in range(15)))  # every class needs training data
    ready = tmp_path / "val" / "helicopter" / "P0001_1_1_9_9.png"
    ready.parent.mkdir(parents=True)
    Image.fromarray(big[30:46, 30:46]).save(ready)  # an existing crop file wins over the box
    (tmp_path / "dota_val_idx.txt").write_text(
        "val/helicopter/P0001_1_1_9_9.png 5\nval/ship/P0001_0_0_16_16.png 9\n")
    ds = load_dataset("dota", root=tmp_path, image_size=16)
    assert ds.classes[9] == "ship" and ds.num_classes == 15
    assert ds.train.images.shape == (18, 3, 16, 16)
    # an unresized 16x16 crop is exact
    assert torch.equal(ds.train.images[1], torch.from_numpy(big[0:16, 0:16]).permute(2, 0, 1))
    assert torch.equal(ds.test.images[0], torch.from_numpy(big[30:46, 30:46]).permute(2, 0, 1))
    assert torch.equal(ds.test.images[1], ds.train.images[1])
    assert [len(ds.class_groups[g]) for g in ("many", "medium", "few")] == [3, 6, 6]
    assert ds.train.labels.tolist()[:4] == [9, 10, 7, 0]
    assert ds.train_class_counts.tolist() == [1] * 7 + [2, 1, 2, 2] + [1] * 4


@pytest.mark.parametrize("train_line,needle", [
    (None, "dota_train_idx.txt"),                                   # missing list file
    ("train/ship/P0001_30_30_20_40.png 9", "empty box"),
    ("train/ship/P0404_0_0_10_10.png 9", "P0404"),                  # image not found
    ("train/ship/P0001_0_0_10_10.png 15", "outside the class list"),
    ("train/ship/P0001_500_500_510_510.png 9", "outside the 160x120 image"),
])
def test_dota_errors(tmp_path, train_line, needle):
    _dota(tmp_path)
    (tmp_path / "dota_val_idx.txt").write_text("val/ship/P0001_0_0_16_16.png 9\n")
    if train_line is None:
        (tmp_path / "dota_train_idx.txt").unlink(missing_ok=True)
    else:
        (tmp_path / "dota_train_idx.txt").write_text(train_line + "\n")
    with pytest.raises(DataError, match=needle):
        load_dataset("dota", root=tmp_path)


def test_eurosat_tree_and_missing_message(tmp_path):
    with pytest.raises(DataError, match="Helber"):
        load_dataset("eurosat", root=tmp_path)
    _tree(tmp_path / "eurosat" / "2750", "", {"Forest": 5, "River": 4}, size=(8, 8), ext=".jpg")
    ds = load_dataset("eurosat", root=tmp_path, seed=0)
    assert ds.classes == ["Forest", "River"] and (len(ds.train), len(ds.test)) == (7, 2)


def test_listfile_train_test_size_mismatch(tmp_path):
    root = _listset(tmp_path)
    _img(tmp_path / "big.png", size=(9, 9))
    (root / "test2.txt").write_text("big.png 0\n")
    with pytest.raises(DataError, match=r"img 0\.png.*big\.png"):
        load_dataset("listfile", root=root, test_list="test2.txt")
