"""Fixtures for sweep/HPO/report tests: the shared tiny run, one epoch, one torch thread.

One thread: these tests chain many ~1 s runs, and on a busy 2-core machine torch's default
thread pool costs several times more than it gains. The previous thread count is restored.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def tiny_cell(tiny_run) -> list[str]:
    threads = torch.get_num_threads()
    yield tiny_run + ["train.epochs=1", "train.threads=1"]
    torch.set_num_threads(threads)
