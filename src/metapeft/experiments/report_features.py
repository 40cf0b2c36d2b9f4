"""Feature-geometry report section for one run: head vs tail class separation (Fig. 1b) and a 2-D PCA
of the test features (Fig. S3), each before (the run's frozen starting backbone) and after fine-tuning.

"Before" is the same model freshly built from the run's config: a fresh PEFT wrap is an exact no-op,
so its features are those of the backbone the run started from (``model.init_from`` included).
The numbers are also written to ``features.json`` next to the figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


from ..eval.feature_geometry import class_separation, pca_2d
from ..atomic import atomic_write_text
from ..train.model import build_model, extract_features
from ..train.pipeline import eval_loader
from ..train.reload import load_run
from .aggregate import md_table
from .plots import embedding_panels, paired_bars

GROUPS = ("many", "medium", "few")


def features_before_after(run_dir: Path) -> dict[str, Any]:
    """Pre-logit test-set features of the run's model (``after``) and of its starting backbone (``before``)."""
    run = load_run(run_dir)
    cfg, ds = run.cfg, run.ds
    frozen = build_model(cfg, ds.num_classes)  # seeds itself: the run's exact starting weights
    feats = {}
    for name, model in (("before", frozen), ("after", run.model)):
        model.to(run.device).eval()
        feats[name], labels = extract_features(model, eval_loader(ds.test, run.data, cfg, run.device))
    return {"features": feats, "labels": labels, "ds": ds}


def feature_sections(run_dir: Path, fig_dir: Path) -> list[str]:
    got = features_before_after(run_dir)
    ds, labels, feats = got["ds"], got["labels"], got["features"]
    groups = {g: list(ds.class_groups.get(g, [])) for g in GROUPS}
    group_of = {c: g for g, cs in groups.items() for c in cs}
    counts = [int(c) for c in ds.train_class_counts.tolist()]
    order = sorted(range(ds.num_classes), key=lambda c: (-counts[c], c))
    sep = {name: class_separation(f, labels, ds.num_classes) for name, f in feats.items()}
    summary = {name: s.group_means(groups) for name, s in sep.items()}

    paired_bars([ds.classes[c] for c in order], {f"{k} fine-tuning": [float(s.nearest[c]) for c in order]
                                                 for k, s in sep.items()},
                [group_of.get(c, "") for c in order], fig_dir / "class_separation.png",
                title="distance to the nearest other class mean, classes by training images (head → tail)",
                ylabel="1 − cosine")
    proj = {name: pca_2d(f) for name, f in feats.items()}
    embedding_panels({f"{k} fine-tuning (PCA, {100 * float(share.sum()):.0f} % var.)": xy.numpy()
                      for k, (xy, share) in proj.items()}, labels.numpy(),
                     [group_of.get(c, "") for c in range(ds.num_classes)], fig_dir / "embedding_pca.png",
                     title="test features, first two principal axes")

    def fmt(v: float | None) -> str:
        return "–" if v is None else f"{v:.3f}"

    rows = [[g, len(groups[g]), fmt(summary["before"][g]["nearest"]), fmt(summary["after"][g]["nearest"]),
             fmt(summary["before"][g]["mean"]), fmt(summary["after"][g]["mean"])] for g in GROUPS]
    per_class = {ds.classes[c]: {"group": group_of.get(c, ""), "train_images": counts[c],
                                 **{f"nearest_{k}": float(s.nearest[c]) for k, s in sep.items()},
                                 **{f"neighbour_{k}": ds.classes[int(s.neighbour[c])] if int(s.neighbour[c]) >= 0
                                    else None for k, s in sep.items()}} for c in order}
    atomic_write_text(fig_dir / "features.json", json.dumps({"groups": summary, "per_class": per_class}, indent=1))
    return ["\n".join([
        "## Feature geometry: head vs tail (Fig. 1b)", "",
        "Cosine distance (1 − cos) between unit-norm class means of the test features: to the nearest other "
        "class, and to all others on average. Small = the class overlaps its neighbours. Before = the frozen "
        "backbone the run started from, after = the fine-tuned model.", "",
        md_table(["group", "classes", "nearest, before", "nearest, after", "mean, before", "mean, after"], rows), "",
        "![class separation](class_separation.png)"]),
        "\n".join(["## Test features in 2-D (Fig. S3)", "", "![PCA of test features](embedding_pca.png)"])]
