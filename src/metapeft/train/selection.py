"""Model selection without touching test: keep the best epoch by validation (``train.val_holdout``).

With a training-set hold-out, every epoch is scored on it (``val_*`` columns in history.csv); the
trainable state of the best epoch (highest ``train.select_metric``, first one on ties) is kept in
``RUN/checkpoints/best/`` and restored before the final evaluation, so the test numbers in
metrics.json come from a model chosen without seeing test; ``metrics.json["model_selection"]`` says
which. Evaluation during training (``train.eval_every``) then runs on the validation split; test is
evaluated in-loop only with ``train.eval_split=test``. Without a hold-out the last epoch is the model,
as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from .checkpoint import atomic_save_safetensors, atomic_write_text, load_trainable_state, trainable_state

KEYS = ("overall", "balanced", "many", "medium", "few")

Evaluate = Callable[[Any], dict]


class ModelSelection:
    def __init__(self, cfg, selection_set, out_dir: Path, *, is_main: bool = True) -> None:
        t = cfg.train
        self.val = selection_set
        self.metric = t.select_metric or "balanced"
        self.eval_every = t.eval_every
        split = t.eval_split or ("val" if selection_set is not None else "test")
        self.eval_split = split
        self.dir = Path(out_dir) / "checkpoints" / "best"
        self.is_main = is_main
        info = self.dir / "best.json"
        self.best: dict[str, Any] | None = json.loads(info.read_text()) if info.is_file() else None  # resume

    @property
    def active(self) -> bool:
        return self.val is not None

    def epoch_end(self, epoch: int, last: bool, model: nn.Module, evaluate: Evaluate, test_set) -> dict[str, Any]:
        """Columns for this epoch's history row (val_* always with a hold-out; test ones when asked)."""
        row: dict[str, Any] = {}
        due = self.eval_every and (epoch + 1) % self.eval_every == 0
        if self.active:
            m = evaluate(self.val)
            row.update({f"val_{k}": m[k] for k in KEYS})
            score = m[self.metric]
            if self.best is None or (score is not None and score > self.best["score"]):
                self.best = {"epoch": epoch + 1, "score": score, "metric": f"val_{self.metric}"}
                if self.is_main:
                    self.dir.mkdir(parents=True, exist_ok=True)
                    atomic_save_safetensors(trainable_state(model), self.dir / "trainable.safetensors")
                    atomic_write_text(self.dir / "best.json", json.dumps(self.best))
        if due and not last and self.eval_split == "test":
            m = evaluate(test_set)
            row.update({k: m[k] for k in KEYS})
        return row

    def restore(self, model: nn.Module, epochs: int) -> dict[str, Any]:
        """Load the chosen epoch's weights; what metrics.json says about the model the numbers come from."""
        if not self.active or self.best is None:
            return {"model": "last", "epoch": epochs, "reason": "no validation hold-out (train.val_holdout=0)"}
        load_trainable_state(model, load_file(str(self.dir / "trainable.safetensors")))
        return {"model": "best_val", "epoch": self.best["epoch"], "metric": self.best["metric"],
                "score": self.best["score"], "of_epochs": epochs}
