"""Mixed precision for every forward of a run: inner steps, meta steps and evaluation.

``train.precision``: ``fp32`` | ``bf16`` | ``fp16`` (null: bf16 on a CUDA GPU that supports it, fp32
elsewhere; CPUs without AMX run bf16 slower than fp32, so the CPU default stays fp32). The legacy
``train.bf16: true`` means ``bf16``. Autocast only changes the compute dtype of matmuls and
convolutions; what stays fp32, and why:

* the weights φ and γ and their optimizer state (an fp16/bf16 update of 1e-4 · w would round to 0);
* losses and softmax (autocast runs ``log_softmax`` / ``cross_entropy`` in fp32), so the outer
  loss of a meta step and the logit adjustment keep their precision;
* gradients of φ and γ (autograd returns them in the leaf's dtype, fp32), so the look-ahead
  φ' = φ − η∇φ of ``unrolled`` subtracts in fp32;
* the class-mean head init (one pass; its means feed a normalised classifier).

fp16 has a :class:`torch.amp.GradScaler`: the inner loss is scaled before backward, gradients are
unscaled before the clip and the finiteness check, and an overflow skips the step and lowers the
scale. A first-order meta step scales its outer loss by the same factor and unscales the γ
hypergradient, so small hypergradients do not underflow; a second-order look-ahead differentiates the
scaled train gradient (unscaled on the device) and leaves its outer loss unscaled (both scales together
overflow fp16). A non-finite hypergradient skips the meta step, as in fp32.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str | None, bf16: bool, device: torch.device) -> str:
    """The precision a run uses: the config's, else legacy ``bf16``, else the device's default."""
    if precision is not None:
        return precision
    if bf16:
        return "bf16"
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def enable_tf32(device: torch.device, tf32: bool | None) -> bool:
    """TF32 matmuls/convolutions on CUDA unless ``train.tf32=false`` (Ampere+: ~free, 10-bit mantissa
    products with fp32 accumulation, what timm and PyTorch recipes use). Nothing changes on a CPU."""
    on = device.type == "cuda" and tf32 is not False
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
    return on


class Precision:
    """Autocast context, and for fp16 the loss scaler; ``fp32`` makes every method a no-op."""

    def __init__(self, name: str = "fp32", device: torch.device | str = "cpu") -> None:
        if name not in ("fp32", *DTYPES):
            raise ValueError(f"precision must be fp32 | bf16 | fp16, got {name!r}")
        self.name = name
        self.device_type = torch.device(device).type
        self.dtype = DTYPES.get(name)
        self.scaler = torch.amp.GradScaler(self.device_type) if name == "fp16" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            yield

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to backward through (× the loss scale in fp16; no host sync)."""
        return loss if self.scaler is None else self.scaler.scale(loss)

    def unscale_grads(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """Divide gradients of a :meth:`scale` d loss by the scale (differentiably: the look-ahead keeps its graph)."""
        if self.scaler is None:
            return grads
        inv = 1.0 / self.scaler._scale  # a device tensor: no host sync
        return [g * inv for g in grads]

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale φ's gradients in place before the clip (fp16 only)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def update(self) -> None:
        """After the step (taken or skipped): grow or shrink the fp16 loss scale (on the device)."""
        if self.scaler is not None and self.scaler._per_optimizer_states:
            found = [v for s in self.scaler._per_optimizer_states.values() for v in s["found_inf_per_device"].values()]
            if found:
                self.scaler.update()
            else:
                self.scaler._per_optimizer_states.clear()

    def discard(self) -> None:
        """A step dropped before its update (a non-finite loss): forget its unscale record, keep the scale."""
        if self.scaler is not None:
            self.scaler._per_optimizer_states.clear()

    def loss_scale(self) -> float:
        """The current loss scale as a number (meta steps, which sync anyway); 1 without a scaler."""
        return 1.0 if self.scaler is None else float(self.scaler.get_scale())

    def state_dict(self) -> dict:
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
