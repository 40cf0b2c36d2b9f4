"""What a checkpoint's meta.pt holds: γ's learner, the step-size learner, or both.

Both run in ``meta.mode=gamma`` with ``meta.calibrate`` (the LR range test and its guard, then the paper's γ).
Each mode's state has its own shape, so a resume names the mode a checkpoint was written by instead of failing
on a missing key.
"""

from __future__ import annotations

from typing import Any

from ..meta import MetaLearner
from ..meta.stepsize import CALIBRATED_GAMMA, StepSizeLearner

GAMMA, STEPSIZE = "gamma", "stepsize"
FLAGS = {GAMMA: "meta.mode=gamma meta.calibrate=false", STEPSIZE: "meta.mode=stepsize",
         CALIBRATED_GAMMA: "meta.mode=gamma meta.calibrate=true"}   # how to ask for each mode on a resume


def saved_mode(state: dict[str, Any]) -> str:
    """The mode a meta.pt was written by."""
    if "log_mult" in state:
        return STEPSIZE
    return CALIBRATED_GAMMA if "calibration" in state else GAMMA


class MetaStates:
    """The run's meta learners, saved and loaded as one meta.pt."""

    def __init__(self, gamma: MetaLearner | None, sizer: StepSizeLearner | None) -> None:
        self.gamma, self.sizer = gamma, sizer

    def __bool__(self) -> bool:
        return self.gamma is not None or self.sizer is not None

    @property
    def mode(self) -> str:
        if self.gamma is None:
            return STEPSIZE
        return CALIBRATED_GAMMA if self.sizer is not None else GAMMA

    def state_dict(self) -> dict[str, Any]:
        if self.gamma is not None and self.sizer is not None:
            return {"gamma": self.gamma.state_dict(), "calibration": self.sizer.state_dict()}
        return (self.gamma or self.sizer).state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.gamma is not None and self.sizer is not None:
            self.gamma.load_state_dict(state["gamma"])
            self.sizer.load_state_dict(state["calibration"])
        else:
            (self.gamma or self.sizer).load_state_dict(state)
