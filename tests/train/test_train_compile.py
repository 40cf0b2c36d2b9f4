"""train.compile and train.channels_last change how a step runs, not what it computes (up to rounding)."""

from __future__ import annotations

import pytest
import torch


def _two_steps(kit, **train):
    step = kit.make_step(hypergrad="first_order", interval=2, **train)
    val = kit.val_stream()
    for i in range(2):  # the second takes a meta step: eager, with γ's gradient on
        step.step([kit.batch(i)], val)
    return step


def test_channels_last_converts_the_patch_conv_and_matches_eager(kit):
    a, b = _two_steps(kit), _two_steps(kit, channels_last=True)
    conv = b.net.patch_embed.proj.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert b.state.step == 2 and b.meta.state.steps == 1
    for p, q in zip(a.phi + a.meta.gammas, b.phi + b.meta.gammas):
        assert torch.allclose(p, q, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_compiled_steps_match_eager(kit):
    a, b = _two_steps(kit), _two_steps(kit, compile=True)
    assert b.forward is not b.net  # ordinary steps ran the compiled module
    assert b.state.step == 2 and b.state.skipped_steps == 0 and b.meta.state.steps == 1
    for p, q in zip(a.phi + a.meta.gammas, b.phi + b.meta.gammas):
        assert torch.allclose(p, q, atol=1e-4, rtol=1e-3)
