"""Every collective gets tensors on the parameters' device (NCCL takes CUDA tensors only), batched.

The fake process group below records each tensor handed to a collective; the step-level test runs a real
``TrainStep`` with a 2-rank ``DistEnv`` on it. On CPU the device check alone cannot tell CPU from CUDA, so
the ``DistEnv`` methods are also driven with tensors on the ``meta`` device, where a collective given a host
tensor (the old ``mean_scalar``'s float64 CPU scalar) is caught.
"""

from __future__ import annotations

import pytest
import torch

from metapeft.train import distributed
from metapeft.train.distributed import DistEnv


class FakeGroup:
    """Stands in for torch.distributed with two identical ranks: a sum is 2×, a gather repeats."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, torch.device]] = []

    def all_reduce(self, t, *a, **k):
        self.seen.append(("all_reduce", t.device))
        t.mul_(2)

    def all_gather(self, parts, t, *a, **k):
        self.seen.append(("all_gather", t.device))
        for p in parts:
            p.copy_(t)

    def all_gather_object(self, *a, **k):
        raise AssertionError("all_gather_object pickles through the host: not on the device")

    def barrier(self, *a, **k):
        pass


@pytest.fixture
def group(monkeypatch) -> FakeGroup:
    g = FakeGroup()
    for name in ("all_reduce", "all_gather", "all_gather_object", "barrier"):
        monkeypatch.setattr(distributed.dist, name, getattr(g, name))
    return g


def test_dist_env_collectives_stay_on_the_inputs_device(group):
    env = DistEnv(rank=0, world=2)
    dev = torch.device("meta")  # not the host: a collective on a CPU tensor shows up as 'cpu'
    env.mean_([torch.ones(3, device=dev), torch.ones(2, 2, device=dev)])
    env.mean_scalars([torch.ones((), device=dev), torch.zeros((), device=dev)])
    assert group.seen and all(d == dev for _, d in group.seen), group.seen
    assert [n for n, _ in group.seen] == ["all_reduce", "all_reduce"]  # one flat call each, not one per tensor


def test_mean_scalars_and_gather_cat_values(group):
    env = DistEnv(rank=0, world=2)
    m = env.mean_scalars([torch.tensor(1.5), torch.tensor(-2.0)])
    assert m.tolist() == [1.5, -2.0]  # two equal ranks: the mean is the value
    g = env.gather_cat(torch.arange(6.0).view(3, 2))
    assert g.shape == (6, 2) and torch.equal(g[3:], torch.arange(6.0).view(3, 2))


def _devices_of_a_run(kit, group, device: str, hypergrad: str) -> list[tuple[str, torch.device]]:
    step = kit.make_step(hypergrad=hypergrad, interval=2, env=DistEnv(rank=0, world=2), device=device)
    val = kit.val_stream(device)
    for i in range(4):  # steps 2 and 4 take a meta step
        step.step([kit.batch(i, device=device)], val)
    assert step.state.step == 4 and step.state.skipped_steps == 0 and step.meta.state.steps == 2
    return group.seen


@pytest.mark.parametrize("hypergrad", ["first_order", "unrolled"])
def test_train_step_collectives_on_the_parameters_device(kit, group, hypergrad):
    seen = _devices_of_a_run(kit, group, "cpu", hypergrad)
    assert all(d == torch.device("cpu") for _, d in seen)
    # An ordinary step: one all-reduce (gradients and the loss in one flat tensor); a meta step adds the loss
    # check before it and the hypergradient average.
    assert len(seen) == 2 * 1 + 2 * 3, seen


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the CPU tests above cover the logic)")
def test_train_step_collectives_on_cuda(kit, group):
    seen = _devices_of_a_run(kit, group, "cuda", "first_order")
    assert all(d.type == "cuda" for _, d in seen), seen
