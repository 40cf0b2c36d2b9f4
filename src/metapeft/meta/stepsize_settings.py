"""What the ``stepsize`` mode runs with: its settings, and the rule that sets the range test's safety factor.

The range test finds the lr where the probe loss rises within its first ~20 steps; the run then trains at
that cliff ÷ ``calib_safety``. How far below the cliff a run must stay grows with its length in epochs. On the
training hold-out (3 seeds each): at 3 epochs on AID-LT ÷ 4 was best (÷ 2 tripped the guard on every seed, ÷ 8
lost 3.9 pt balanced); at 10 epochs ÷ 8 was best on AID-LT (73.9 against 70.5 at ÷ 4, 71.7 at ÷ 7.3, 68.8 at
÷ 16) and on MSTAR-LT (61.5 / 63.9 balanced / few against 60.0 / 52.8 at ÷ 4), although an MSTAR run has half
the steps of an AID one. So with ``meta.calib_safety`` null the factor runs through those two measured
points, log-linear in the epochs: ÷ 4 at 3 epochs, doubling every ×10/3 (docs/results.md, "Session 5").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..config import MetaConfig

SAFETY_BASE = 4.0          # cliff ÷ this for runs of up to SAFETY_REF_EPOCHS epochs
SAFETY_REF_EPOCHS = 3      # the two measured points: ÷ SAFETY_BASE at this many epochs ...
SAFETY_LONG_EPOCHS = 10    # ... and ÷ 2·SAFETY_BASE at this many
SAFETY_MAX = 16.0          # nothing past 10 epochs was measured: the extrapolation stops one doubling further
CALIB_MAX_SHARE = 1 / 3    # meta.calibrate null: no range test where it would take more than this share of the run
GAMMA_CALIBRATE = True     # meta.calibrate null in meta.mode=gamma: the range test first (false: the paper at train.lr)
# meta.calib_restart null: "warm" for the bottleneck adapters, whose 3-epoch hold-out runs it lifted by +8.6 / +14.8
# (Adapter) and +3.7 / +3.0 (AdaptFormer) over "inline"; "inline" for every other method: on LoRA it lost 4.9 /
# 2.4 balanced at 3 / 10 epochs (docs/results.md, "Session 6"). Methods never measured keep "inline".
WARM_RESTART_METHODS = frozenset({"adapter", "adaptformer"})


def default_calib_safety(epochs: float) -> float:
    """``meta.calib_safety`` null: 4 up to 3 epochs, then × 2 for every × 10/3 of epochs (10 epochs: 8, 30: 15),
    at most SAFETY_MAX."""
    ratio = max(1.0, epochs / SAFETY_REF_EPOCHS)
    return min(SAFETY_MAX, SAFETY_BASE * 2.0 ** (math.log(ratio) / math.log(SAFETY_LONG_EPOCHS / SAFETY_REF_EPOCHS)))


def default_calib_restart(method: str) -> str:
    """``meta.calib_restart`` null: how the range test meets the run, by PEFT method (WARM_RESTART_METHODS)."""
    return "warm" if method in WARM_RESTART_METHODS else "inline"


def too_short(total_steps: int, calib_steps: int) -> bool:
    """A run whose range test would take over CALIB_MAX_SHARE of it. In an 11-step run (a small folder, one
    epoch) the 20-step test never ended: the run finished mid-ramp at whatever lr the ramp had reached."""
    return 0 < total_steps < calib_steps / CALIB_MAX_SHARE


@dataclass(frozen=True)
class StepSizeSettings:
    """The stepsize mode's settings with their defaults (``MetaConfig`` keeps None for "default")."""

    groups: str = "kind"
    scale_invariant: bool = True
    calibrate: bool = True
    calib_steps: int = 20
    calib_probe: int = 2      # fixed val batches the range test watches (0: the smoothed train loss)
    calib_range: tuple[float, float] | None = None   # None: DEFAULT_RANGES[optimizer]
    calib_rise: float = 0.3   # the test ends where the watched loss exceeds (1 + this) × its minimum
    calib_safety: float = SAFETY_BASE
    restart: str = "inline"   # meta.calib_restart: inline | initial | warm (the test before the run, then from θ₀ / warm)
                              # (null in the config: default_calib_restart(peft.method))
    max_mult: float = 2.0
    step_relative: bool = True
    learn_split: bool = False  # True: the hypergradient split (part 2); False: the range test's lr for every group
    guard_spike: float = 2.0
    guard: str = "probe"      # probe: also watch the probe loss at every snapshot, restore the best one
    lr: float = 0.25          # meta.lr: the largest move of a log step size per meta step
    interval: int = 10        # one meta step every this many inner steps

    @classmethod
    def from_config(cls, meta: MetaConfig, interval: int, total_steps: int = 0,
                    epochs: float = 0, method: str = "") -> "StepSizeSettings":
        """``epochs`` set ``calib_safety`` when it is null; ``total_steps`` (the planned optimizer steps, 0:
        unknown) turn a null ``calibrate`` off in a run too short for the range test (see :func:`too_short`);
        ``method`` (peft.method) sets a null ``calib_restart`` (:func:`default_calib_restart`)."""
        safety = meta.calib_safety if meta.calib_safety is not None else default_calib_safety(epochs)
        calibrate = meta.calibrate
        if calibrate is None and too_short(total_steps, meta.calib_steps or cls.calib_steps):
            calibrate = False
        restart = meta.calib_restart or default_calib_restart(method)
        given = {"groups": meta.step_groups, "scale_invariant": meta.scale_invariant, "calibrate": calibrate,
                 "calib_steps": meta.calib_steps, "calib_probe": meta.calib_probe, "restart": restart,
                 "calib_rise": meta.calib_rise,
                 "calib_safety": safety, "max_mult": meta.max_mult,
                 "step_relative": meta.step_relative, "guard_spike": meta.guard_spike,
                 "learn_split": meta.learn_split, "guard": meta.guard,
                 "calib_range": tuple(meta.calib_range) if meta.calib_range else None}
        return cls(**{k: v for k, v in given.items() if v is not None}, lr=meta.lr, interval=interval)


def gamma_calibration(meta: MetaConfig, interval: int, total_steps: int, epochs: float,
                      method: str = "") -> StepSizeSettings | None:
    """``meta.mode=gamma`` with the range test (``meta.calibrate``; null = GAMMA_CALIBRATE): the settings of a
    step-size learner that only calibrates the lr and guards the run (no split), while γ learns as in the paper.
    None: the paper's method at ``train.lr`` (also when a null ``calibrate`` meets a run too short for the test)."""
    if meta.calibrate is False or (meta.calibrate is None and not GAMMA_CALIBRATE):
        return None
    settings = StepSizeSettings.from_config(meta, interval, total_steps, epochs, method)
    return replace(settings, learn_split=False) if settings.calibrate else None
