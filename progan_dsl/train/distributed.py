"""Multi-process training through torch.distributed, launched by torchrun.

Owns the process group (NCCL on GPUs, gloo on CPU), which device a rank uses, and the few
collectives the trainer needs: averaging gradients (one flat all-reduce per network, as
stylegan2-ada-pytorch does, because DistributedDataParallel does not support the double backward
of gradient penalties), broadcasting parameters and small objects from rank 0, and averaging
logged statistics. Without torchrun (no WORLD_SIZE in the environment) it is a single process and
every function here is a no-op.

The global minibatch is split evenly across ranks; rank 0 alone writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from progan_dsl.devices import torch_device


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in the run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(requested_device: str | None) -> DistEnv:
    """Join the torchrun process group if there is one; pick this rank's device."""
    device = torch_device(requested_device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        if device.type == "cpu":
            # torchrun sets OMP_NUM_THREADS=1 per process; give each local rank its share instead.
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(env: DistEnv, params: Iterable[nn.Parameter]) -> None:
    """Replace each gradient by its mean over ranks (one flat all-reduce)."""
    if not env.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= env.world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def broadcast_module(env: DistEnv, module: nn.Module) -> None:
    """Make every rank hold rank 0's parameters and buffers."""
    if not env.enabled:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def broadcast_object(env: DistEnv, obj: Any) -> Any:
    """Rank 0's `obj` on every rank (small picklable values: paths, decisions)."""
    if not env.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_tensor(env: DistEnv, tensor: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a (small) tensor, e.g. accumulated loss statistics."""
    if not env.enabled:
        return tensor
    out = tensor.clone()
    dist.all_reduce(out)
    return out / env.world_size


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()
