"""predict / eval --checkpoint need only the run directory (issue 13, items 2 and 3)."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from metapeft.cli import main
from metapeft.config import RunConfig
from metapeft.train import Trainer


@pytest.fixture
def trained(tmp_path, own_folder, tiny_model):
    cfg = RunConfig.load(None, tiny_model + ["data.name=imagefolder", f"data.root={own_folder}", "train.epochs=1",
                                             "train.batch_size=8", "train.threads=1"])
    res = Trainer(cfg, tmp_path / "run", quiet=True).run()
    moved = tmp_path / "moved"
    shutil.move(str(own_folder), moved)   # the training data is gone
    return res.out_dir, moved, json.loads((res.out_dir / "metrics.json").read_text())


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_without_training_data_matches_test_accuracy(trained, tmp_path):
    run, moved, metrics = trained
    out = tmp_path / "preds.csv"
    assert main(["predict", "--checkpoint", str(run), str(moved / "test"), "--out", str(out), "-k", "2"]) == 0
    rows = _rows(out)
    assert len(rows) == 16 and set(rows[0]) == {"path", "pred", "prob", "top1", "top1_prob", "top2", "top2_prob",
                                                "error"}
    acc = sum(r["pred"] == r["path"].split("/")[-2] for r in rows) / len(rows)
    assert acc == pytest.approx(metrics["overall"])
    assert all(float(r["top1_prob"]) >= float(r["top2_prob"]) for r in rows)


def test_corrupt_image_is_an_error_row_and_exit_code_1(trained, tmp_path, capsys):
    run, moved, _ = trained
    bad = moved / "test" / "class_0" / "broken.png"
    bad.write_bytes(b"not an image")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{bad}\n# a comment\n{next((moved / 'test' / 'class_1').iterdir())}\n")
    code = main(["predict", "--checkpoint", str(run), str(listing), "--json", "-q"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 1 and len(rows) == 2
    assert "broken.png" in rows[0]["error"] and rows[0]["pred"] == "" and rows[1]["error"] == ""


@pytest.mark.parametrize("args,needle", [
    (["--checkpoint", "{tmp}/nope", "x.png"], "no run found"),
    (["--checkpoint", "{run}", "{tmp}/missing_dir"], "no such file or folder"),
    (["--checkpoint", "{run}", "{moved}", "--top-k", "0"], "--top-k"),
])
def test_bad_predict_input_is_one_error_line(trained, tmp_path, capsys, args, needle):
    run, moved, _ = trained
    argv = [a.format(tmp=tmp_path, run=run, moved=moved) for a in args]
    assert main(["predict", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and needle in err and "Traceback" not in err


def test_eval_checkpoint_on_another_folder_by_class_name(trained, tmp_path, capsys):
    run, moved, metrics = trained
    assert main(["eval", "--checkpoint", str(run), "--set", f"data.root={moved}", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["overall"] == pytest.approx(metrics["overall"]) and again["confusion"] == metrics["confusion"]
    # a folder with only two of the classes, no train/ or test/ split: classes matched by name
    other = tmp_path / "other"
    for c in ("class_1", "class_3"):
        shutil.copytree(moved / "test" / c, other / c)
    assert main(["eval", "--checkpoint", str(run), "--set", f"data.root={other}", "--json"]) == 0
    sub = json.loads(capsys.readouterr().out)
    assert sum(sub["counts"]) == 8 and sub["counts"][0] == 0 and sub["counts"][1] == 4
    (other / "class_9").mkdir()
    shutil.copy(next((other / "class_1").iterdir()), other / "class_9" / "x.png")
    assert main(["eval", "--checkpoint", str(run), "--set", f"data.root={other}"]) == 2
    assert "class_9" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(run), "--set", "train.epochs=3"]) == 2
    assert "data.* keys only" in capsys.readouterr().err
