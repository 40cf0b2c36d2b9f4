"""Data-parallel training with torch.distributed (``torchrun``); a no-op in a single process.

Every rank draws the same global batch (same seed), augments it, and keeps its contiguous
shard, so a run on N ranks sees exactly the batches of a single-process run with the same
global batch size. Gradients of φ are averaged across ranks before the optimizer step, and
so are γ's hypergradients, so every rank holds the same φ and γ at all times.

Exactness: plain steps equal the single-process run up to float reduction order. Meta steps
shard the val batch; averaging per-rank hypergradients is exact for ``first_order`` with a
mean-decomposable outer loss (``ce``, ``la``). With ``balanced_ce`` (per-class means of a shard)
or ``unrolled`` (each rank looks ahead with its local train gradient) it is an average of
per-shard estimates, not the full-batch value.

Devices: every collective gets tensors on the device of its inputs (the model's), never a host
tensor: NCCL handles CUDA tensors only, and a host tensor would also cost a sync. Scalars travel
batched with the gradients (one flat all-reduce per step, see ``TrainStep``), not one call each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device_name: str) -> tuple["DistEnv", str]:
        """Join the process group when launched by torchrun; returns the env and the device to use."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(), device_name
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        if use_cuda:
            torch.cuda.set_device(local)
            device_name = f"cuda:{local}"
        elif device_name == "auto":
            device_name = "cpu"
        return cls(rank, world, local), device_name

    def shard(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of a global batch."""
        if not self.enabled:
            return t
        if t.shape[0] % self.world:
            raise ValueError(f"global batch of {t.shape[0]} does not split over {self.world} ranks")
        return t.chunk(self.world)[self.rank]

    def mean_(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Average tensors over ranks in place (one flat all-reduce)."""
        if not self.enabled or not tensors:
            return tensors
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world
        i = 0
        for t in tensors:
            t.copy_(flat[i:i + t.numel()].view_as(t))
            i += t.numel()
        return tensors

    def mean_scalars(self, values: list[torch.Tensor]) -> torch.Tensor:
        """The rank mean of 0-d tensors as one 1-d tensor, on their device (one all-reduce, no host sync)."""
        flat = torch.stack([v.detach().reshape(()) for v in values])
        return self.mean_([flat])[0]

    def gather_cat(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate a tensor from all ranks in rank order (sizes along dim 0 may differ).

        Two tensor collectives on ``t``'s device (the sizes, then the padded parts), so NCCL works.
        """
        if not self.enabled:
            return t
        size = torch.tensor([t.shape[0]], device=t.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        dist.all_gather(sizes, size)
        counts = [int(s) for s in sizes]  # evaluation only: one transfer per gather is fine
        padded = t.new_zeros((max(counts), *t.shape[1:]))
        padded[:t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:n] for p, n in zip(parts, counts)])

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
