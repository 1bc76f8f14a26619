"""Which device a command runs on, and with how many CPU threads.

`--device` takes `cpu`, `cuda` or `cuda:<index>`; without it, commands use CUDA when torch sees a
GPU and the CPU otherwise. `parse_device` only reads the text (torch-free, so onnxruntime code can
use it); `torch_device` also checks that a requested GPU exists; `rank_device` is the device of one
training process: a single process uses the index given (`cuda:1` is cuda:1), and under torchrun
local rank i uses the i-th GPU counted from it (`cuda` or none: cuda:i; `cuda:K`: cuda:K+i).

Threads: torch's default (one per core, spinning OpenMP workers) collapses as soon as other work
takes a core. Measured on 2 cores: with one other busy process the tiny spec took 103 s with 2
threads, 52 s with 2 passive (OMP_WAIT_POLICY=PASSIVE) threads and 26 s with 1; on the idle
machine 20 kimg of the MNIST demo took 51.5 s with 2 threads, 88.8 s with 2 passive ones and
60 s with 1. So passive waiting never pays, and one spare core is cheap insurance:
`default_threads` takes the cores that other work leaves free (measured over a quarter second)
minus one, at least one. On 2 cores that is one thread: 15% slower than two on an idle machine,
4x faster once anything else runs. A run that collapses anyway says so (`--threads` sets it).
`process_threads` is the whole policy of a training process: `--threads` if given, else on the
CPU `default_threads` for a single process and one share of the cores per process under torchrun
(which would otherwise leave each at OMP_NUM_THREADS=1), and torch's default on a GPU.
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING

from progan_dsl.errors import UserError

if TYPE_CHECKING:
    import torch


def parse_device(text: str) -> tuple[str, int]:
    """'cpu' -> ('cpu', 0); 'cuda' -> ('cuda', 0); 'cuda:1' -> ('cuda', 1)."""
    kind, sep, index = text.strip().partition(":")
    if kind not in ("cpu", "cuda") or (sep and not index.isdigit()) or (kind == "cpu" and sep):
        raise UserError(f"--device must be cpu, cuda or cuda:<index>, got {text!r}")
    return kind, int(index or 0)


def torch_device(text: str | None = None) -> torch.device:
    """The torch device for `--device` (None: CUDA when available). `UserError` for a GPU that
    is not there."""
    import torch

    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, index = parse_device(text)
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"--device {text}: no CUDA GPU is available here (use --device cpu)")
    if index >= torch.cuda.device_count():
        raise UserError(f"--device {text}: there are {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)


def rank_device(text: str | None, local_rank: int = 0, local_world_size: int = 1) -> torch.device:
    """The device of training process `local_rank` of `local_world_size` on this node (a single
    process is local rank 0 of 1): `torch_device(text)`, with CUDA indices counted from the one
    given. `UserError` when the node's processes need more GPUs than there are."""
    import torch

    device = torch_device(text)
    if device.type != "cuda":
        return device
    first = device.index or 0
    index = first + local_rank
    count = torch.cuda.device_count()
    if index >= count:
        raise UserError(
            f"--device {text or 'cuda'}: local rank {local_rank} of {local_world_size} would use "
            f"cuda:{index}, but there are {count} CUDA device(s); start at most {count - first} "
            f"process(es) per node from cuda:{first} (each process takes the next GPU)"
        )
    return torch.device("cuda", index)


BUSY_WINDOW_S = 0.25  # how long `busy_cores` watches the machine
SPARE_CORES = 1  # left free by the default, so other work arriving later does not collapse a run


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def busy_cores(window: float = BUSY_WINDOW_S) -> float | None:
    """How many cores other work keeps busy now: the machine's non-idle CPU time over a short
    window (/proc/stat), in cores; None where /proc/stat is not there. Unlike the load average it
    does not lag: the dataset creation that `make demo` runs just before training is not counted."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(window)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    ticks = total1 - total0
    if ticks <= 0:
        return 0.0
    return (1.0 - (idle1 - idle0) / ticks) * (os.cpu_count() or 1)


def default_threads(busy: float | None = None, cores: int | None = None) -> int:
    """CPU compute threads for a run: the cores other work leaves free now (`busy_cores`, else
    the 1-minute load average) minus `SPARE_CORES`, at least one."""
    cores = usable_cores() if cores is None else cores
    if busy is None:
        busy = busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:
            busy = 0.0
    return max(1, min(cores, cores - math.floor(busy + 0.5) - SPARE_CORES))


def process_threads(
    requested: int | None, device: torch.device, local_world_size: int, *, launched: bool
) -> int | None:
    """CPU compute threads of one training process: `requested` (`--threads`) if given; on the
    CPU, one share of the cores per process under torchrun (`launched`: torchrun itself sets
    OMP_NUM_THREADS=1), else `default_threads`; None (torch's default) for a GPU run."""
    if requested is not None:
        return requested
    if device.type != "cpu":
        return None
    if launched:
        return max(1, usable_cores() // max(1, local_world_size))
    return default_threads()


def device_text(device: torch.device) -> str:
    """The `--device` spelling of a torch device ('cpu', 'cuda:0')."""
    return "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"


__all__ = [
    "SPARE_CORES",
    "busy_cores",
    "default_threads",
    "device_text",
    "parse_device",
    "process_threads",
    "rank_device",
    "torch_device",
    "usable_cores",
]
