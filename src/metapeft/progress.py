"""Progress for long steps (decode, head init, evaluation, epochs, predict): a bar on a terminal, log lines elsewhere.

A bar's ``\\r`` frames turn a CI log or ``> run.log`` into one unreadable line, so when stderr is not a
TTY the same loop prints ``desc: 40/200 batches (20%) 31.0 s`` lines instead, at most every ``every_s``
seconds, plus a closing line for steps that took ``min_s`` or more (short steps stay silent, as a bar
with tqdm's ``delay`` does on a terminal). ``set_enabled(False)`` (the CLI's ``-q``) silences all of it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

_ENABLED = True


def set_enabled(flag: bool) -> bool:
    """Switch progress output on/off for this process; returns the previous setting (to restore it)."""
    global _ENABLED
    previous, _ENABLED = _ENABLED, bool(flag)
    return previous


class LineProgress:
    """Iterable wrapper printing plain progress lines; ``set_postfix`` adds ``k=v`` to them (like tqdm)."""

    def __init__(self, items: Iterable, desc: str, total: int | None, unit: str, every_s: float, min_s: float):
        self.items, self.desc, self.total, self.unit = items, desc, total, unit
        self.every_s, self.min_s = every_s, min_s
        self.postfix = ""

    def set_postfix(self, **values: Any) -> None:
        self.postfix = "  " + " ".join(f"{k}={v}" for k, v in values.items())

    def _line(self, n: int, elapsed: float, tail: str = "") -> str:
        share = f"/{self.total} {self.unit} ({100 * n / self.total:.0f}%)" if self.total else f" {self.unit}"
        return f"{self.desc}: {n}{share} {elapsed:.1f} s{self.postfix}{tail}"

    def __iter__(self) -> Iterator:
        started = last = time.perf_counter()
        n = 0
        for n, item in enumerate(self.items, 1):
            yield item
            now = time.perf_counter()
            if now - last >= self.every_s:
                last = now
                print(self._line(n, now - started), file=sys.stderr, flush=True)
        elapsed = time.perf_counter() - started
        if elapsed >= self.min_s:
            print(self._line(n, elapsed, "  done"), file=sys.stderr, flush=True)


def progress(items: Iterable, desc: str, *, total: int | None = None, enabled: bool = True, unit: str = "it",
             every_s: float = 10.0, min_s: float = 5.0) -> Iterable:
    """``items`` with progress on stderr: tqdm on a TTY, :class:`LineProgress` otherwise, or bare."""
    if not (enabled and _ENABLED):
        return items
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(items, desc=desc, total=total, leave=False, dynamic_ncols=True, unit=unit, delay=min(2.0, min_s))
    return LineProgress(items, desc, total, unit, every_s, min_s)
