"""The ``stepsize`` meta mode: step groups, scale invariance, the LR range test, the hypergradient, the guard."""

from __future__ import annotations

import copy
import io
import json
import math

import pytest
import torch

import metapeft as mp
from metapeft.config import MetaConfig, TrainConfig
from metapeft.meta.step_groups import build_step_groups
from metapeft.meta.stepsize import StepSizeLearner, StepSizeSettings, stepsize_summary
from metapeft.train.optim import build_optimizer, head_param_groups


def lora_vit(make_vit, alpha=None, rank=2):
    model = make_vit(num_classes=4)
    return mp.apply_peft(model, mp.PeftConfig(method="lora", positions=["q", "v", "mlp1"], rank=rank, alpha=alpha))


def trainable(model):
    return {n: p for n, p in model.named_parameters() if p.requires_grad and "modulator" not in n}


def batch(seed=0, n=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 4, (n,), generator=g)


def learner(model, cfg: StepSizeSettings, lr=0.05, **kw):
    groups = build_step_groups(model, trainable(model), **kw)
    sizer = StepSizeLearner(model, groups, cfg, base_lr=lr, optimizer_name="sgd",
                            outer_loss=torch.nn.functional.cross_entropy)
    opt = build_optimizer(sizer.optimizer_groups(), TrainConfig(lr=lr, weight_decay=0.0))
    return sizer, opt


def test_kind_groups_cover_head_input_and_output_matrices(make_vit):
    model = lora_vit(make_vit, alpha=8, rank=2)   # scale α/r = 4
    groups = build_step_groups(model, trainable(model))
    names = {g.name.split("@")[0] for g in groups}
    assert names == {"head", "in", "out"}
    out = [g for g in groups if g.name.startswith("out")]
    assert len(out) == 1 and out[0].base_factor == pytest.approx(1 / 16)
    n_params = sum(len(g.params) for g in groups)
    assert n_params == len(trainable(model))
    by_block = build_step_groups(model, trainable(model), by="block")
    assert {g.name.split("@")[0] for g in by_block} >= {"head", "block0.in", "block1.out"}


@pytest.mark.parametrize("invariant", [True, False])
def test_scale_invariance_makes_alpha_irrelevant(make_vit, invariant):
    """With the output matrix's lr ÷ s², LoRA at α/r = 1 and α/r = 4 follow the same trajectory."""
    logits = []
    x, y = batch()
    for alpha in (2, 8):
        model = lora_vit(make_vit, alpha=alpha)
        model.train()
        groups = build_step_groups(model, trainable(model), scale_invariant=invariant)
        opt = build_optimizer([{"params": g.params, "lr": 0.05 * g.base_factor} for g in groups],
                              TrainConfig(lr=0.05, weight_decay=0.0))
        for _ in range(4):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        with torch.no_grad():
            logits.append(model.eval()(x))
    same = torch.allclose(logits[0], logits[1], atol=1e-4)
    assert same == invariant, (logits[0] - logits[1]).abs().max()


def test_head_lr_mult_gives_the_head_its_own_group(make_vit):
    model = lora_vit(make_vit)
    params = list(trainable(model).values())
    assert head_param_groups(params, model.get_classifier(), TrainConfig(lr=0.01)) is params
    groups = head_param_groups(params, model.get_classifier(), TrainConfig(lr=0.01, head_lr_mult=3.0))
    assert [g["lr"] for g in groups] == [0.01, pytest.approx(0.03)]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.get_classifier().parameters()}


def test_range_test_finds_the_cliff_and_restores_weights_trained_below_it(make_vit):
    cfg = StepSizeSettings(calib_steps=10, calib_range=(1e-3, 1.0), calib_safety=4.0)
    model = lora_vit(make_vit)
    sizer, opt = learner(model, cfg)
    losses = [2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4, 8.0]   # the last update (at some lr) made the loss explode
    before, used = [], []
    for step, loss in enumerate(losses):
        params = [p.detach().clone() for p in sizer.params]
        msg = sizer.before_update(loss, opt, 1.0, step)
        if msg is not None:
            break
        before.append(params)
        used.append(opt.param_groups[0]["lr"] / sizer.groups[0].base_factor)
        for p in sizer.params:                        # any update: it is the lr bookkeeping under test
            p.grad = torch.ones_like(p) * 0.01
        opt.step()
    assert msg is not None and "LR range test" in msg
    ratio = 1000 ** (1 / 9)
    assert used == pytest.approx([1e-3 * ratio ** k for k in range(len(used))])
    s = sizer.state
    assert not s.calibrating and s.lr_cliff == pytest.approx(used[-1])
    assert s.rho == pytest.approx(used[-1] / 4)
    j = max(k for k, lr in enumerate(used) if lr <= s.rho * (1 + 1e-9))
    assert all(torch.equal(p, q) for p, q in zip(sizer.params, before[j]))
    assert all(torch.equal(opt.state[p]["momentum_buffer"], sizer._anchor.opt_state[i]["momentum_buffer"])
               for i, p in enumerate(sizer.params) if p in opt.state)


@pytest.mark.parametrize("probe", [True, False])
def test_range_test_watches_the_fixed_probe_not_the_noisy_train_loss(make_vit, probe):
    """Train-loss jumps that are batch noise (the weights did not move) end the range test only when
    no probe is set; with a probe, a real rise of the probe's loss ends it."""
    model = lora_vit(make_vit)
    sizer, opt = learner(model, StepSizeSettings(calib_steps=10, calib_range=(1e-3, 1.0)))
    if probe:
        sizer.set_probe(*batch(3, n=16))
    ended = [sizer.before_update(loss, opt, 1.0, step) is not None for step, loss in enumerate([2.0, 1.5, 9.0])]
    assert ended == [False, False, not probe]
    if probe:
        with torch.no_grad():
            model.get_classifier().weight.mul_(-50.0)   # the probe's loss really rises
        msg = sizer.before_update(2.0, opt, 1.0, 3)
        assert msg is not None and "LR range test" in msg
        assert sizer.state.calib_trace[-1]["watched"] > 1.3 * sizer.state.probe_best


def test_calib_rise_sets_how_far_the_watched_loss_may_rise_before_the_test_ends(make_vit):
    """meta.calib_rise: the same slowly rising losses end a 0.1 test earlier, at a lower cliff, than a 0.3 one;
    each ends at the first reading past (1 + rise) × the minimum so far."""
    losses = [2.0, 1.8, 1.6, 1.6, 1.8, 2.0, 2.2, 2.6, 3.0, 4.0, 8.0]
    ended = {}
    for rise in (0.1, 0.3):
        sizer, opt = learner(lora_vit(make_vit), StepSizeSettings(calib_steps=12, calib_range=(1e-3, 1.0),
                                                                  calib_rise=rise))
        for step, loss in enumerate(losses):
            sizer.before_update(loss, opt, 1.0, step)
            if not sizer.state.calibrating:
                break
            for p in sizer.params:
                p.grad = torch.ones_like(p) * 0.01
            opt.step()
        watched = [t["watched"] for t in sizer.state.calib_trace]
        assert not sizer.state.calibrating
        assert watched[-1] > (1 + rise) * min(watched[:-1])
        assert all(w <= (1 + rise) * min(watched[:k + 1]) for k, w in enumerate(watched[:-1]))
        ended[rise] = (len(watched), sizer.state.lr_cliff)
    assert ended[0.1][0] < ended[0.3][0] and ended[0.1][1] < ended[0.3][1]


def test_range_test_without_a_cliff_ends_at_hi_over_safety(make_vit):
    cfg = StepSizeSettings(calib_steps=4, calib_range=(1e-2, 1.0), calib_safety=2.0)
    sizer, opt = learner(lora_vit(make_vit), cfg)
    for step in range(5):
        assert sizer.before_update(2.0 - 0.1 * step, opt, 1.0, step) is None
    assert not sizer.state.calibrating and sizer.state.rho == pytest.approx(0.5)


def test_a_non_finite_first_loss_ends_the_range_test_without_a_snapshot(make_vit):
    sizer, opt = learner(lora_vit(make_vit), StepSizeSettings(calib_range=(1e-3, 1.0)))
    assert sizer.before_update(float("nan"), opt, 1.0, 0) is None   # nothing restored, the lr is set
    assert not sizer.state.calibrating and sizer.state.rho == pytest.approx(1e-3 / 4)
    assert opt.param_groups[0]["lr"] > 0


def ramp_to_the_cliff(sizer, opt):
    """Range-test steps with falling losses, then a loss rise that ends the test (the last update is undone)."""
    for step, loss in enumerate([2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4, 8.0]):
        if sizer.before_update(loss, opt, 1.0, step) is not None:
            return
        for p in sizer.params:
            p.grad = torch.ones_like(p) * 0.01
        opt.step()
    raise AssertionError("the range test did not end")


def test_restart_after_the_range_test_puts_the_initial_weights_back(make_vit):
    """meta.calib_restart: θ₀ and an empty optimizer state, ρ kept, the watch and the guard's memory fresh."""
    cfg = StepSizeSettings(calib_steps=10, calib_range=(1e-3, 1.0), restart="initial")
    model = lora_vit(make_vit)
    sizer, opt = learner(model, cfg)
    theta0 = [p.detach().clone() for p in sizer.params]
    with pytest.raises(RuntimeError, match="ended"):
        sizer.restart(opt)                               # nothing to restart from mid-test
    ramp_to_the_cliff(sizer, opt)
    rho = sizer.state.rho
    assert not sizer.state.calibrating and any(not torch.equal(p, q) for p, q in zip(sizer.params, theta0))
    sizer.restart(opt)
    assert all(torch.equal(p, q) for p, q in zip(sizer.params, theta0)) and not opt.state
    assert sizer.state.rho == rho and sizer.state.watch.n == 0 and sizer.state.lr_cliff is not None
    assert all(torch.equal(p, q) for p, q in zip(sizer._anchor.params, theta0))


def test_a_warm_restart_keeps_the_weights_and_momentum_the_test_restored(make_vit):
    cfg = StepSizeSettings(calib_steps=10, calib_range=(1e-3, 1.0), restart="warm")
    sizer, opt = learner(lora_vit(make_vit), cfg)
    theta0 = [p.detach().clone() for p in sizer.params]
    ramp_to_the_cliff(sizer, opt)
    restored = [p.detach().clone() for p in sizer.params]
    momentum = {i: opt.state[p]["momentum_buffer"].clone() for i, p in enumerate(sizer.params) if p in opt.state}
    assert momentum and any(not torch.equal(p, q) for p, q in zip(restored, theta0))
    for p in sizer.params:                               # whatever happened since, the restart goes back
        p.data.add_(1.0)
    sizer.restart(opt)
    assert all(torch.equal(p, q) for p, q in zip(sizer.params, restored))
    assert all(torch.equal(opt.state[sizer.params[i]]["momentum_buffer"], m) for i, m in momentum.items())


def test_restart_after_a_test_that_ended_before_any_update_keeps_theta0(make_vit):
    sizer, opt = learner(lora_vit(make_vit), StepSizeSettings(calib_range=(1e-3, 1.0), restart="initial"))
    theta0 = [p.detach().clone() for p in sizer.params]
    assert sizer.before_update(float("nan"), opt, 1.0, 0) is None   # the test ends at once, no snapshot
    sizer.restart(opt)
    assert all(torch.equal(p, q) for p, q in zip(sizer.params, theta0))


@pytest.mark.parametrize("direction,grows", [(-1.0, True), (1.0, False)])
def test_hypergradient_grows_a_step_size_that_undershoots_and_shrinks_one_that_overshoots(make_vit, direction,
                                                                                           grows):
    """Δφ along −∇L_val (more of the same would help) → larger step; along +∇L_val → smaller."""
    cfg = StepSizeSettings(calibrate=False, lr=0.25, step_relative=False, learn_split=True)
    model = lora_vit(make_vit)
    with torch.no_grad():   # non-zero B so every group has a gradient
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    sizer, opt = learner(model, cfg)
    x, y = batch(1)
    assert sizer.step(x, y, opt).skipped          # the first meta step only records the anchor
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, sizer.params)
    with torch.no_grad():
        for p, g in zip(sizer.params, grads):
            p.add_(direction * 1e-3 * g)
    res = sizer.step(x, y, opt)
    assert not res.skipped
    mult = sizer.multipliers()
    for name in ("head", "in", "out"):
        assert (mult[name] > 1) == grows, mult
        assert math.exp(-0.25) - 1e-9 <= mult[name] <= math.exp(0.25) + 1e-9


def test_relative_mode_learns_only_the_split_between_groups(make_vit):
    """step_relative: the head moved along −∇L_val (grow), the LoRA matrices along +∇L_val (shrink); the
    mean log multiplier stays at 0, so the range test's level is kept."""
    model = lora_vit(make_vit)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    sizer, opt = learner(model, StepSizeSettings(calibrate=False, lr=0.25, learn_split=True))
    x, y = batch(1)
    sizer.step(x, y, opt)
    head = {id(p) for p in model.get_classifier().parameters()}
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), sizer.params)
    with torch.no_grad():
        for p, g in zip(sizer.params, grads):
            p.add_((-1.0 if id(p) in head else 1.0) * 1e-3 * g)
    sizer.step(x, y, opt)
    mult = sizer.multipliers()
    assert mult["head"] > 1 > max(mult["in"], mult["out"])
    assert sum(math.log(v) for v in mult.values()) == pytest.approx(0.0, abs=1e-9)


def test_without_learn_split_the_multipliers_stay_and_only_the_snapshot_moves(make_vit):
    """meta.learn_split=false: no outer backward, every multiplier stays 1; the guard's snapshot still
    follows the run (a restore must not go back to the start of training)."""
    model = lora_vit(make_vit)
    sizer, opt = learner(model, StepSizeSettings(calibrate=False, learn_split=False))
    x, y = batch(1)
    for k in range(2):
        with torch.no_grad():
            for p in sizer.params:
                p.add_(0.01)
        res = sizer.step(x, y, opt)
        assert res.skipped and "learn_split" in res.reason
        assert all(torch.equal(a, p) for a, p in zip(sizer._anchor.params, sizer.params))
    assert sizer.multipliers() == {"head": 1.0, "in": 1.0, "out": 1.0}


def test_guard_restores_the_last_snapshot_and_halves_step_sizes(make_vit):
    cfg = StepSizeSettings(calibrate=False, guard_spike=2.0)
    model = lora_vit(make_vit)
    sizer, opt = learner(model, cfg)
    x, y = batch(2)
    sizer.step(x, y, opt)                         # anchor
    anchor = [p.detach().clone() for p in sizer.params]
    for step, loss in enumerate([1.0, 1.0, 1.0]):
        assert sizer.before_update(loss, opt, 1.0, step) is None
        with torch.no_grad():
            for p in sizer.params:
                p.add_(0.01)
    msg = sizer.before_update(10.0, opt, 1.0, 3)
    assert msg is not None and "spiked" in msg
    assert all(torch.equal(p, a) for p, a in zip(sizer.params, anchor))
    assert all(v == pytest.approx(0.5) for v in sizer.multipliers().values())


def test_a_guard_restore_puts_tracked_gamma_back_too(make_vit):
    """meta.mode=gamma with meta.calibrate: γ learns outside φ's optimizer; a restore must undo it as well."""
    model = lora_vit(make_vit)
    sizer, opt = learner(model, StepSizeSettings(calibrate=False, guard_spike=2.0))
    gammas = [p for n, p in model.named_parameters() if "modulator" in n]
    assert gammas
    sizer.track(gammas)
    sizer.keep_snapshot(opt)                     # anchor: γ = 1
    at_anchor = [g.detach().clone() for g in gammas]
    for step, loss in enumerate([1.0, 1.0, 1.0]):
        assert sizer.before_update(loss, opt, 1.0, step) is None
        with torch.no_grad():
            for g in gammas:
                g.mul_(3.0)                      # γ moved on the trajectory the guard is about to undo
    assert sizer.before_update(10.0, opt, 1.0, 3) is not None
    assert all(torch.equal(g, a) for g, a in zip(gammas, at_anchor))
    assert sizer.report()["mode"] == "gamma+calibrate"


def test_guard_ignores_noise_once_the_loss_is_near_zero(make_vit):
    """A train loss that fell from 3 to 0.05 and then reads 0.3 (batch noise, 6× its minimum) is no spike: it
    stays far below where the run started. Back above the start it is one."""
    sizer, opt = learner(lora_vit(make_vit), StepSizeSettings(calibrate=False, guard_spike=2.0))
    x, y = batch(2)
    sizer.step(x, y, opt)
    losses = [3.0 * 0.7 ** k for k in range(25)] + [0.05] * 10
    for step, loss in enumerate(losses):
        assert sizer.before_update(loss, opt, 1.0, step) is None
    for step in range(3):
        assert sizer.before_update(0.3, opt, 1.0, 35 + step) is None  # the old rule (2 × min) tripped here
    assert sizer.state.guard_restores == 0
    msgs = [sizer.before_update(8.0, opt, 1.0, 40 + step) for step in range(6)]
    assert any(m is not None and "spiked" in m for m in msgs) and sizer.state.guard_restores == 1


def _scripted_probe(sizer, values):
    """The probe guard reads these probe losses in turn (the real probe is a forward on fixed val batches)."""
    it = iter(values)
    sizer.set_probe(*batch(3))
    sizer._probe_loss = lambda: next(it)


def _drift(sizer, k):
    with torch.no_grad():
        for p in sizer.params:
            p.add_(0.01 * k)
    return [p.detach().clone() for p in sizer.params]


def test_probe_guard_goes_back_to_the_best_snapshot_after_a_collapse(make_vit):
    """The probe loss falls (2.0 → 1.5), drifts up a little (1.8: kept as the anchor, not the best), then
    collapses (3.0, 3.2 > 1.3 × 1.5 twice in a row): the run goes back to the 1.5 snapshot, not to the
    damaged newest one."""
    sizer, opt = learner(lora_vit(make_vit), StepSizeSettings(calibrate=False, learn_split=False, guard="probe"))
    _scripted_probe(sizer, [2.0, 1.5, 1.8, 3.0, 3.2])
    seen = []
    for k, step in enumerate([10, 20, 30, 40]):
        seen.append(_drift(sizer, k + 1))
        sizer.keep_snapshot(opt, step)
        assert sizer.message is None          # one reading above the limit (3.0 at step 40) is not enough
    assert all(torch.equal(a, p) for a, p in zip(sizer._anchor.params, seen[3]))
    _drift(sizer, 5)
    sizer.keep_snapshot(opt, 50)
    assert sizer.message is not None and "best-probe" in sizer.message
    assert all(torch.equal(p, b) for p, b in zip(sizer.params, seen[1]))
    assert sizer._anchor is sizer._best and sizer.state.guard_restores == 1
    assert all(v == pytest.approx(0.5) for v in sizer.multipliers().values())
    assert [t["probe"] for t in sizer.report()["guard_trace"]] == [2.0, 1.5, 1.8, 3.0, 3.2]


def test_probe_guard_lets_one_high_reading_pass(make_vit):
    """1.0 → 1.5 (above 1.3 × 1.0) → 1.1: the run recovered by itself, so nothing is restored."""
    sizer, opt = learner(lora_vit(make_vit), StepSizeSettings(calibrate=False, learn_split=False, guard="probe"))
    _scripted_probe(sizer, [1.0, 1.5, 1.1, 1.5])
    for k in range(4):
        _drift(sizer, 1)
        sizer.keep_snapshot(opt, 10 * (k + 1))
        assert sizer.message is None
    assert sizer.state.guard_restores == 0 and sizer.state.guard_high == 1


def test_probe_guard_ignores_small_rises_of_a_near_zero_probe_loss(make_vit):
    """From 3.0 down to 0.1, a reading of 0.4 (4× its best) stays below 1.3 × half the first value."""
    sizer, opt = learner(lora_vit(make_vit), StepSizeSettings(calibrate=False, learn_split=False, guard="probe"))
    _scripted_probe(sizer, [3.0, 0.1, 0.4, 0.4, 2.5, 2.5])
    for k in range(5):
        _drift(sizer, 1)
        sizer.keep_snapshot(opt, 10 * (k + 1))
        assert sizer.message is None
    sizer.keep_snapshot(opt, 60)
    assert sizer.message is not None and sizer.state.guard_restores == 1


def test_loss_guard_option_restores_the_newest_snapshot_even_with_a_probe(make_vit):
    sizer, opt = learner(lora_vit(make_vit), StepSizeSettings(calibrate=False, learn_split=False, guard="loss"))
    _scripted_probe(sizer, [])   # guard=loss never reads it
    _drift(sizer, 1)
    sizer.keep_snapshot(opt, 10)
    newest = _drift(sizer, 1)
    sizer.keep_snapshot(opt, 20)
    assert sizer.state.guard_trace == [] and all(torch.equal(a, p) for a, p in zip(sizer._anchor.params, newest))


def test_a_train_loss_spike_in_probe_mode_restores_the_best_snapshot(make_vit):
    sizer, opt = learner(lora_vit(make_vit), StepSizeSettings(calibrate=False, learn_split=False, guard="probe"))
    _scripted_probe(sizer, [1.0, 1.2])
    best = _drift(sizer, 1)
    sizer.keep_snapshot(opt, 10)
    _drift(sizer, 1)
    sizer.keep_snapshot(opt, 20)          # 1.2: the newest anchor, not the best
    for step, loss in enumerate([1.0, 1.0, 1.0]):
        assert sizer.before_update(loss, opt, 1.0, 21 + step) is None
    msg = sizer.before_update(10.0, opt, 1.0, 24)
    assert msg is not None and "best-probe" in msg
    assert all(torch.equal(p, b) for p, b in zip(sizer.params, best))


def test_state_dict_keeps_the_best_snapshot_apart_from_the_anchor(make_vit):
    cfg = StepSizeSettings(calibrate=False, learn_split=False, guard="probe")
    model = lora_vit(make_vit)
    sizer, opt = learner(model, cfg)
    _scripted_probe(sizer, [1.0, 1.2])
    best = _drift(sizer, 1)
    sizer.keep_snapshot(opt, 10)
    _drift(sizer, 1)
    sizer.keep_snapshot(opt, 20)
    buf = io.BytesIO()
    torch.save(sizer.state_dict(), buf)
    buf.seek(0)
    other, _ = learner(copy.deepcopy(model), cfg)
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert other._best is not other._anchor
    assert all(torch.equal(a, b) for a, b in zip(other._best.params, best))
    assert other.state.guard_best == 1.0 and len(other.state.guard_trace) == 2


def test_state_dict_round_trips_through_a_weights_only_load(make_vit):
    cfg = StepSizeSettings(calib_steps=5)
    model = lora_vit(make_vit)
    sizer, opt = learner(model, cfg)
    for step in range(3):
        sizer.before_update(2.0 - 0.1 * step, opt, 1.0, step)
    buf = io.BytesIO()
    torch.save(sizer.state_dict(), buf)
    buf.seek(0)
    other, _ = learner(copy.deepcopy(model), cfg)
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert other.state_dict()["rho"] == sizer.state_dict()["rho"]
    assert json.dumps(other.report(), default=str) == json.dumps(sizer.report(), default=str)
    text = stepsize_summary(json.loads(json.dumps(sizer.report())))
    assert "learned step sizes" in text and "head" in text and "γ fixed" in text
    assert len(other._ring) == len(sizer._ring) and all(
        torch.equal(a, b) for s1, s2 in zip(other._ring, sizer._ring) for a, b in zip(s1.params, s2.params))


def test_stepsize_config_checks():
    with pytest.raises(ValueError, match="calib_range"):
        MetaConfig(calib_range=[1.0, 0.1])
    with pytest.raises(ValueError, match="guard_spike"):
        MetaConfig(guard_spike=0.5)
    cfg = MetaConfig(mode="stepsize", calib_safety=8, calib_range=[0.01, 1])
    settings = StepSizeSettings.from_config(cfg, interval=5)
    assert settings.calib_safety == 8 and settings.calib_range == (0.01, 1.0) and settings.interval == 5
    assert settings.calib_steps == 20 and settings.calib_probe == 2 and settings.step_relative   # None in the config = the documented default
    assert settings.guard == "probe" and StepSizeSettings.from_config(MetaConfig(guard="loss"), 5).guard == "loss"
    with pytest.raises(ValueError, match="meta.guard"):
        MetaConfig(guard="best")
    with pytest.raises(ValueError, match="meta.mode"):
        MetaConfig(mode="steps")
    with pytest.raises(ValueError, match="head_lr_mult"):
        TrainConfig(head_lr_mult=0)
