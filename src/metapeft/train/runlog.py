"""Run-directory logging: console lines, TensorBoard scalars, CSV histories."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any


class RunLog:
    """Writes to ``RUN/tensorboard`` (optional), ``RUN/history.csv`` and the console.

    stdout/stderr are never redirected: messages go to stderr, results to stdout.
    """

    def __init__(self, out_dir: Path, *, tensorboard: bool, quiet: bool = False) -> None:
        self.out = out_dir
        self.quiet = quiet
        self.tensorboard = tensorboard
        self.writer = None  # created at the first scalar: nothing is written before the run's checks pass

    def info(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.tensorboard and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tensorboard"))
        if self.writer is not None:
            for k, v in values.items():
                if v is not None:
                    self.writer.add_scalar(k, v, step)

    def append_csv(self, name: str, row: dict[str, Any]) -> None:
        """Append ``row``; the file keeps ONE header, widened (and rewritten) when a row brings new columns.

        Epochs evaluated every ``eval_every`` epochs carry test columns the others lack: every row is
        written under the union header, with empty cells where a value was not measured, so csv / pandas
        readers see rectangular data.
        """
        path = self.out / name
        header: list[str] = []
        rows: list[dict[str, Any]] = []
        if path.exists():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                new_keys = [k for k in row if k not in header]
                if new_keys:
                    rows = list(reader)
        else:
            new_keys = list(row)
        if not header or new_keys:
            header = header + new_keys
            with path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=header, restval="")
                w.writeheader()
                w.writerows(rows)
        with path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=header, restval="").writerow(row)

    def rewrite_csv(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Rewrite a CSV from state (used on resume so the file matches the checkpoint)."""
        path = self.out / name
        path.unlink(missing_ok=True)
        for row in rows:
            self.append_csv(name, row)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


class PrefixedLog:
    """A view of a :class:`RunLog` whose scalars go under ``prefix`` (the range test's steps, which the run's
    own step counter then counts again from 0); messages pass through unchanged."""

    def __init__(self, log: RunLog, prefix: str) -> None:
        self.log, self.prefix = log, prefix

    def info(self, msg: str) -> None:
        self.log.info(msg)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.log.scalars(step, {self.prefix + k: v for k, v in values.items()})
