"""`metapeft` command line: train | eval | info.

    metapeft train --config configs/aid_lt_lora_meta.yaml --set train.epochs=3 meta.lr=0.05 --out runs/x
    metapeft eval --checkpoint runs/x
    metapeft info

Bad input (missing file, unknown key, bad value, corrupt data) prints one ``error:`` line and
exits with code 2; nothing already written in a run directory is lost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a PEFT / MetaPEFT model", description="Train; writes RUN/metrics.json, "
                       "RUN/gamma.json, checkpoints and exports into --out.")
    p.add_argument("-c", "--config", type=Path, help="YAML config (sections data, model, peft, meta, train)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="overrides such as train.epochs=3 peft.positions=q,v meta.enabled=true")
    p.add_argument("-o", "--out", type=Path, required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a finished run on its test set")
    p.add_argument("--checkpoint", type=Path, required=True, help="run directory (or its checkpoints/epoch_N)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metapeft", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_eval(sub)
    sub.add_parser("info", help="versions, data root, bundled weights cache")
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from .config import RunConfig
    from .meta import gamma_report  # noqa: F401  (import cost paid before the run starts)
    from .train import Trainer

    cfg = RunConfig.load(args.config, args.overrides)
    result = Trainer(cfg, args.out, resume=args.resume, quiet=args.quiet).run()
    print(result.metrics)
    gamma_path = result.out_dir / "gamma.json"
    if gamma_path.exists():
        from .meta.report import GammaReport

        data = json.loads(gamma_path.read_text())
        data.pop("trace", None)
        report = GammaReport(**data)
        print("\nlearned γ (block × position):")
        print(report.table("gamma"))
        if report.below_threshold:
            print(f"sites with |γ| < {report.threshold} (not inserted): {', '.join(report.below_threshold)}")
    print(f"\nrun directory: {result.out_dir}  ({result.wall_time_s:.0f} s)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .train.reload import evaluate_run

    metrics = evaluate_run(args.checkpoint)
    print(json.dumps(metrics.to_dict(), indent=1) if args.json else metrics)
    return 0


def cmd_info(_: argparse.Namespace) -> int:
    import timm
    import torch

    from . import __version__
    from .backbones import default_cache_dir
    from .data import resolve_data_root

    print(f"metapeft {__version__}  torch {torch.__version__}  timm {timm.__version__}")
    print(f"cuda available: {torch.cuda.is_available()}  threads: {torch.get_num_threads()}")
    try:
        root = resolve_data_root()
        names = sorted(p.name for p in root.iterdir() if p.is_dir())
        print(f"data root: {root}  ({', '.join(names)})")
    except Exception as e:  # informational only
        print(f"data root: not found ({e})")
    print(f"weights cache: {default_cache_dir()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    handlers = {"train": cmd_train, "eval": cmd_eval, "info": cmd_info}
    from .backbones import BackboneWeightsError, BundledWeightsError
    from .config import ConfigError
    from .data import DataError
    from .train import RunDirError

    try:
        return handlers[args.command](args)
    except (ConfigError, DataError, RunDirError, BackboneWeightsError, BundledWeightsError,
            FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: the last complete checkpoint is kept (use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
