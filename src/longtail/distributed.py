"""Data-parallel training on PyTorch's own engine: ``torchrun --nproc_per_node=N -m longtail train ...``.

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE and the rendezvous address; this module turns them
into a process group (gloo on CPU, nccl on CUDA) and offers the few collectives the loop needs.
Without those variables everything here is a no-op, so single-process code pays nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from longtail.errors import LongtailError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str) -> tuple[DistContext, str]:
    """Join the process group torchrun describes; return the context and the device to use.

    On CUDA each process takes GPU ``LOCAL_RANK``. On CPU, each process gets an equal share of the
    cores unless the user set threads, so N processes do not fight over the same cores.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), device_name
    ctx = DistContext(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")),
                      int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if use_cuda else "gloo")
        except (RuntimeError, ValueError) as e:
            raise LongtailError(f"could not join the process group: {str(e).splitlines()[0]}") from None
    if use_cuda:
        torch.cuda.set_device(ctx.local_rank)
        return ctx, f"cuda:{ctx.local_rank}"
    return ctx, "cpu"


def default_threads(ctx: DistContext) -> int | None:
    """Each local process's share of the CPU cores, or None to leave PyTorch's default."""
    if not ctx.enabled or "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, (os.cpu_count() or 1) // ctx.local_world_size)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all ranks (confusion matrices, loss sums, sample counts); identity alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    out = values.to(device=device, dtype=torch.float64 if values.is_floating_point() else torch.int64).clone()
    dist.all_reduce(out)
    return out.to(values.device, values.dtype)


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank: ranks must stop at the same step."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    return bool(all_reduce_sum(torch.tensor([int(flag)])).item())


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics) before evaluating."""
    if dist.is_available() and dist.is_initialized():
        for buf in module.buffers():
            dist.broadcast(buf.data, 0)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
