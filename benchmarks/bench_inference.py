"""Generator inference speed (img/s): eager PyTorch, torch.compile, onnxruntime per provider,
fp32 and fp16 where the backend runs them.

    python -m benchmarks inference -- [--spec S] [--resolution R] [--batch B] [--device D]

Defaults: on CUDA, the paper's 1024 generator (specs/celebahq_1024.yaml, final stage) at
batch 32, the figure issue 8 asks for; on a CPU, the same spec's 128x128 stable generator at
batch 4 (the 512-wide early blocks dominate the cost at any resolution, so this is the realistic
network at a size two cores finish in minutes). Weights are random: speed does not depend on them.

Each row: a warm-up call (torch.compile compiles, TensorRT builds its engine there; its time is
reported as `first_call_s`; torch.compile gets one more untimed call), then calls until `--seconds` have passed (at least `--min-iters`),
median time per batch. ONNX rows time `OnnxGenerator.run_on_device` (IO binding: on a GPU the
images stay on the device, as they would for a consumer on the GPU). A backend that cannot run
here gets a row with its reason instead of figures. Results go to benchmarks/results/inference.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import print_table, write_json

BACKENDS = ("eager", "compile", "onnxruntime")
PRECISIONS = ("fp32", "fp16")
CUDA_DEFAULTS = {"spec": "specs/celebahq_1024.yaml", "resolution": None, "batch": 32}
CPU_DEFAULTS = {"spec": "specs/celebahq_1024.yaml", "resolution": 128, "batch": 4}
COMPILE_WARMUP = 2  # torch.compile: the compiling call plus one more untimed call
COLUMNS = [
    "backend",
    "provider",
    "precision",
    "batch",
    "ms_per_batch",
    "img_per_s",
    "first_call_s",
    "iters",
    "note",
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_inference", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", help="spec file (default specs/celebahq_1024.yaml)")
    parser.add_argument(
        "--resolution",
        type=int,
        help="stable stage (default: final; 128 for the default spec on CPU)",
    )
    parser.add_argument("--batch", type=int, help="batch size (default 32 on CUDA, 4 on CPU)")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), help="default: cuda when torch sees a GPU, else cpu"
    )
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help=f"comma-separated subset of {','.join(BACKENDS)}",
    )
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="fp32,fp16")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per row")
    parser.add_argument("--min-iters", type=int, default=2, help="timed calls per row, at least")
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON results")
    return parser


def _time_calls(
    call: Callable[[], Any],
    sync: Callable[[], None],
    seconds: float,
    min_iters: int,
    warmup: int = 1,
) -> dict[str, Any]:
    start = time.perf_counter()
    call()
    sync()
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        call()
        sync()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_iters or time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "first_call_s": first, "iters": len(times)}


def _row(
    backend: str,
    provider: str,
    precision: str,
    batch: int,
    timing: dict[str, Any] | None,
    note: str = "",
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "backend": backend,
        "provider": provider,
        "precision": precision,
        "batch": batch,
        "note": note,
    }
    if timing is not None:
        row.update(
            {
                "ms_per_batch": 1000 * timing["median_s"],
                "img_per_s": batch / timing["median_s"],
                "first_call_s": timing["first_call_s"],
                "iters": timing["iters"],
            }
        )
    return row


def _torch_rows(
    G: Any, z: Any, device: str, precisions: list[str], compiled: bool, args: argparse.Namespace
) -> list[dict[str, Any]]:
    import copy

    import torch

    rows = []
    backend = "torch.compile" if compiled else "torch eager"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for precision in precisions:
        if precision == "fp16" and device == "cpu":
            rows.append(
                _row(
                    backend,
                    device,
                    precision,
                    len(z),
                    None,
                    "skipped: fp16 convolutions are not a fast path on CPU",
                )
            )
            continue
        dtype = torch.float16 if precision == "fp16" else torch.float32
        module = copy.deepcopy(G).to(device, dtype)
        inputs = z.to(device, dtype)
        try:
            if compiled:
                module = torch.compile(module)

            def call(module: Any = module, inputs: Any = inputs) -> Any:
                with torch.inference_mode():
                    return module(inputs)

            timing = _time_calls(
                call, sync, args.seconds, args.min_iters, warmup=COMPILE_WARMUP if compiled else 1
            )
            rows.append(_row(backend, device, precision, len(z), timing))
        except Exception as err:  # noqa: BLE001 - any failure means "cannot run here": report it
            rows.append(
                _row(
                    backend,
                    device,
                    precision,
                    len(z),
                    None,
                    f"skipped: {type(err).__name__}: {str(err).splitlines()[0][:120]}",
                )
            )
    return rows


def _onnx_rows(
    program: Any,
    stage: Any,
    G: Any,
    z: Any,
    device: str,
    precisions: list[str],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    import onnxruntime as ort

    from progan_dsl.errors import UserError
    from progan_dsl.export.onnx_export import export_onnx
    from progan_dsl.generate.ort import CPU, CUDA, TENSORRT, OnnxGenerator

    # one row per provider, best first; on CPU only the CPU provider
    providers = [("cpu", CPU)] if device == "cpu" else [("tensorrt", TENSORRT), ("cuda", CUDA)]
    rows = []
    batch = len(z)
    z_np = z.numpy()
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        for precision in precisions:
            path = export_onnx(
                program,
                stage,
                G,
                Path(tmp) / f"G_{precision}.onnx",
                precision=precision,
                batch="dynamic",
            )
            for name, provider in providers:
                if provider not in ort.get_available_providers():
                    rows.append(
                        _row(
                            "onnxruntime",
                            provider,
                            precision,
                            batch,
                            None,
                            "skipped: provider not installed here",
                        )
                    )
                    continue
                try:
                    gen = OnnxGenerator(path, device=device, provider=name)
                except UserError as err:
                    rows.append(
                        _row(
                            "onnxruntime",
                            provider,
                            precision,
                            batch,
                            None,
                            f"skipped: {str(err)[:120]}",
                        )
                    )
                    continue
                note = (
                    "CPU provider has no fp16 kernels: onnxruntime casts back to fp32"
                    if precision == "fp16" and provider == CPU
                    else ""
                )
                timing = _time_calls(
                    lambda gen=gen: gen.run_on_device(z_np),
                    lambda: None,
                    args.seconds,
                    args.min_iters,
                )
                rows.append(_row("onnxruntime", provider, precision, batch, timing, note))
    return rows


def _machine(device: str) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "platform": platform.platform(),
        # other work on the machine skews CPU figures: keep the context
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)

    import torch

    from progan_dsl.compiler import compile_spec
    from progan_dsl.errors import UserError
    from progan_dsl.generate.latents import latents

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    defaults = CUDA_DEFAULTS if device == "cuda" else CPU_DEFAULTS
    spec = args.spec or defaults["spec"]
    batch = args.batch or defaults["batch"]
    backends = [b for b in args.backends.split(",") if b]
    precisions = [p for p in args.precisions.split(",") if p]
    unknown = sorted(set(backends) - set(BACKENDS)) + sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        raise SystemExit(f"bench_inference: unknown {', '.join(unknown)}")

    program = compile_spec(spec)
    default_resolution = defaults["resolution"] if args.spec is None else None
    resolution = args.resolution or default_resolution or program.final_stage.resolution
    try:
        stage = program.stage(resolution, "stable")
    except UserError as err:
        raise SystemExit(f"bench_inference: {err}") from None
    torch.manual_seed(0)
    G = program.build("G", stage).eval().requires_grad_(False)
    z = torch.from_numpy(latents(batch, program.spec.architecture.latent_size, seed=0))
    print(
        f"generator {program.spec.name} {stage}: {program.params('G', stage):,} parameters, "
        f"batch {batch}, device {device}"
    )

    rows: list[dict[str, Any]] = []
    if "eager" in backends:
        rows += _torch_rows(G, z, device, precisions, False, args)
    if "compile" in backends:
        rows += _torch_rows(G, z, device, precisions, True, args)
    if "onnxruntime" in backends:
        rows += _onnx_rows(program, stage, G, z, device, precisions, args)
    print_table(rows, COLUMNS)
    result = {
        "inference": rows,
        "config": {
            "spec": spec,
            "stage": str(stage),
            "batch": batch,
            "device": device,
            "seconds": args.seconds,
            "parameters": program.params("G", stage),
        },
        "environment": _machine(device),
    }
    if not args.no_write:
        write_json("inference", result)
    return result


if __name__ == "__main__":
    run()
