"""What the step-size learner carries between steps: its state, its loss watch and its weight snapshots.

All of it goes into meta.pt (``StepSizeLearner.state_dict``), so a resumed run replays exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

LOSS_SMOOTHING = 0.7   # EMA weight of the past in the smoothed train loss (a few steps of memory)
GUARD_FLOOR = 0.5      # the guard ignores rises that stay below guard_spike × this × the run's first loss


@dataclass
class Snapshot:
    """φ (and tracked γ) and φ's optimizer state at one moment, with the reference lr it was taken at."""

    rho: float
    params: list[torch.Tensor]
    opt_state: list[dict]


@dataclass
class LossWatch:
    """Bias-corrected EMA of the train loss, its running minimum and its first value."""

    ema: float = 0.0
    n: int = 0
    best: float = math.inf
    start: float = 0.0   # the first smoothed value (0 in checkpoints written before it existed: no floor)

    def update(self, loss: float) -> float:
        self.ema = LOSS_SMOOTHING * self.ema + (1 - LOSS_SMOOTHING) * loss
        self.n += 1
        smooth = self.ema / (1 - LOSS_SMOOTHING ** self.n)
        self.best = min(self.best, smooth)
        if self.n == 1:
            self.start = smooth
        return smooth

    def spiked(self, smooth: float, factor: float) -> bool:
        """A divergence, not noise: above ``factor`` × the minimum AND above ``factor`` × GUARD_FLOOR × the
        first value. Without the floor a loss near 0 trips on batch noise: in 10-epoch AID runs the train loss
        fell to 0.1 and the guard halved every step size three times in the last epoch, at lr ≈ 0."""
        return not smooth <= factor * max(self.best, GUARD_FLOOR * self.start)


@dataclass
class StepSizeState:
    rho: float                       # reference LR (calibrated, or train.lr)
    calibrating: bool
    calib_index: int = 0
    lr_cliff: float | None = None
    probe_best: float = math.inf     # lowest probe loss of the range test
    meta_steps: int = 0
    guard_restores: int = 0
    watch: LossWatch = field(default_factory=LossWatch)
    calib_trace: list[dict] = field(default_factory=list)
    trace: list[dict] = field(default_factory=list)
    guard_best: float = math.inf     # guard=probe: lowest probe loss at a snapshot since the range test
    guard_start: float = math.nan    # ... and the first one (the floor's reference)
    guard_trace: list[dict] = field(default_factory=list)   # guard=probe: step, probe loss, best at each snapshot
    guard_high: int = 0              # guard=probe: consecutive readings above the limit
