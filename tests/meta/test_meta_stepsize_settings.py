"""The stepsize mode's settings: the run-length rule for the range test's safety factor."""

from __future__ import annotations

import pytest

from metapeft.config import MetaConfig
from metapeft.meta.stepsize_settings import (SAFETY_BASE, SAFETY_MAX, SAFETY_REF_EPOCHS, StepSizeSettings,
                                             default_calib_safety, too_short)


def test_short_runs_keep_the_base_factor():
    for epochs in (0, 1, SAFETY_REF_EPOCHS - 1, SAFETY_REF_EPOCHS):
        assert default_calib_safety(epochs) == SAFETY_BASE


def test_longer_runs_stay_further_below_the_cliff():
    factors = [default_calib_safety(e) for e in (3, 5, 10, 20)]
    assert factors == sorted(factors) and len(set(factors)) == 4
    assert default_calib_safety(10) == 8.0                      # the two measured points, exactly
    assert default_calib_safety(SAFETY_REF_EPOCHS) == SAFETY_BASE
    assert default_calib_safety(30) == pytest.approx(15.06, abs=0.01)
    assert default_calib_safety(1000) == SAFETY_MAX


def test_from_config_resolves_a_null_safety_from_the_epochs():
    long_run = StepSizeSettings.from_config(MetaConfig(mode="stepsize"), interval=10, total_steps=1000, epochs=12)
    assert long_run.calib_safety == pytest.approx(default_calib_safety(12))
    assert long_run.calib_safety > SAFETY_BASE
    short = StepSizeSettings.from_config(MetaConfig(mode="stepsize"), interval=10, total_steps=1000, epochs=3)
    assert short.calib_safety == SAFETY_BASE


def test_a_given_safety_wins_over_the_rule():
    given = StepSizeSettings.from_config(MetaConfig(mode="stepsize", calib_safety=3), interval=10,
                                         total_steps=10_000, epochs=100)
    assert given.calib_safety == 3


def test_a_range_test_longer_than_a_third_of_the_run_is_turned_off_unless_asked_for():
    assert too_short(59, 20) and not too_short(60, 20) and not too_short(0, 20)   # 0: length unknown
    short = StepSizeSettings.from_config(MetaConfig(mode="stepsize"), interval=5, total_steps=11)
    assert not short.calibrate
    asked = StepSizeSettings.from_config(MetaConfig(mode="stepsize", calibrate=True), interval=5, total_steps=11)
    assert asked.calibrate
    assert StepSizeSettings.from_config(MetaConfig(mode="stepsize", calib_steps=3), interval=5, total_steps=11).calibrate


def test_calib_restart_reaches_the_settings():
    for value in ("inline", "initial", "warm"):
        assert StepSizeSettings.from_config(MetaConfig(mode="stepsize", calib_restart=value), 10).restart == value
    assert StepSizeSettings.from_config(MetaConfig(mode="stepsize"), 10).restart == StepSizeSettings.restart
    with pytest.raises(ValueError, match="calib_restart"):
        MetaConfig(calib_restart="yes")


def test_calib_rise_reaches_the_settings_and_must_be_positive():
    assert StepSizeSettings.from_config(MetaConfig(mode="stepsize", calib_rise=0.15), 10).calib_rise == 0.15
    assert StepSizeSettings.from_config(MetaConfig(mode="stepsize"), 10).calib_rise == 0.3
    with pytest.raises(ValueError, match="calib_rise"):
        MetaConfig(calib_rise=0)


def test_a_null_calib_restart_follows_the_peft_method():
    """The hold-out's picks: warm for the bottleneck adapters, inline for LoRA and every unmeasured method."""
    from metapeft.meta.stepsize_settings import WARM_RESTART_METHODS, default_calib_restart
    from metapeft.peft import METHODS

    assert WARM_RESTART_METHODS <= set(METHODS)        # a renamed method cannot silently lose its default
    meta = MetaConfig(mode="stepsize")
    assert StepSizeSettings.from_config(meta, 10, method="adapter").restart == "warm"
    assert StepSizeSettings.from_config(meta, 10, method="adaptformer").restart == "warm"
    assert StepSizeSettings.from_config(meta, 10, method="lora").restart == "inline"
    assert default_calib_restart("vpt_deep") == "inline"
    given = MetaConfig(mode="stepsize", calib_restart="initial")
    assert StepSizeSettings.from_config(given, 10, method="adapter").restart == "initial"
