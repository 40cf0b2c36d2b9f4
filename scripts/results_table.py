"""One mean ± std table over the finished cells of several sweep directories (docs/results.md tables).

    .venv/bin/python scripts/results_table.py runs/pilot_plain runs/baselines_plain ... \
        [--tag meta.hypergrad] [--tag peft.scale] [--where meta.val_mode=resample]

Every finished cell is labelled by its own ``config.yaml``: ``MetaPEFT-<method>`` when meta-learning
was on, else ``<method>``, plus the value of each ``--tag`` key. Rows with the same label are averaged
(mean ± sample std over seeds); ``--where key=value`` keeps only matching cells.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from metapeft.experiments.aggregate import fmt_pm, md_table, mean_std
from metapeft.peft import PeftConfig

METRICS = ("overall", "balanced", "many", "medium", "few")
NAMES = {"lora": "LoRA", "adapter": "Adapter", "adaptformer": "AdaptFormer", "vpt_deep": "VPT-deep",
         "vpt_shallow": "VPT-shallow", "bitfit": "BitFit", "linear_probe": "linear probe", "full": "full fine-tune",
         "ssf": "SSF", "ln_tune": "LN-tune"}


def lookup(cfg: dict, key: str):
    section, _, name = key.partition(".")
    if key == "peft.scale":  # derived: the module scale α the run applied (LoRA: alpha / rank)
        return PeftConfig.from_dict(cfg["peft"]).scale
    return cfg.get(section, {}).get(name)


def label(cfg: dict, tags: list[str]) -> str:
    name = NAMES.get(cfg["peft"]["method"], cfg["peft"]["method"])
    text = f"MetaPEFT-{name}" if cfg["meta"]["enabled"] else name
    tags = [t for t in tags if cfg["meta"]["enabled"] or not t.startswith("meta.")]  # meta keys: MetaPEFT only
    return text + "".join(f", {t.split('.')[-1]}={lookup(cfg, t)}" for t in tags)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sweeps", nargs="+", type=Path)
    ap.add_argument("--tag", action="append", default=[], help="config key whose value joins the label")
    ap.add_argument("--where", action="append", default=[], help="key=value filter on the cell config")
    ap.add_argument("--paired", metavar="LABEL", help="also print each label's per-seed difference to LABEL "
                                                      "(balanced / few, percentage points)")
    args = ap.parse_args()
    groups: dict[str, list[dict]] = {}
    for sweep in args.sweeps:
        for metrics_path in sorted(sweep.glob("cells/*/metrics.json")):
            cfg = yaml.safe_load((metrics_path.parent / "config.yaml").read_text())
            if any(str(lookup(cfg, k)) != v for k, v in (w.split("=", 1) for w in args.where)):
                continue
            m = json.loads(metrics_path.read_text())
            m["seed"] = cfg["train"]["seed"]
            groups.setdefault(label(cfg, args.tag), []).append(m)
    rows = []
    for name, runs in groups.items():
        trainable = runs[0]["run"]["trainable"]["trainable"]
        wall, _, _ = mean_std([r["run"]["wall_time_s"] for r in runs])
        rows.append([name, len(runs), *(fmt_pm([r[k] for r in runs]) for k in METRICS), f"{trainable:,}",
                     f"{wall:.0f}"])
    print(md_table(["method", "seeds", *(f"{k} %" for k in METRICS), "trainable params", "wall s"], rows))
    if args.paired:
        if args.paired not in groups:
            raise SystemExit(f"error: --paired {args.paired!r} is not one of the labels: {', '.join(groups)}")
        ref = {r["seed"]: r for r in groups[args.paired]}
        diff_rows = []
        for name, runs in groups.items():
            if name == args.paired:
                continue
            pairs = sorted((r["seed"], r) for r in runs if r["seed"] in ref)
            cells = [" / ".join(f"{100 * (r[k] - ref[s][k]):+.1f}" for s, r in pairs) for k in ("balanced", "few")]
            diff_rows.append([name, ", ".join(str(s) for s, _ in pairs), *cells])
        print()
        print(md_table([f"vs {args.paired} (paired seeds)", "seeds", "balanced Δ pt", "few Δ pt"], diff_rows))


if __name__ == "__main__":
    main()
