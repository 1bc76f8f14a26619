"""Shared benchmark helpers: parsing, threads, timing, the machine's context, tables, JSON results.

Every benchmark parses its options with `bench_parser(NAME)` (usage `progan-bench NAME -- ...`;
a bad option is one error, exit 2) and takes `--json FILE` and `--no-write` (`add_output`,
`save`) and `--threads N` (`add_threads`). The thread default is
`progan_dsl.devices.default_threads()`, what `progan-train` uses too: the cores other work leaves
free (measured over a quarter second) minus one spare, at least one. On a shared machine the
intra-op threads of one op wait for the slowest core: with torch's default of one thread per
core on a 2-core machine whose other core was busy, the training benchmark ran up to 100x slower
than with one thread (figures: docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from progan_dsl.cliutil import UserErrorParser
from progan_dsl.devices import default_threads
from progan_dsl.errors import UserError

RESULTS = Path(__file__).resolve().parent / "results"


def bench_parser(name: str, description: str | None = None) -> UserErrorParser:
    """A benchmark's own parser: its usage reads `progan-bench NAME -- [options]` (how its
    options are passed) and a bad option is one error message with exit 2, as in every command."""
    return UserErrorParser(
        prog=f"progan-bench {name} --",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch intra-op threads (default: the cores other work leaves free minus one, at "
        "least 1)",
    )


def add_budget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="S",
        help="start no row after S seconds (later rows are recorded as skipped)",
    )


def add_output(parser: argparse.ArgumentParser, name: str) -> None:
    """`--json FILE` and `--no-write`, which every benchmark takes (`save` honours them)."""
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"where the results go (default benchmarks/results/{name}.json)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON results")


def save(name: str, payload: dict[str, Any], args: argparse.Namespace) -> Path | None:
    """Write the results as `--json` / `--no-write` (from `add_output`) say."""
    if args.no_write:
        return None
    return write_json(name, payload, args.json)


def apply_threads(requested: int | None) -> dict[str, Any]:
    """Set torch's intra-op threads; returns what was chosen and why, for the results."""
    import torch

    if requested is not None and requested < 1:
        raise UserError(f"--threads must be at least 1, got {requested}")
    load = os.getloadavg()[0]
    threads = requested if requested is not None else default_threads()
    torch.set_num_threads(threads)
    how = "--threads" if requested is not None else "default (cores other work leaves free)"
    return {
        "threads": threads,
        "chosen_by": how,
        "cpu_count": os.cpu_count(),
        "load_average_1m_before": round(load, 2),
    }


def median_time(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine(device: str = "cpu") -> dict[str, Any]:
    """What the figures depend on: versions, processor, GPU, and the load while they ran."""
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "processor": platform.machine(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    lines = [
        "  ".join(c.ljust(widths[c]) for c in columns).rstrip(),
        "  ".join("-" * widths[c] for c in columns),
    ]
    lines += ["  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    print(format_table(rows, columns), flush=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_json(
    name: str, payload: dict[str, Any], path: Path | None = None, *, quiet: bool = False
) -> Path:
    """The results as JSON at `path` (default benchmarks/results/NAME.json), written atomically
    (a benchmark killed mid-write leaves the previous file)."""
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        **payload,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    if not quiet:
        print(f"wrote {path}", flush=True)
    return path
