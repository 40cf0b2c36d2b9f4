"""`metapeft report`: a single run (γ map, γ trace, per-class bars, curves) from a real tiny run, and the
sweep analyses (Fig. 1d curves, rank × scale, baselines table) from hand-written results."""

from __future__ import annotations

import json
import math

import pytest

from metapeft.cli import main
from metapeft.config import RunConfig
from metapeft.experiments.manifest import write_manifest
from metapeft.experiments.report import write_report
from metapeft.experiments.results import write_results
from metapeft.train import Trainer


def _assert_pngs(report_dir, names):
    text = (report_dir / "report.md").read_text()
    for name in names:
        png = report_dir / name
        assert png.is_file() and png.stat().st_size > 1000, name
        assert f"]({name})" in text, f"report.md does not embed {name}"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return text


@pytest.mark.slow
def test_run_report(tmp_path, tiny_cell):
    meta = ["meta.enabled=true", "meta.interval=2", "meta.hypergrad=first_order"]
    cfg = RunConfig.load(None, tiny_cell + ["train.epochs=2", "train.eval_every=1", *meta])
    run = Trainer(cfg, tmp_path / "run", quiet=True).run().out_dir
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    text = _assert_pngs(tmp_path / "rep", ["gamma_map.png", "gamma_trace.png", "per_class.png", "history.png",
                                           "class_separation.png", "embedding_pca.png"])
    assert "## γ (learned)" in text and "| block | q | k | v | out | mlp1 | mlp2 |" in text
    assert "vit_tiny_patch16_224" in text, "report.md must state the config used"
    per_class_md = text.split("## Per-class accuracy")[1].split("\n## ")[0]
    counts = [line.split("|")[3].strip() for line in per_class_md.splitlines() if line.startswith("| ") and "| few |" in line]
    assert [int(c) for c in counts] == sorted((int(c) for c in counts), reverse=True), "classes sorted by train count"

    # feature geometry: 'before' is the frozen starting backbone, 'after' the trained model
    geo = json.loads((tmp_path / "rep" / "features.json").read_text())
    assert "## Feature geometry: head vs tail (Fig. 1b)" in text and "| few |" in text
    few = geo["groups"]["after"]["few"]
    assert 0 < few["nearest"] <= few["mean"] <= 2
    per_class = list(geo["per_class"].values())
    assert [c["train_images"] for c in per_class] == sorted((c["train_images"] for c in per_class), reverse=True)
    assert any(c["nearest_before"] != c["nearest_after"] for c in per_class), "training must move the features"

    # --no-features: the same report without rebuilding the model
    assert main(["report", str(run), "--out", str(tmp_path / "rep2"), "--no-features"]) == 0
    assert "Feature geometry" not in (tmp_path / "rep2" / "report.md").read_text()


def _synthetic_sweep(out, grid, metric_of, seeds=(0, 1)):
    """sweep.yaml + results.json for a grid, with accuracies from ``metric_of(cell)`` (no training)."""
    import itertools

    keys = list(grid)
    grid = {**grid, "train.seed": [str(s) for s in seeds]}
    rows = []
    for combo in itertools.product(*grid.values()):
        cell = dict(zip(grid, combo))
        acc = metric_of(cell) + 0.01 * int(cell["train.seed"])
        rank = float(cell.get("peft.rank", 4))
        rows.append({"cell": "__".join(f"{k}={v}" for k, v in cell.items()), **cell, "status": "done",
                     **{m: acc for m in ("overall", "balanced", "few", "macro_f1")}, "many": None, "medium": acc,
                     "scale": float(cell.get("peft.scale", 1.0)), "alpha": rank * float(cell.get("peft.scale", 1.0)),
                     "wall_time_s": 1.5, "trainable": 1000, "gamma_mean": 1.0})
    rows.append({"cell": "broken", **{k: grid[k][0] for k in keys}, "train.seed": "9", "status": "failed"})
    write_manifest(out, {"kind": "grid", "preset": None, "config_file": None, "overrides": [],
                         "grid": grid, "base": {"peft": {"method": "lora"}}})
    write_results(out, rows)
    return keys


def test_fig1d_report(tmp_path):
    scales = [f"{2.0 ** k:g}" for k in range(-4, 8)]
    bump = {"q": 0.0, "v": -0.3}

    def accuracy(c):  # peaks at scale 1; v lower and floored, like Fig. 1(d)'s collapse
        return max(0.05, 0.9 - 0.1 * abs(math.log2(float(c["peft.scale"]))) + bump[c["peft.positions"]])

    _synthetic_sweep(tmp_path, {"peft.positions": ["q", "v"], "peft.scale": scales}, accuracy)
    write_report(tmp_path)
    text = _assert_pngs(tmp_path / "report", ["fig1d.png"])
    assert "| position | 2^-4 |" in text and "| q | 50.5 |" in text   # mean over seeds 0.9-0.4 (+0.005)
    assert "90.5 ± 0.7" in text and "`broken` (failed)" in text


def test_rank_scale_report(tmp_path):
    scales = ["0.25", "1", "4"]
    _synthetic_sweep(tmp_path, {"peft.rank": ["1", "4"], "peft.scale": scales},
                     lambda c: 0.8 - abs(math.log2(float(c["peft.scale"])) - (0 if c["peft.rank"] == "1" else 2)) / 10)
    write_report(tmp_path)
    text = _assert_pngs(tmp_path / "report", ["rank_scale_overall.png", "rank_scale_balanced.png",
                                              "rank_best_scale.png"])
    assert "| 1 | 2^0 | 80.5 |" in text and "| 4 | 2^2 | 80.5 |" in text


def test_baselines_grid_gets_a_table(tmp_path):
    keys = _synthetic_sweep(tmp_path, {"peft.method": ["lora", "bitfit"]},
                            lambda c: 0.7 if c["peft.method"] == "lora" else 0.6, seeds=(0, 1, 2))
    text = write_report(tmp_path).read_text()
    assert keys == ["peft.method"] and "| lora | 3 | 71.0 ± 1.0 |" in text
    assert not list((tmp_path / "report").glob("*.png"))


def test_report_of_unknown_dir(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "neither a finished run" in capsys.readouterr().err
    (tmp_path / "sweep.yaml").write_text(json.dumps({"kind": "grid", "grid": {}}))
    with pytest.raises(FileNotFoundError, match="results.json"):
        write_report(tmp_path)
