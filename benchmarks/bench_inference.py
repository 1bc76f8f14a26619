"""Generator inference speed (img/s) per backend and precision: torch eager, torch.compile, CUDA
graphs (eager forward captured and replayed), torch.compile with CUDA graphs
(mode="reduce-overhead"), the AOTInductor package of `progan-export --aoti`, and onnxruntime per
provider.

    python -m benchmarks inference -- [--spec S] [--resolution R] [--batch B] [--device D]
    python -m benchmarks inference -- --rows eager:fp32,eager:bf16,cudagraphs:bf16,aoti:bf16

Defaults: on CUDA, the paper's 1024 generator (specs/celebahq_1024.yaml, final stage) at batch
32; on a CPU, the same spec's 128x128 stable generator at batch 4 (the 512-wide early blocks
dominate the cost at any resolution, so this is the realistic network at a size two cores finish
in minutes). Weights are random: speed does not depend on them. Rows:
`--rows BACKEND:PRECISION,...`, or every backend of `--backends` with every precision of
`--precisions`.

Each row: a first call (torch.compile compiles, CUDA graphs capture, TensorRT builds its engine
there; its time is `first_call_s`; the AOTInductor package's export and compilation is `build_s`),
one more untimed call, then calls until `--seconds` have passed (at least `--min-iters`), median
time per batch (CUDA events on a GPU). ONNX rows time `OnnxGenerator.run_on_device` (IO binding:
on a GPU the images stay on the device). Inputs are on the device already; outputs stay there. A
row that cannot run here says why instead of giving figures. `--compile-backend` other than
inductor (a quick smoke run) also makes the AOTInductor row run the `torch.export` program
uncompiled. The summary names the fastest row and the AOTInductor package's share of it.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import (
    add_budget,
    add_output,
    add_threads,
    apply_threads,
    bench_parser,
    machine,
    print_table,
    write_json,
)

BACKENDS = ("eager", "compile", "cudagraphs", "compile-cudagraphs", "aoti", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "bf16")
CUDA_DEFAULTS = {"spec": "specs/celebahq_1024.yaml", "resolution": None, "batch": 32}
CPU_DEFAULTS = {"spec": "specs/celebahq_1024.yaml", "resolution": 128, "batch": 4}
COLUMNS = [
    "backend",
    "provider",
    "precision",
    "batch",
    "ms_per_batch",
    "img_per_s",
    "first_call_s",
    "build_s",
    "iters",
    "note",
]
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def _parser() -> argparse.ArgumentParser:
    p = bench_parser("inference", __doc__.splitlines()[0])
    p.add_argument("--spec", help="spec file (default specs/celebahq_1024.yaml)")
    p.add_argument(
        "--resolution",
        type=int,
        help="stable stage (default: final; 128 for the default spec on CPU)",
    )
    p.add_argument("--batch", type=int, help="batch size (default 32 on CUDA, 4 on CPU)")
    p.add_argument(
        "--device", choices=("cpu", "cuda"), help="default: cuda when torch sees a GPU, else cpu"
    )
    p.add_argument(
        "--backends",
        default="eager,compile,onnxruntime",
        help=f"comma-separated subset of {','.join(BACKENDS)}",
    )
    p.add_argument("--precisions", default="fp32,fp16", help=f"subset of {','.join(PRECISIONS)}")
    p.add_argument(
        "--rows",
        default=None,
        metavar="B:P,...",
        help="explicit backend:precision rows (instead of --backends x --precisions)",
    )
    p.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="torch rows in NHWC (auto: the sampler's device default)",
    )
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per row")
    p.add_argument("--min-iters", type=int, default=2, help="timed calls per row, at least")
    add_budget(p)
    add_threads(p)
    add_output(p, "inference")
    return p


def _timer(device: str) -> Callable[[Callable[[], Any]], float]:
    import torch

    if device != "cuda":

        def host(call: Callable[[], Any]) -> float:
            start = time.perf_counter()
            call()
            return time.perf_counter() - start

        return host

    def events(call: Callable[[], Any]) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0

    return events


def time_calls(
    call: Callable[[], Any], device: str, seconds: float, min_iters: int
) -> dict[str, Any]:
    """First-call seconds, then the median of timed calls after one more untimed call."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    start = time.perf_counter()
    call()
    sync()
    first = time.perf_counter() - start
    call()
    sync()
    timed = _timer(device)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_iters or time.perf_counter() < deadline:
        times.append(timed(call))
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
            ms_per_batch=1000 * timing["median_s"],
            img_per_s=batch / timing["median_s"],
            first_call_s=timing["first_call_s"],
            iters=timing["iters"],
        )
        if "build_s" in timing:
            row["build_s"] = timing["build_s"]
    return row


def _skip_reason(err: BaseException) -> str:
    lines = str(err).strip().splitlines() or [""]
    return f"skipped: {type(err).__name__}: {lines[0][:160]}"


class Case:
    """The generator, its latents and the options every row shares."""

    def __init__(
        self, program: Any, stage: Any, G: Any, z: Any, device: str, args: argparse.Namespace
    ) -> None:
        self.program, self.stage, self.G, self.z, self.device = program, stage, G, z, device
        self.args = args
        self.batch = len(z)

    def module(self, precision: str) -> tuple[Any, Any]:
        """A copy of G on the device in the precision and memory format, and its input."""
        import torch

        from progan_dsl.generate.sampler import CHANNELS_LAST

        dtype = getattr(torch, DTYPES[precision])
        nhwc = {"on": True, "off": False}.get(
            self.args.channels_last, CHANNELS_LAST.get(self.device, False)
        )
        fmt = torch.channels_last if nhwc else torch.contiguous_format
        module = copy.deepcopy(self.G).to(self.device, dtype, memory_format=fmt)
        return module, self.z.to(self.device, dtype)


def torch_row(case: Case, backend: str, precision: str) -> dict[str, Any]:
    import torch

    from progan_dsl.generate.sampler import CudaGraphRunner

    name = f"torch {backend}"
    if precision != "fp32" and case.device == "cpu":
        return _row(
            name,
            case.device,
            precision,
            case.batch,
            None,
            "skipped: half-precision convolutions are not a fast path on a CPU",
        )
    if "cudagraphs" in backend and case.device != "cuda":
        return _row(name, case.device, precision, case.batch, None, "skipped: no CUDA")
    module, inputs = case.module(precision)
    if backend == "compile":
        run = torch.compile(module, backend=case.args.compile_backend)
    elif backend == "compile-cudagraphs":
        run = torch.compile(module, mode="reduce-overhead")
    elif backend == "cudagraphs":
        run = CudaGraphRunner(module)
    else:
        run = module

    def call() -> Any:
        with torch.inference_mode():
            return run(inputs)

    note = (
        ""
        if backend != "compile" or case.args.compile_backend == "inductor"
        else f"torch.compile backend {case.args.compile_backend}"
    )
    return _row(
        name,
        case.device,
        precision,
        case.batch,
        time_calls(call, case.device, case.args.seconds, case.args.min_iters),
        note,
    )


def aoti_row(case: Case, precision: str, tmp: Path) -> dict[str, Any]:
    import torch

    from progan_dsl.export.aoti import export_aoti, exported_program

    if precision != "fp32" and case.device == "cpu":
        return _row(
            "aoti",
            case.device,
            precision,
            case.batch,
            None,
            "skipped: half-precision convolutions are not a fast path on a CPU",
        )
    began = time.perf_counter()
    if case.args.compile_backend == "inductor":
        path = export_aoti(
            case.program,
            case.stage,
            case.G,
            tmp / f"G_{precision}.pt2",
            precision=precision,
            device=case.device,
        )
        run = torch._inductor.aoti_load_package(str(path))
        note = f"package {path.stat().st_size / 1e6:.1f} MB"
    else:
        run = exported_program(
            case.program, case.stage, case.G, precision=precision, device=case.device
        ).module()
        note = "torch.export program, not compiled (quick run)"
    build = time.perf_counter() - began
    z = case.z.to(case.device)

    def call() -> Any:
        with torch.inference_mode():
            return run(z)

    timing = time_calls(call, case.device, case.args.seconds, case.args.min_iters)
    return _row("aoti", case.device, precision, case.batch, {**timing, "build_s": build}, note)


def onnx_rows(case: Case, precision: str, tmp: Path) -> list[dict[str, Any]]:
    import onnxruntime as ort

    from progan_dsl.export.onnx_export import export_onnx
    from progan_dsl.generate.ort import CPU, CUDA, TENSORRT, OnnxGenerator

    if precision == "bf16":
        return [
            _row(
                "onnxruntime",
                "-",
                precision,
                case.batch,
                None,
                "skipped: the ONNX export has fp32 and fp16",
            )
        ]
    wanted = [("cpu", CPU)] if case.device == "cpu" else [("tensorrt", TENSORRT), ("cuda", CUDA)]
    present = [(n, p) for n, p in wanted if p in ort.get_available_providers()]
    rows = [
        _row("onnxruntime", p, precision, case.batch, None, "skipped: provider not installed here")
        for n, p in wanted
        if (n, p) not in present
    ]
    if not present:
        return rows
    path = export_onnx(
        case.program,
        case.stage,
        case.G,
        tmp / f"G_{precision}.onnx",
        precision=precision,
        batch="dynamic",
    )
    z = case.z.numpy()
    for name, provider in present:
        gen = OnnxGenerator(path, device=case.device, provider=name)
        note = (
            "CPU provider has no fp16 kernels: onnxruntime casts back to fp32"
            if precision == "fp16" and provider == CPU
            else ""
        )
        timing = time_calls(
            lambda gen=gen: gen.run_on_device(z), "cpu", case.args.seconds, case.args.min_iters
        )
        rows.append(_row("onnxruntime", provider, precision, case.batch, timing, note))
    return rows


def plan_rows(args: argparse.Namespace) -> list[tuple[str, str]]:
    if args.rows:
        pairs = [tuple(r.split(":", 1)) for r in args.rows.split(",") if r]
        if any(len(p) != 2 for p in pairs):
            raise SystemExit("bench_inference: --rows takes BACKEND:PRECISION,...")
    else:
        pairs = [
            (b, p) for b in args.backends.split(",") if b for p in args.precisions.split(",") if p
        ]
    unknown = sorted({b for b, _ in pairs} - set(BACKENDS)) + sorted(
        {p for _, p in pairs} - set(PRECISIONS)
    )
    if unknown:
        raise SystemExit(
            f"bench_inference: unknown {', '.join(unknown)} (backends "
            f"{', '.join(BACKENDS)}; precisions {', '.join(PRECISIONS)})"
        )
    return [(b, p) for b, p in pairs]


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    timed = [r for r in rows if r.get("img_per_s")]
    if not timed:
        return {}
    best = max(timed, key=lambda r: r["img_per_s"])
    out = {"best": f"{best['backend']} {best['precision']}", "best_img_per_s": best["img_per_s"]}
    aoti = [r for r in timed if r["backend"] == "aoti"]
    if aoti:
        top = max(aoti, key=lambda r: r["img_per_s"])
        out.update(
            aoti_img_per_s=top["img_per_s"], aoti_share_of_best=top["img_per_s"] / best["img_per_s"]
        )
    return out


def run(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    import torch

    from progan_dsl.compiler import compile_spec
    from progan_dsl.generate.latents import latents

    threads = apply_threads(args.threads)
    pairs = plan_rows(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    defaults = CUDA_DEFAULTS if device == "cuda" else CPU_DEFAULTS
    spec = args.spec or defaults["spec"]
    batch = args.batch or defaults["batch"]
    program = compile_spec(spec)
    default_resolution = defaults["resolution"] if args.spec is None else None
    resolution = args.resolution or default_resolution or program.final_stage.resolution
    stage = program.stage(resolution, "stable")
    torch.manual_seed(0)
    G = program.build("G", stage).eval().requires_grad_(False)
    z = torch.from_numpy(latents(batch, program.spec.architecture.latent_size, seed=0))
    print(
        f"generator {program.spec.name} {stage}: {program.params('G', stage):,} parameters, "
        f"batch {batch}, device {device}, {threads['threads']} thread(s)",
        flush=True,
    )
    case = Case(program, stage, G, z, device, args)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    result: dict[str, Any] = {
        "config": {
            "spec": spec,
            "stage": str(stage),
            "batch": batch,
            "device": device,
            "seconds": args.seconds,
            "parameters": program.params("G", stage),
            "rows": [f"{b}:{p}" for b, p in pairs],
        },
        "threads": threads,
        "inference": rows,
    }
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        for backend, precision in pairs:
            if args.budget is not None and time.perf_counter() - started > args.budget:
                rows.append(
                    _row(
                        backend,
                        "-",
                        precision,
                        batch,
                        None,
                        f"skipped: past the {args.budget:g} s budget",
                    )
                )
                continue
            try:
                if backend == "onnxruntime":
                    rows += onnx_rows(case, precision, Path(tmp))
                elif backend == "aoti":
                    rows.append(aoti_row(case, precision, Path(tmp)))
                else:
                    rows.append(torch_row(case, backend, precision))
            except Exception as err:  # noqa: BLE001 - a backend that fails here is reported
                rows.append(_row(backend, device, precision, batch, None, _skip_reason(err)))
            last = rows[-1]
            print(
                f"  {last['backend']} {last['precision']}: {last.get('img_per_s') or last['note']}",
                flush=True,
            )
            result["summary"] = summary(rows)
            result["environment"] = machine(device)
            if not args.no_write:
                write_json("inference", result, args.json, quiet=True)
    print_table(rows, COLUMNS)
    if result.get("summary"):
        print(
            f"fastest: {result['summary']['best']} "
            f"({result['summary']['best_img_per_s']:.4g} img/s)"
        )
    if not args.no_write:
        write_json("inference", result, args.json)
    return result


if __name__ == "__main__":
    run()
