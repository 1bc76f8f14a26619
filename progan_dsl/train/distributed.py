"""Multi-process training through torch.distributed, launched by torchrun.

Owns the process group (NCCL on GPUs, gloo on CPU), which device a rank uses, and the few
collectives the trainer needs: averaging gradients (one flat all-reduce per network, as
stylegan2-ada-pytorch does, because DistributedDataParallel does not support the double backward
of gradient penalties), broadcasting parameters and small objects from rank 0, and averaging
logged statistics. Without torchrun (no WORLD_SIZE in the environment) it is a single process and
every function here is a no-op.

The global minibatch is split evenly across ranks; rank 0 alone writes files. Devices and CPU
threads per process follow `progan_dsl.devices` (`rank_device`, `process_threads`).

Fault tolerance: `torchrun --max-restarts N` restarts every worker when one dies, and tells them
so (TORCHELASTIC_RESTART_COUNT > 0, `DistEnv.restart`); a restarted run resumes from its newest
intact checkpoint (see `progan_dsl.train.start`); each attempt joins the process group in its
own key space of torchrun's store (`_join`). A survivor whose peer died sees a collective
fail; `peer_lost` recognises that error so the CLI can say it in one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from progan_dsl.devices import process_threads, rank_device

RESTART_VARIABLE = "TORCHELASTIC_RESTART_COUNT"  # set by torchrun: how often it restarted workers


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in the run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    restart: int = 0  # how many times torchrun restarted the workers (0: the first attempt)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def restart_count() -> int:
    """How many times torchrun has restarted the workers (0 outside torchrun)."""
    try:
        return max(0, int(os.environ.get(RESTART_VARIABLE, "0")))
    except ValueError:
        return 0


def init_distributed(requested_device: str | None) -> DistEnv:
    """Join the torchrun process group if there is one; pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    device = rank_device(requested_device, local_rank, local_world)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        _join(backend="nccl" if device.type == "cuda" else "gloo", restart=restart_count())
        # torchrun sets OMP_NUM_THREADS=1 per process; give each local rank its share instead.
        threads = process_threads(None, device, local_world, launched=True)
        if threads is not None:
            torch.set_num_threads(threads)
    return DistEnv(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        device=device,
        restart=restart_count(),  # a one-process torchrun job restarts too
    )


def _join(backend: str, restart: int) -> None:
    """Join the process group torchrun describes (env://) in a key space of this attempt:
    torchrun keeps one store across restarts, and restarted workers that read an earlier
    attempt's keys (each rank's address) wait on processes that are gone, for the whole timeout
    (30 minutes with gloo) or fail to connect."""
    store, rank, world_size = next(dist.rendezvous("env://"))
    attempt = dist.PrefixStore(f"progan-train/attempt-{restart}", store)
    dist.init_process_group(backend, store=attempt, rank=rank, world_size=world_size)


# What gloo and NCCL say when the process at the other end of a collective went away.
PEER_LOST_TEXTS = (
    "connection closed by peer",
    "connection reset by peer",
    "broken pipe",
    "remote worker crashing",
    "nccl communicator was aborted",
)


def launched() -> bool:
    """Whether this process is one of several started by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def peer_lost(err: BaseException) -> bool:
    """Whether `err` is a collective failing because another process of the run died (only
    meaningful when `launched()`)."""
    if not isinstance(err, RuntimeError):
        return False
    text = str(err).lower()
    return isinstance(err, dist.DistError) or any(t in text for t in PEER_LOST_TEXTS)


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
