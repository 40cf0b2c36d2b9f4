"""`metapeft` command line: train | eval | predict | config | sweep | report | info.

    metapeft train --config configs/aid_lt_metapeft_lora.yaml --set train.epochs=3 meta.lr=0.05 --out runs/x
    metapeft eval --checkpoint runs/x [--set data.root=OTHER_FOLDER]
    metapeft predict --checkpoint runs/x new_images/ --out preds.csv
    metapeft config train
    metapeft sweep --preset fig1c --seeds 0,1 --out runs/fig1c
    metapeft report runs/x
    metapeft info

Only argparse is imported at module level: ``metapeft --help`` loads no torch (each command imports
what it needs).

Bad input (missing file, unknown key, bad value, corrupt data or checkpoint, a run directory in use)
prints one ``error:`` line and exits with code 2 before anything in the run directory is changed;
any other exception is a bug and prints its traceback.
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
                       "RUN/gamma.json, checkpoints and exports into --out.",
                       epilog="every --set key, its type, default and allowed values: metapeft config [SECTION]")
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
    p.add_argument("--set", nargs="+", default=[], metavar="data.KEY=VALUE", dest="overrides",
                   help="evaluate on another labelled set with the run's classes (matched by name), "
                        "e.g. data.root=DIR; only the run directory is read for the model")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="label new images with a trained run",
                       description="Predict classes of image files, folders (recursive) or list files "
                                   "(one path per line). Needs only the run directory. Exit code 1 if any "
                                   "image could not be read (its row holds the error).")
    p.add_argument("--checkpoint", type=Path, required=True, help="run directory")
    p.add_argument("paths", nargs="+", help="image files, folders and list files (.txt/.csv)")
    p.add_argument("-k", "--top-k", type=int, default=5, help="class names and probabilities per image (5)")
    p.add_argument("-o", "--out", type=Path, help="write the CSV (or .json) here; default: stdout")
    p.add_argument("--json", action="store_true", help="JSON rows instead of CSV")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (64)")
    p.add_argument("--device", help="cpu | cuda (default: the run's train.device)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")


SWEEP_EPILOG = """grid syntax (values parsed as YAML, like --set):
  --grid peft.rank=1,2,4             commas separate values
  --grid peft.blocks=[0],[1],[2,3]   commas inside [...] / {...} do not split
  --grid "peft.positions=q,v;k;mlp1" with ';' only ';' splits (values q,v | k | mlp1);
                                     a trailing ';' makes one list value: "peft.positions=q,v;"
  --grid peft.scale=0.5,1,2          derived key: module scale alpha/r, written as peft.alpha
  --set peft.scale=4                 the same as a fixed value: alpha follows each cell's rank
presets: fig1c (position x block, --depth L), fig1d (position x scale 2^-4..2^7), rank_scale
  (rank 1..16 x scale 2^-4..2^7); --grid on the same key replaces the preset's axis.
each cell is a run directory DIR/cells/<slug>; results in DIR/results.csv and DIR/results.json.
re-running the same command (or just `metapeft sweep --out DIR`) skips finished cells and resumes
a half-finished one. --optuna N: TPE over positions x last:k blocks x scale, objective = balanced
accuracy on a training-set hold-out (train.val_holdout), study in DIR/optuna.db, trials in
DIR/optuna_trials.csv."""


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="grid sweep or Optuna search over run configs (resumable)",
                       description="Run one training per grid cell (or Optuna trial) into --out.",
                       epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", type=Path, help="base YAML config")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="fixed overrides for every cell")
    p.add_argument("--grid", nargs="+", action="extend", default=[], metavar="KEY=V1,V2",
                   help="one grid axis per argument; the cells are their cartesian product")
    p.add_argument("--preset", help="fig1c | fig1d | rank_scale (the paper's Fig. 1 grids)")
    p.add_argument("--depth", type=int, default=12, help="backbone blocks for fig1c / --optuna (default 12)")
    p.add_argument("--seeds", help="comma-separated train.seed values, e.g. 0,1,2 (the last grid axis)")
    p.add_argument("--optuna", type=int, metavar="N_TRIALS", help="Optuna TPE search instead of a grid")
    p.add_argument("--sampler-seed", type=int, default=0, help="seed of the TPE sampler (--optuna)")
    p.add_argument("--startup-trials", type=int, help="random trials before TPE models the results "
                                                      "(--optuna; default Optuna's 10)")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="where cells run: local (one after another, in-process) or ray (Ray Tune trials; "
                        "needs metapeft[ray])")
    p.add_argument("--ray-address", help="existing Ray cluster (auto | HOST:PORT); default: a private "
                                          "instance on 127.0.0.1")
    p.add_argument("--ray-cpus-per-trial", type=int, default=1, help="CPUs (= torch threads) per trial")
    p.add_argument("--ray-max-concurrent", type=int, help="at most this many trials at once")
    p.add_argument("-o", "--out", type=Path, required=True, help="sweep directory")
    p.add_argument("-v", "--verbose", action="store_true", help="show each run's log lines")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-cell progress lines")


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="figures + report.md for a run or a sweep directory")
    p.add_argument("path", type=Path, help="run directory, sweep directory or Optuna study directory")
    p.add_argument("-o", "--out", type=Path, help="where report.md and the PNGs go (default PATH/report)")
    p.add_argument("--no-features", action="store_true",
                   help="runs: skip the feature-geometry sections (head vs tail separation, PCA), which "
                        "run the model over the test set")


def _add_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="list every config key: type, default, allowed values, help")
    p.add_argument("section", nargs="?", help="data | model | peft | meta | train (default: all)")
    p.add_argument("--json", action="store_true", help="as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metapeft", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_eval(sub)
    _add_predict(sub)
    _add_config(sub)
    sub.add_parser("info", help="versions, data root, bundled weights cache")
    _add_sweep(sub)
    _add_report(sub)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from .config import RunConfig
    from .meta import gamma_report  # noqa: F401  (import cost paid before the run starts)
    from .train import Trainer

    from .progress import set_enabled

    previous = set_enabled(not args.quiet)
    try:  # restored afterwards: in-process callers (tests, notebooks) keep their own setting
        cfg = RunConfig.load(args.config, args.overrides)
        result = Trainer(cfg, args.out, resume=args.resume, quiet=args.quiet).run()
    finally:
        set_enabled(previous)
    print(result.metrics)
    stepsize_path, gamma_path = result.out_dir / "stepsize.json", result.out_dir / "gamma.json"
    if stepsize_path.exists():  # the range test's outcome (and, in meta.mode=stepsize, the learned step sizes)
        from .meta.stepsize import stepsize_summary

        print("\n" + stepsize_summary(json.loads(stepsize_path.read_text())))
    if gamma_path.exists() and not (stepsize_path.exists() and cfg.meta.mode == "stepsize"):
        from .meta.report import gamma_summary

        print("\n" + gamma_summary(json.loads(gamma_path.read_text()), bool(cfg.meta.enabled)))
    print(f"\nrun directory: {result.out_dir}  ({result.wall_time_s:.0f} s)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .infer.commands import eval_command

    return eval_command(args)


def cmd_predict(args: argparse.Namespace) -> int:
    from .infer.commands import predict_command

    return predict_command(args)


def cmd_config(args: argparse.Namespace) -> int:
    from .config_help import describe, format_table

    rows = describe(args.section)
    print(json.dumps(rows, indent=1, default=str) if args.json else format_table(rows))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .config import ConfigError
    from .experiments.grid import SEED_KEY, merge_axes, parse_axis, seeds_axis
    from .experiments.manifest import read_manifest
    from .experiments.presets import build_preset

    echo = (lambda msg: None) if args.quiet else None
    new = bool(args.config or args.overrides or args.grid or args.preset or args.seeds)
    old = None if new else read_manifest(args.out)
    if args.optuna is not None or (old is not None and old["kind"] == "optuna"):
        from .experiments.hpo import HpoSpec, fixed_overrides, run_hpo, trial_rows

        if args.grid or args.preset or args.seeds:
            raise ConfigError("--optuna searches its own space: drop --grid, --preset and --seeds")
        if args.backend != "local":
            raise ConfigError("--optuna runs its trials in sequence (TPE learns from each one): "
                              "use --backend local")
        spec = (HpoSpec.load(args.out, args.optuna) if old is not None else
                HpoSpec.create(args.config, fixed_overrides() + args.overrides, args.optuna or 0, args.depth,
                               args.sampler_seed, args.startup_trials))
        study = run_hpo(spec, args.out, verbose=args.verbose, echo=echo)
        rows = [r for r in trial_rows(study) if r["state"] == "COMPLETE"]
        if rows:
            best = max(rows, key=lambda r: r["value"])
            print(f"best trial {best['number']}: {best['objective']}={best['value']:.4f}  "
                  f"positions={best['positions']} blocks={best['blocks']} scale={best['scale']:.4g}  "
                  f"({best['run_dir']})")
        print(f"trials: {args.out / 'optuna_trials.csv'}  ({len(rows)} complete of {len(study.trials)})")
        return 0
    from .experiments.sweep import SweepSpec, run_sweep

    if old is not None:
        spec = SweepSpec.load(args.out)
    else:
        preset = build_preset(args.preset, args.depth) if args.preset else None
        axes = merge_axes(preset.axes if preset else [], [parse_axis(g) for g in args.grid])
        if args.seeds:
            if any(a.key == SEED_KEY for a in axes):
                raise ConfigError(f"give seeds either with --seeds or with --grid {SEED_KEY}=..., not both")
            axes.append(seeds_axis(args.seeds))
        if not axes:
            raise ConfigError("nothing to sweep: give --grid, --preset, --seeds or --optuna "
                              "(or only --out DIR to resume an existing sweep)")
        spec = SweepSpec.create(args.config, (preset.overrides if preset else []) + args.overrides, axes, args.preset)
    ray_options = {"address": args.ray_address, "cpus_per_trial": args.ray_cpus_per_trial,
                   "max_concurrent": args.ray_max_concurrent}
    outcomes = run_sweep(spec, args.out, scheduler=args.backend, verbose=args.verbose, echo=echo,
                         ray_options=ray_options)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    print(f"{len(outcomes)} cells: {counts['done']} run, {counts['skipped']} already done, {counts['failed']} failed")
    print(f"results: {args.out / 'results.csv'}  (figures: metapeft report {args.out})")
    return 1 if counts["failed"] else 0


def cmd_report(args: argparse.Namespace) -> int:
    from .experiments.report import write_report

    print(f"report: {write_report(args.path, args.out, features=not args.no_features)}")
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
    handlers = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "config": cmd_config, "info": cmd_info, "sweep": cmd_sweep,
                "report": cmd_report}
    from .errors import MetapeftError

    try:
        return handlers[args.command](args)
    except MetapeftError as e:  # the tool's own errors only: anything else is a bug and keeps its traceback
        print(f"error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: the last complete checkpoint is kept (use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
