"""``train.sync_free``: an ordinary step reads nothing from the device. A fused optimizer skips a bad
step on the device (``found_inf``), and the step's bookkeeping is read later, many steps at once. Fused
kernels give the default kernels' weights up to float rounding."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from metapeft.config import RunConfig
from metapeft.errors import ConfigError
from metapeft.train import Trainer
from metapeft.train import guard
from metapeft.train import step as step_module


def _weights(step) -> list[torch.Tensor]:
    return [p.detach().clone() for p in step.phi]


def test_a_sync_free_step_reads_nothing_and_a_flush_reads_once(kit, monkeypatch, count_reads):
    step = kit.make_step(fused=True, sync_free=True)
    step.step([kit.batch(0)])  # the first step creates the optimizer state: it is synced (see skips_on_device)
    monkeypatch.setattr(guard, "checked_step", lambda *a: pytest.fail("an ordinary step copied the weights"))
    with count_reads(monkeypatch, step.optimizer) as counts:
        for i in range(1, 4):
            step.step([kit.batch(i)])
    assert counts == {}, counts
    assert len(step._pending) == 3 and step.state.step == 4
    with count_reads(monkeypatch, step.optimizer) as counts:
        step.flush()
    assert counts == {"tolist": 1}, counts  # three steps' losses and checks in one transfer
    assert step.state.skipped_steps == 0 and step.taken_steps() == 4


def test_sync_free_reads_back_every_flush_every_steps(kit, monkeypatch, count_reads):
    monkeypatch.setattr(step_module, "FLUSH_EVERY", 2)
    step = kit.make_step(fused=True, sync_free=True)
    step.step([kit.batch(0)])
    with count_reads(monkeypatch, step.optimizer) as counts:
        for i in range(1, 5):
            step.step([kit.batch(i)])
    assert counts == {"tolist": 2}, counts and not step._pending


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_sync_free_gives_the_synced_weights(kit, optimizer):
    torch.manual_seed(0)  # the kit's B init draws from the global generator: both steps start alike
    synced = kit.make_step(optimizer=optimizer)
    torch.manual_seed(0)
    free = kit.make_step(optimizer=optimizer, fused=True, sync_free=True)
    assert all(torch.equal(a, b) for a, b in zip(synced.phi, free.phi))
    assert not synced.sync_free and free.sync_free
    for i in range(6):
        synced.step([kit.batch(i)])
        free.step([kit.batch(i)])
    free.flush()
    assert len(free.phi) >= 10
    exact = [torch.equal(a, b) for a, b in zip(synced.phi, free.phi)]
    for a, b in zip(synced.phi, free.phi):  # the fused kernels differ from the default ones by float rounding
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    if optimizer == "sgd":  # measured: fused SGD matches every matrix bit for bit, a bias vector to 1e-9
        assert sum(exact) >= len(exact) - 2, exact
    torch.manual_seed(0)
    assert any(not torch.equal(a, b) for a, b in zip(_weights(kit.make_step()), free.phi))  # they did train


def test_a_non_finite_step_is_skipped_on_the_device(kit):
    step = kit.make_step(fused=True, sync_free=True)
    lines: list[str] = []
    step.log.info = lines.append
    for i in range(2):
        step.step([kit.batch(i)])
    before = _weights(step)
    momentum = [step.optimizer.state[p]["momentum_buffer"].clone() for p in step.phi]
    ce = step.criterion
    step.criterion = lambda out, y: ce(out, y) * float("nan")
    step.step([kit.batch(2)])
    assert step._pending and step.state.skipped_steps == 0  # not known yet: nothing was read
    assert all(torch.equal(a, p) for a, p in zip(before, step.phi))  # the kernel skipped the update
    assert all(torch.equal(m, step.optimizer.state[p]["momentum_buffer"]) for m, p in zip(momentum, step.phi))
    step.criterion = ce
    step.step([kit.batch(3)])
    assert any(not torch.equal(a, p) for a, p in zip(before, step.phi))  # the next good step is taken
    step.flush()
    assert step.state.skipped_steps == 1 and step.taken_steps() == 3
    assert lines == ["step 3: non-finite loss, step skipped on the device"]


def test_the_first_step_and_meta_steps_stay_synced(kit, monkeypatch):
    step = kit.make_step(fused=True, sync_free=True, hypergrad="first_order", interval=2)
    assert not guard.skips_on_device(step.optimizer, step.phi)  # no state yet: a skipped first fused step
    val = kit.val_stream()                                         # would leave its momentum uninitialised
    step.step([kit.batch(0)], val)
    assert not step._pending and guard.skips_on_device(step.optimizer, step.phi)
    step.step([kit.batch(1)], val)  # a meta step (step 2): synced, as before
    assert not step._pending and step.meta.state.steps == 1
    step.step([kit.batch(2)], val)
    assert len(step._pending) == 1


def test_sync_free_is_off_on_cpu_by_default_and_refused_where_every_step_reads(kit):
    assert not kit.make_step(fused=True).sync_free
    assert guard.resolve_sync_free(None, torch.device("cuda")) and not guard.resolve_sync_free(None, torch.device("cpu"))
    with pytest.raises(ConfigError, match="meta.mode=stepsize"):
        RunConfig.load(None, ["train.sync_free=true", "meta.mode=stepsize"])
    with pytest.raises(ConfigError, match="train.precision=fp16"):
        RunConfig.load(None, ["train.sync_free=true", "train.precision=fp16", "meta.enabled=false"])


@pytest.mark.slow
def test_a_sync_free_run_gives_the_synced_run(tmp_path, tiny_run, monkeypatch):
    """The whole trainer (MetaPEFT γ, meta steps between sync-free steps): the same run up to float rounding."""
    over = tiny_run + ["meta.enabled=true", "meta.interval=3", "data.max_per_class=12"]
    calls = {"false": 0, "true": 0}
    original = step_module.TrainStep._sync_free_update
    runs = []
    for v in ("false", "true"):
        def counted(self, *a, _v=v, **k):
            calls[_v] += 1
            return original(self, *a, **k)

        monkeypatch.setattr(step_module.TrainStep, "_sync_free_update", counted)
        runs.append(Trainer(RunConfig.load(None, over + [f"train.sync_free={v}"]), tmp_path / v, quiet=True).run())
    assert calls["false"] == 0 and calls["true"] >= 4, calls  # the sync-free path did run
    m = [json.loads((r.out_dir / "metrics.json").read_text()) for r in runs]
    for k in ("overall", "balanced", "few", "per_class"):
        assert m[0][k] == m[1][k], k
    h = [list(csv.DictReader((r.out_dir / "history.csv").open())) for r in runs]
    assert len(h[0]) == len(h[1]) == 2
    for a, b in zip(*h):
        assert a["step"] == b["step"] and a["lr"] == b["lr"]
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-5)
    g = [json.loads((r.out_dir / "gamma.json").read_text()) for r in runs]
    assert g[0]["gamma"].keys() == g[1]["gamma"].keys()
    ga, gb = (torch.tensor(list(x["gamma"].values())) for x in g)
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)
    assert not torch.equal(ga, torch.ones_like(ga))  # γ did move: the comparison can fail
