"""Host syncs of one step, counted: an ordinary step reads the device once, whatever the number of
trainable tensors; a meta step a few times, not once per γ; no weight copy in an ordinary step.

On a GPU every read of a device value by Python (``item``, ``float``, ``bool``, ``tolist``, ``.cpu()``)
waits for the queue to drain. The counter wraps those methods of ``torch.Tensor``; on CUDA the same
is checked with ``torch.cuda.set_sync_debug_mode``. The counter is conftest.py's ``count_reads``.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from metapeft.train import guard

@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_an_ordinary_step_reads_the_device_once(kit, monkeypatch, count_reads, optimizer):
    step = kit.make_step(optimizer=optimizer)  # no meta learner: every step is ordinary
    n_phi = len(step.phi)
    assert n_phi >= 10  # many tensors: one read per tensor would show
    step.step([kit.batch(0)])  # the first step creates the optimizer state
    monkeypatch.setattr(guard, "checked_step", lambda *a: pytest.fail("an ordinary step copied the weights"))
    with count_reads(monkeypatch, step.optimizer) as counts:
        for i in range(1, 4):
            step.step([kit.batch(i)])
    assert step.state.step == 4 and step.state.skipped_steps == 0
    assert counts == {"tolist": 3}, counts  # guard.probe: losses, grad norm and bounds in one transfer


def test_grad_accum_still_reads_once(kit, monkeypatch, count_reads):
    step = kit.make_step(grad_accum=2, batch_size=8)
    with count_reads(monkeypatch) as counts:
        step.step([kit.batch(0), kit.batch(1)])
    assert counts == {"tolist": 1}, counts


@pytest.mark.parametrize("hypergrad", ["first_order", "unrolled"])
def test_a_meta_step_reads_a_few_times_not_once_per_gamma(kit, monkeypatch, count_reads, hypergrad):
    step = kit.make_step(hypergrad=hypergrad, interval=1)
    assert len(step.meta.gammas) == 4
    val = kit.val_stream()
    step.step([kit.batch(0)], val)
    with count_reads(monkeypatch, step.meta.optimizer) as counts:
        step.step([kit.batch(1)], val)
    assert step.meta.state.steps == 2 and step.meta.state.skipped == 0
    # The loss check, the hypergradient norm + val loss, γ after the update (+ finiteness), the step probe.
    assert counts == {"tolist": 4}, counts
    assert step.meta.state.trace[-1]["gamma"] == step.meta.gamma_values()


def test_a_diverging_update_is_rolled_back(kit):
    """lr 1e30: outside the bounds where an update cannot overflow, so the copy-and-check path runs and
    restores the weights (what the old guard did on every step)."""
    step = kit.make_step()
    for g in step.optimizer.param_groups:
        g["lr"], g["momentum"] = 1e30, 0.0
    ce = step.criterion
    step.criterion = lambda out, y: ce(out, y) * 1e10  # gradients ~1e9: lr × grad overflows float32
    before = [p.detach().clone() for p in step.phi]
    step.scheduler.lr_lambdas[0] = lambda s: 1.0
    step.step([kit.batch(0)])
    assert step.state.skipped_steps == 1
    assert all(torch.equal(a, p) for a, p in zip(before, step.phi))


def test_update_is_safe_bounds():
    p = [torch.nn.Parameter(torch.ones(3))]
    sgd = torch.optim.SGD(p, lr=0.1)
    assert guard.update_is_safe([0.5, 1.0, 1.0, 0.0], sgd, p)
    assert not guard.update_is_safe([0.5, float("nan"), 1.0, 0.0], sgd, p)
    assert not guard.update_is_safe([0.5, 1.0, 1e20, 0.0], sgd, p)   # huge weights
    assert not guard.update_is_safe([0.5, 1.0, 1.0, 1e20], sgd, p)   # huge momentum
    sgd.param_groups[0]["lr"] = 1e7
    assert not guard.update_is_safe([0.5, 1.0, 1.0, 0.0], sgd, p)    # huge lr
    half = [torch.nn.Parameter(torch.ones(3, dtype=torch.float16))]
    assert not guard.update_is_safe([0.5, 1.0, 1.0, 0.0], torch.optim.SGD(half, lr=0.1), half)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the CPU counter above covers the logic)")
def test_cuda_sync_debug_mode_sees_one_sync_per_ordinary_step(kit):
    step = kit.make_step(device="cuda")
    step.step([kit.batch(0, device="cuda")])
    batches = [kit.batch(i, device="cuda") for i in range(1, 4)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            for b in batches:
                step.step([b])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [x for x in w if "synchroniz" in str(x.message)]
    assert len(syncs) == 3, [str(x.message) for x in syncs]
