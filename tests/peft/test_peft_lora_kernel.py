"""The fused LoRA autograd node: exact first and second derivatives, and autocast like the plain ops."""

import pytest
import torch

from metapeft.peft.lora_kernel import fused_lora_linear


def _inputs(bias: bool, frozen: bool, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)

    def t(*shape, grad=True):
        return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(grad)
    return (t(2, 3, 5), t(6, 5, grad=not frozen), t(6, grad=not frozen) if bias else None, t(4, 5), t(6, 4))


def _reference(x, w, bias, a, b):
    return torch.nn.functional.linear(x, w, bias) + torch.nn.functional.linear(torch.nn.functional.linear(x, a), b)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("frozen", [True, False])
def test_gradients_and_second_derivatives_are_exact(bias, frozen):
    inputs = _inputs(bias, frozen)
    assert torch.autograd.gradcheck(fused_lora_linear, inputs)
    assert torch.autograd.gradgradcheck(fused_lora_linear, inputs)


def test_matches_the_unfused_ops_in_value_and_gradient():
    inputs = _inputs(True, True)
    ours, ref = fused_lora_linear(*inputs), _reference(*inputs)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    wanted = [t for t in inputs if t is not None and t.requires_grad]
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ours, wanted, g), torch.autograd.grad(ref, wanted, g)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_runs_in_the_autocast_dtype_and_returns_grads_in_the_parameters_dtype():
    x, w, bias, a, b = (t.float().detach().requires_grad_(t.requires_grad) if t is not None else None
                        for t in _inputs(True, True))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, ref = fused_lora_linear(x, w, bias, a, b), _reference(x, w, bias, a, b)
    assert ours.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(ours, ref, rtol=2e-2, atol=2e-2)
    ga, gb = torch.autograd.grad(ours.float().sum(), [a, b])
    ra, rb = torch.autograd.grad(ref.float().sum(), [a, b])
    assert ga.dtype == gb.dtype == torch.float32
    torch.testing.assert_close(ga, ra, rtol=3e-2, atol=3e-2)
    torch.testing.assert_close(gb, rb, rtol=3e-2, atol=3e-2)
