"""What a run carries from step to step and epoch to epoch: the resumable counters and history.

``TrainState`` is what ``checkpoints/epoch_N/state.json`` holds. Its JSON form is the dict older
versions wrote (keys ``epoch``, ``step``, ``skipped_steps``, ``history``, ``scheduler``), so a
checkpoint written before the class existed still resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    epoch: int = 0                 # epochs finished
    step: int = 0                  # optimizer steps taken (drives the meta interval and the schedule)
    skipped_steps: int = 0         # steps dropped for a non-finite loss / gradient / update
    history: list[dict[str, Any]] = field(default_factory=list)  # one history.csv row per finished epoch
    scheduler: dict[str, Any] | None = None  # the LR scheduler's state_dict at the last epoch end
    loss_scaler: dict[str, Any] | None = None  # train.precision=fp16: the GradScaler's state (scale, tracker)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"epoch": self.epoch, "step": self.step, "skipped_steps": self.skipped_steps,
                               "history": self.history}
        if self.scheduler is not None:
            out["scheduler"] = self.scheduler
        if self.loss_scaler is not None:
            out["loss_scaler"] = self.loss_scaler
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainState":
        return cls(int(data["epoch"]), int(data["step"]), int(data.get("skipped_steps", 0)),
                   list(data.get("history", [])), data.get("scheduler"), data.get("loss_scaler"))


@dataclass
class EpochStats:
    """Running loss and image count of the current epoch (for history.csv and the progress bar)."""

    started: float = field(default_factory=time.perf_counter)
    seen: int = 0
    loss_sum: float = 0.0
    losses: int = 0

    def add(self, loss: float, images: int) -> None:
        self.loss_sum, self.losses, self.seen = self.loss_sum + loss, self.losses + 1, self.seen + images

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.losses, 1)

    @property
    def images_per_s(self) -> float:
        return self.seen / (time.perf_counter() - self.started)
