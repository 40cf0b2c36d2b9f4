"""Progress for long steps: a tqdm bar on a terminal, plain log lines elsewhere.

A bar's ``\\r`` frames turn a CI log or ``> run.log`` into one unreadable line, so when stderr is not
a TTY the same loop prints ``desc: 40/200 (20%) 3.1 s`` lines instead, at most every ``every_s``
seconds (and at the end).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, *, total: int | None = None, enabled: bool = True,
             every_s: float = 10.0, unit: str = "it") -> Iterator[T]:
    """Iterate ``items`` with progress shown on stderr (nothing when ``enabled`` is False)."""
    if not enabled:
        yield from items
        return
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=desc, total=total, leave=False, dynamic_ncols=True, unit=unit)
        return
    started = last = time.perf_counter()
    n = 0
    for n, item in enumerate(items, 1):
        yield item
        now = time.perf_counter()
        if now - last >= every_s:
            last = now
            print(_line(desc, n, total, now - started, unit), file=sys.stderr, flush=True)
    print(_line(desc, n, total, time.perf_counter() - started, unit) + " done", file=sys.stderr, flush=True)


def _line(desc: str, n: int, total: int | None, elapsed: float, unit: str) -> str:
    share = f"/{total} ({100 * n / total:.0f}%)" if total else ""
    return f"{desc}: {n}{share} {unit} {elapsed:.1f} s"
