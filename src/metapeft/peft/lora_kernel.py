"""One autograd node for a frozen linear layer plus its LoRA branches: ``y = x Wᵀ + b + (x Aᵀ) Bᵀ``.

Why a hand-written backward: built from separate autograd ops, the LoRA part of a layer costs about
40 % of the frozen layer's own forward + backward on a CPU at ViT-S/56 px shapes. The time is not in
the rank-r GEMMs (≈ 0.05 ms each) but around them: an out-of-place ``addmm`` that copies the whole
``[tokens, out]`` output, autograd adding the base and LoRA input gradients as two full tensors, and
skinny GEMMs in slow layouts (``gᵀ h`` is 3× slower than ``(hᵀ g)ᵀ``). This node adds the low-rank
term in place (``y.addmm_``), writes the input gradient in one ``addmm_`` and picks the fast layouts;
the result is the same maths (no approximation), measured in ``bench/throughput.py --layers``.

It stays differentiable twice: when the backward itself is recorded (``create_graph``, the unrolled
meta step), it recomputes ``x Aᵀ`` from the saved inputs and uses only out-of-place ops, so second-order
terms through the activations and A are kept.
"""

from __future__ import annotations

import torch


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast would run a matmul in here (the input's when autocast is off)."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


class FusedLoraLinear(torch.autograd.Function):
    """``y = x Wᵀ + bias + (x Aᵀ) Bᵀ`` with x ``[..., in]``, W ``[out, in]``, A ``[r, in]``, B ``[out, r]``."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b):  # type: ignore[override]
        # Old-style forward(ctx, ...): ~20 µs less per call than setup_context, which only torch.func
        # transforms need (the meta steps use functional_call + autograd.grad, which work with this).
        dtype = _compute_dtype(x)
        x2 = x.reshape(-1, x.shape[-1]).to(dtype)
        w, a, b = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype)
        h = x2 @ a.t()
        y = torch.addmm(bias.to(dtype), x2, w.t()) if bias is not None else x2 @ w.t()
        y.addmm_(h, b.t())
        ctx.has_bias = bias is not None
        ctx.x_shape = x.shape
        ctx.save_for_backward(x, weight, lora_a, lora_b, h)
        return y.view(*x.shape[:-1], w.shape[0])

    @staticmethod
    def backward(ctx, grad_y):  # type: ignore[override]
        x, weight, lora_a, lora_b, h = ctx.saved_tensors
        need_x, need_w, need_bias, need_a, need_b = ctx.needs_input_grad
        dtype = grad_y.dtype
        g = grad_y.reshape(-1, grad_y.shape[-1])
        x2 = x.reshape(-1, x.shape[-1]).to(dtype)
        w, a, b = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype)
        recorded = torch.is_grad_enabled()  # create_graph: keep every op differentiable and out-of-place
        if recorded:
            h = x2 @ a.t()
        grad_x = grad_w = grad_bias = grad_a = grad_b = None
        grad_h = g @ b if (need_x or need_a) else None
        if need_x:
            base = g @ w
            grad_x = (torch.addmm(base, grad_h, a) if recorded else base.addmm_(grad_h, a)).view(ctx.x_shape)
        if need_w:
            grad_w = (x2.t() @ g).t()
        if ctx.has_bias and need_bias:
            grad_bias = g.sum(0)
        if need_a:
            grad_a = grad_h.t() @ x2
        if need_b:
            grad_b = (h.t() @ g).t()
        return grad_x, grad_w, grad_bias, grad_a, grad_b


def fused_lora_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
    """Frozen-or-not linear plus one low-rank term, as one autograd node (see the module docstring)."""
    return FusedLoraLinear.apply(x, weight, bias, lora_a, lora_b)
