"""``meta.calib_restart``: the LR range test as a phase of its own, before the run.

Without it the range test is the run's first steps: its climbing lr ends in a loss rise, the weights go
back to a snapshot trained only at tiny lrs, and the run goes on from there with what is left of its
schedule. In a short run that costs real updates: a 3-epoch Adapter run on AID-LT keeps 7 small-lr updates
of the test's 12 step slots, and lost 7 pt balanced against a plain run at the very lr the test picked
(docs/results.md, session 5). Here the test trains on batches of its own (a train-loader stream no epoch
uses), then the schedule and the step counter start over, and φ, γ and the optimizer state go back to θ₀
(``initial``: what follows is a plain run at the found lr) or to the snapshot the test restored (``warm``:
its small-lr updates are the run's warm-up). Either way the run gets its whole schedule, and the guard
watches it.
"""

from __future__ import annotations

from typing import Callable, Iterator

from ..data import BatchLoader
from ..errors import TrainingError
from .distributed import DistEnv
from .runlog import PrefixedLog
from .step import Batch, TrainStep, micro_batch_groups

RANGE_TEST_STREAM = -2     # the loader "epochs" the test draws from: -2, -3, ... (no run epoch is negative)
MAX_STEPS_PER_TEST_STEP = 4  # a test that has not ended after this × calib_steps steps (all skipped) is an error


def run_range_test(step: TrainStep, loader: BatchLoader, val: Iterator[Batch] | None, env: DistEnv,
                   seed_stream: Callable[[int], None]) -> int:
    """Run ``step.sizer``'s range test to its end on its own batches, then restart the run; returns the
    steps it took. ``seed_stream(k)`` seeds dropout etc. for the test's k-th loader pass (the run's epochs
    reseed their own). Nothing about the test survives but the sizer's outcome and trace."""
    sizer, opt, state = step.sizer, step.optimizer, step.state
    assert sizer is not None and sizer.state.calibrating and sizer.cfg.restart != "inline"
    scheduler_state = step.scheduler.state_dict()
    lrs = [pg["lr"] for pg in opt.param_groups]
    precision_state = step.precision.state_dict()
    run_log, step.log = step.log, PrefixedLog(step.log, "range_test/")  # its scalars apart from the run's
    limit = MAX_STEPS_PER_TEST_STEP * sizer.cfg.calib_steps
    taken, stream = 0, RANGE_TEST_STREAM
    try:
        while step.calibrating:
            if taken >= limit:
                raise TrainingError(f"the LR range test did not end in {limit} steps: its steps were skipped "
                                    "(non-finite gradients); check the data and train.precision")
            seed_stream(stream)
            loader.set_epoch(stream)
            for group in micro_batch_groups(loader, step.cfg.grad_accum):
                step.step([(env.shard(x), env.shard(y)) for x, y in group], val)
                taken += 1
                if not step.calibrating or taken >= limit:
                    break
            stream -= 1
    finally:
        step.log = run_log
    sizer.restart(opt)
    step.scheduler.load_state_dict(scheduler_state)
    for pg, lr in zip(opt.param_groups, lrs):
        pg["lr"] = lr
    step.precision.load_state_dict(precision_state)
    state.step, state.skipped_steps = 0, 0
    return taken
