"""train.precision: autocast in inner steps, meta steps (first-order and unrolled) and evaluation; fp16
with a loss scaler; weights, γ and losses stay fp32."""

from __future__ import annotations

import pytest
import torch

from metapeft.config import RunConfig, TrainConfig
from metapeft.errors import ConfigError
from metapeft.train.evaluate import predict
from metapeft.train.precision import Precision, resolve_precision

LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _head_dtypes(step) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    step.net.head.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("hypergrad", ["first_order", "unrolled"])
def test_inner_and_meta_steps_run_in_the_precision(kit, precision, hypergrad):
    step = kit.make_step(hypergrad=hypergrad, interval=1, precision=precision)
    seen = _head_dtypes(step)
    phi0 = [p.detach().clone() for p in step.phi]
    g0 = [g.detach().clone() for g in step.meta.gammas]
    val = kit.val_stream()
    for i in range(2):
        step.step([kit.batch(i)], val)
    want = LOW.get(precision, torch.float32)
    assert seen == [want] * 4  # train forward + val forward, twice: the meta step too runs in the precision
    assert step.state.skipped_steps == 0 and step.meta.state.skipped == 0
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in step.phi + step.meta.gammas)
    assert any(not torch.equal(a, p) for a, p in zip(phi0, step.phi))
    assert any(not torch.equal(a, g) for a, g in zip(g0, step.meta.gammas))  # γ learned in every precision
    assert (step.precision.scaler is not None) == (precision == "fp16")


def test_fp16_overflow_skips_the_step_and_lowers_the_scale(kit):
    step = kit.make_step(precision="fp16")
    before = [p.detach().clone() for p in step.phi]
    ce = step.criterion
    step.criterion = lambda out, y: ce(out, y) * 1e6  # × the 65536 scale: fp16 gradients overflow
    step.step([kit.batch(0)])
    assert step.state.skipped_steps == 1 and step.precision.loss_scale() < 65536.0
    assert all(torch.equal(a, p) for a, p in zip(before, step.phi))
    step.criterion = ce
    step.step([kit.batch(1)])  # the next ordinary step goes through
    assert step.state.skipped_steps == 1 and any(not torch.equal(a, p) for a, p in zip(before, step.phi))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_evaluation_runs_in_the_precision_and_returns_fp32_logits(kit, precision):
    step = kit.make_step(precision=precision)
    seen = _head_dtypes(step)
    logits, targets = predict(step.net, [kit.batch(0), kit.batch(1)], step.precision.autocast)
    assert seen == [LOW[precision]] * 2 and logits.dtype == torch.float32 and logits.shape == (8, 5)


def test_resolve_precision_defaults():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision(None, False, cpu) == "fp32"       # bf16 is slower on CPUs without AMX
    assert resolve_precision(None, True, cpu) == "bf16"        # the legacy switch
    assert resolve_precision("fp16", True, cpu) == "fp16"      # the new key wins
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        assert resolve_precision(None, False, cuda) == "bf16"
    assert TrainConfig().precision is None and TrainConfig().tf32 is None  # old config.yaml resume unchanged


def test_bad_precision_is_one_config_error():
    with pytest.raises(ConfigError, match="train.precision.*fp32 \\| bf16 \\| fp16"):
        RunConfig.load(None, ["train.precision=fp64"])
    with pytest.raises(ValueError):
        Precision("int8")


def test_loss_scaler_state_round_trips_and_old_states_have_none():
    from metapeft.train.state import TrainState

    st = TrainState(loss_scaler={"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                 "growth_interval": 2000, "_growth_tracker": 7})
    assert TrainState.from_dict(st.to_dict()).loss_scaler == st.loss_scaler
    assert "loss_scaler" not in TrainState().to_dict() and TrainState.from_dict({"epoch": 1, "step": 3}).loss_scaler is None
    p = Precision("fp16")
    p.load_state_dict(st.loss_scaler)
    assert p.loss_scale() == 1024.0


@pytest.mark.slow
def test_fp16_run_resumes_like_an_uninterrupted_one(tmp_path, tiny_run, monkeypatch):
    """A whole fp16 MetaPEFT run; interrupted after epoch 1 and resumed, it ends with the same numbers
    (the loss scale is part of the checkpoint)."""
    import json

    from metapeft.train import Trainer

    over = tiny_run + ["train.precision=fp16", "meta.enabled=true", "meta.interval=2", "train.threads=1"]
    full = Trainer(RunConfig.load(None, over), tmp_path / "full", quiet=True).run()
    real = Trainer._epoch

    def stop_after_first(self, run, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        real(self, run, epoch)

    monkeypatch.setattr(Trainer, "_epoch", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        Trainer(RunConfig.load(None, over), tmp_path / "cut", quiet=True).run()
    monkeypatch.setattr(Trainer, "_epoch", real)
    state = json.loads((tmp_path / "cut" / "checkpoints" / "epoch_0001" / "state.json").read_text())
    assert state["loss_scaler"]["scale"] > 0
    resumed = Trainer(RunConfig.load(None, over), tmp_path / "cut", resume=True, quiet=True).run()
    a, b = (json.loads((r.out_dir / "metrics.json").read_text()) for r in (full, resumed))
    # fp16 overflows at the initial scale (65536) skip a step or two, as with any GradScaler; the same ones.
    assert a["run"]["skipped_steps"] == b["run"]["skipped_steps"] <= 4 and a["run"]["meta_skipped"] == 0
    assert {k: a[k] for k in ("overall", "balanced", "per_class")} == {k: b[k] for k in ("overall", "balanced",
                                                                                        "per_class")}
