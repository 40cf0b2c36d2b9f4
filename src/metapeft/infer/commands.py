"""The ``predict`` and ``eval`` subcommands' bodies (``cli.py`` only parses and dispatches)."""

from __future__ import annotations

import argparse
import json
import sys

from ..data import DataError


def predict_command(args: argparse.Namespace) -> int:
    """Exit 0 when every image got a label, 1 when some rows are errors (2 = bad input, raised)."""
    from .inputs import collect_images
    from .predict import predict_files, write_predictions
    from .rebuild import load_inference_model

    if args.top_k < 1:
        raise DataError(f"--top-k must be >= 1, got {args.top_k}")
    if args.batch_size < 1:
        raise DataError(f"--batch-size must be >= 1, got {args.batch_size}")
    im = load_inference_model(args.checkpoint, device=args.device)
    files = collect_images(args.paths)
    rows = predict_files(im, files, top_k=args.top_k, batch_size=args.batch_size, show_progress=not args.quiet)
    if args.out is not None:
        write_predictions(rows, args.out, as_json=args.json or args.out.suffix.lower() == ".json")
    if args.out is None or args.json:
        write_predictions(rows, sys.stdout, as_json=args.json)
    failed = [r for r in rows if r["error"]]
    for r in failed:
        print(f"failed: {r['path']}: {r['error']}", file=sys.stderr)
    if not args.quiet:
        where = f" -> {args.out}" if args.out else ""
        print(f"{len(rows) - len(failed)} of {len(rows)} images labelled{where}", file=sys.stderr)
    return 1 if failed else 0


def eval_command(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(args.checkpoint, args.overrides)
    print(json.dumps(metrics.to_dict(), indent=1) if args.json else metrics)
    return 0
