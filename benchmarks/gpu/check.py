"""The GPU check: every CUDA path of progan-dsl exercised and measured in one
command (`bash benchmarks/gpu/check.sh`, which calls this), under 8 minutes on an H200.

Steps (`STEPS`, in order), each in its own process with its own time limit, so a step that fails,
crashes or hangs is recorded (failed / timeout, with the tail of its output) and the next one
runs; a global deadline (`--total`) shortens later steps when earlier ones ran long:

- environment: versions (torch, CUDA, cuDNN, Triton, onnxruntime and its providers, pydantic),
  the GPU and its clocks as `nvidia-smi` reads them, where progan_dsl was imported from;
- cuda_tests: `pytest -m cuda` (every CUDA-marked test: bf16 training, fast paths against plain
  within bf16 tolerance, no host syncs, metrics on CUDA);
- train_smoke: `benchmarks.gpu.smoke`: one bf16 run grown to 256x256, stopped inside the
  fade-ins to 64x64 and to 256x256 and resumed from each checkpoint (state restored exactly,
  training continues);
- nccl_2proc: recorded as not run: a 2-process NCCL run needs two GPUs and this check targets one
  (tests/train/test_train_distributed.py covers two processes with gloo on the CPU);
- train_bench: `bench_train` on specs/celebahq_1024_h100.yaml at 128 b16, 1024 b4 and 1024 b16,
  plain vs fast side by side (CUDA events, peak memory, the gradient penalty's share), every
  stable resolution swept for the projected 12,000-kimg schedule hours;
- inference_bench: `bench_inference`, the 1024 generator at batch 32: eager, CUDA graphs, the
  AOTInductor package, compile + CUDA graphs, torch.compile, onnxruntime where its CUDA provider
  is.

`--quick` runs the same steps CI-sized on whatever is there (tiny specs, one repeat, no C++
compilation; steps that need CUDA are recorded as "skipped: no CUDA"). Results: gpu_check.json
(every step's status, seconds and results, and the targets, each with the figure it is
judged on), gpu_check.txt (the tables printed last) and check.log (every step's whole output) in
`--out` (default: $OUT, else out/gpu/).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common import format_table, write_json

PACKAGE = __package__.rsplit(".", 1)[0] if __package__ else "benchmarks"  # benchmarks, or renamed
ROOT = Path(__file__).resolve().parents[2]
FULL_TOTAL_S = 470  # the whole check, under 8 minutes
QUICK_TOTAL_S = 150
TAIL_LINES = 15  # of a failed step's output, shown on stdout
PER_TEST_S = 90  # one CUDA test at most (its compiles included)


@dataclass(frozen=True)
class Step:
    """One step: its time limits (full run, --quick) and whether it needs CUDA."""

    name: str
    budget_s: float
    quick_budget_s: float
    needs_cuda: bool
    what: str


STEPS = (
    Step("environment", 15, 30, False, "versions, GPU, providers, imports"),
    Step("cuda_tests", 135, 0, True, "pytest -m cuda"),
    Step("train_smoke", 50, 60, False, "bf16 training through a fade-in, checkpoint, resume"),
    Step("nccl_2proc", 0, 0, True, "2-process NCCL training"),
    Step("train_bench", 135, 60, False, "Trainer.iteration plain vs fast, GP share, projection"),
    Step("inference_bench", 135, 60, False, "G inference per backend"),
)

# The targets the check measures against: (key, what, bound, kind) with kind ">=" or "<".
TARGETS = (
    ("train_1024_b16_img_s", "training 1024x1024 batch 16, WGAN-GP every step (img/s)", 80, ">="),
    ("train_1024_b4_img_s", "training 1024x1024 batch 4 (img/s)", 50, ">="),
    ("train_128_b16_img_s", "training 128x128 batch 16 (img/s)", 600, ">="),
    ("inference_1024_b32_best_img_s", "G inference 1024x1024 batch 32, best backend", 4000, ">="),
    ("aoti_share_of_best", "AOTInductor package / best backend", 0.8, ">="),
    ("projected_hours", "projected 12,000-kimg CelebA-HQ schedule, one GPU (h)", 16, "<"),
)


class Context:
    """What the step commands need: the python, the scratch folder, the mode and the device."""

    def __init__(self, quick: bool, scratch: Path, cuda: bool) -> None:
        self.quick, self.scratch, self.cuda = quick, scratch, cuda
        self.python = sys.executable
        self.device = "cuda" if cuda else "cpu"

    def json(self, step: str) -> Path:
        return self.scratch / f"{step}.json"

    def module(self, name: str) -> list[str]:
        return [self.python, "-m", f"{PACKAGE}.{name}"]


def _environment_cmd(ctx: Context) -> list[str]:
    return [*ctx.module("gpu.check"), "--environment", str(ctx.json("environment"))]


def cuda_test_files() -> list[str]:
    """Test files with CUDA-marked tests: only these are collected, so a module that needs a
    package the device lacks (FID weights, MNIST) cannot fail the step at collection."""
    return sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").rglob("test_*.py")
        if "mark.cuda" in p.read_text()
    )


def _cuda_tests_cmd(ctx: Context) -> list[str]:
    import importlib.util

    # -v: one line per test as it ends, so a step killed at its limit still says which passed;
    # pytest-timeout (in the device image) stops a single hanging test
    per_test = ["--timeout", str(PER_TEST_S)] if importlib.util.find_spec("pytest_timeout") else []
    junit = f"--junitxml={ctx.scratch / 'cuda_tests.xml'}"
    pytest = [ctx.python, "-m", "pytest", "-v", "-m", "cuda", "-p", "no:cacheprovider"]
    return [*pytest, "-o", "addopts=-ra", junit, *per_test, *cuda_test_files()]


def _smoke_cmd(ctx: Context) -> list[str]:
    sizes = "8,16" if ctx.quick else "64,256"
    return [
        *ctx.module("gpu.smoke"),
        "--device",
        ctx.device,
        "--resolutions",
        sizes,
        "--out",
        str(ctx.scratch / "smoke"),
        "--json",
        str(ctx.json("train_smoke")),
    ]


def _train_cmd(ctx: Context, budget: float) -> list[str]:
    paths = "plain,fast" if ctx.quick else "plain,fast-eager,fast"  # the sweep runs fast-eager
    common = [
        "--paths",
        paths,
        "--gp-share",
        "--project",
        "--json",
        str(ctx.json("train_bench")),
        "--budget",
        f"{max(budget - 45, 5):.0f}",
    ]
    if ctx.quick:
        return [
            *ctx.module("bench_train"),
            "--spec",
            "tests/specs/tiny.yaml",
            "--points",
            "8:8",
            "--device",
            ctx.device,
            "--compile",
            "on",
            "--compile-backend",
            "aot_eager",
            "--repeats",
            "1",
            "--warmup",
            "1",
            *common,
        ]
    return [
        *ctx.module("bench_train"),
        "--spec",
        "specs/celebahq_1024_h100.yaml",
        "--points",
        "128:16,1024:4,1024:16",
        "--device",
        "cuda",
        "--compile",
        "on",
        "--repeats",
        "5",
        "--warmup",
        "2",
        *common,
    ]


def _inference_cmd(ctx: Context, budget: float) -> list[str]:
    low = "fp32" if ctx.quick else "bf16"  # a CPU has no fast half-precision convolutions
    # cheap rows first, then the compiled ones in order of what the targets need: the AOTInductor
    # package (within 20% of the best) before torch.compile's two forms
    rows = [
        "eager:fp32",
        f"eager:{low}",
        f"cudagraphs:{low}",
        f"aoti:{low}",
        f"compile-cudagraphs:{low}",
        f"compile:{low}",
        "onnxruntime:fp32",
    ]
    if not ctx.quick:  # a CPU has no fp16 kernels: the quick run skips that second export
        rows.insert(-1, "onnxruntime:fp16")
    rows = list(dict.fromkeys(rows))
    common = [
        "--rows",
        ",".join(rows),
        "--json",
        str(ctx.json("inference_bench")),
        "--budget",
        f"{max(budget - 40, 5):.0f}",
    ]
    if ctx.quick:
        return [
            *ctx.module("bench_inference"),
            "--spec",
            "tests/specs/tiny.yaml",
            "--resolution",
            "4",
            "--batch",
            "4",
            "--device",
            ctx.device,
            "--compile-backend",
            "eager",
            "--seconds",
            "0.05",
            "--min-iters",
            "2",
            *common,
        ]
    return [
        *ctx.module("bench_inference"),
        "--spec",
        "specs/celebahq_1024.yaml",
        "--batch",
        "32",
        "--device",
        "cuda",
        "--seconds",
        "2",
        "--min-iters",
        "5",
        *common,
    ]


COMMANDS: dict[str, Callable[[Context, float], list[str]]] = {
    "environment": lambda ctx, b: _environment_cmd(ctx),
    "cuda_tests": lambda ctx, b: _cuda_tests_cmd(ctx),
    "train_smoke": lambda ctx, b: _smoke_cmd(ctx),
    "train_bench": _train_cmd,
    "inference_bench": _inference_cmd,
}


def skip_reason(step: Step, ctx: Context) -> str | None:
    if step.needs_cuda and not ctx.cuda:
        return "skipped: no CUDA"
    if step.name == "nccl_2proc":
        import torch

        count = torch.cuda.device_count()
        return (
            f"not run: a 2-process NCCL run needs two GPUs, this machine has {count}; this "
            "check targets one GPU (two processes are covered by the gloo test on a CPU)"
        )
    return None


def run_command(cmd: list[str], timeout: float, log: Any) -> tuple[str, int | None, float, str]:
    """(status, return code, seconds, output) of one step's process; the whole process group
    is killed at the timeout."""
    began = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=max(timeout, 1))
        status = "passed" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        status = "timeout"
    log.write(out or "")
    log.flush()
    return status, proc.returncode, time.perf_counter() - began, out or ""


def _verbose_results(out: str) -> dict[str, Any]:
    """Per-test outcomes from `pytest -v` lines (when the step was killed before the XML)."""
    passed, failed = [], []
    for line in out.splitlines():  # "tests/x.py::test_y[a, b] PASSED  [ 50%]"
        match = re.match(r"^(\S+\.py::.+?) (PASSED|FAILED|ERROR)\b", line)
        if match:
            (passed if match.group(2) == "PASSED" else failed).append(match.group(1))
    return {"passed": passed, "failed": failed, "from": "pytest -v output (no junit XML)"}


def _junit(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return {}
    failed = [
        f"{c.get('classname')}::{c.get('name')}"
        for c in suite.iter("testcase")
        if c.find("failure") is not None or c.find("error") is not None
    ]
    passed = [
        f"{c.get('classname')}::{c.get('name')}"
        for c in suite.iter("testcase")
        if len(c) == 0 or all(e.tag in ("system-out", "system-err") for e in c)
    ]
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")} | {
        "failed": failed,
        "passed": passed,
    }


def run_step(step: Step, ctx: Context, timeout: float, log: Any) -> dict[str, Any]:
    """Run one step (or record why not) and collect what it wrote."""
    record: dict[str, Any] = {"what": step.what}
    reason = skip_reason(step, ctx)
    if reason is not None or step.name not in COMMANDS:
        return {**record, "status": "skipped", "note": reason or "nothing to run", "seconds": 0.0}
    cmd = COMMANDS[step.name](ctx, timeout)
    log.write(f"\n===== {step.name}: {' '.join(cmd)} (limit {timeout:.0f} s)\n")
    status, code, seconds, out = run_command(cmd, timeout, log)
    record.update(
        status=status,
        returncode=code,
        seconds=round(seconds, 1),
        limit_s=round(timeout),
        command=" ".join(cmd),
    )
    if status != "passed":
        record["tail"] = out.strip().splitlines()[-TAIL_LINES:]
    if step.name == "cuda_tests":
        record["result"] = _junit(ctx.scratch / "cuda_tests.xml") or _verbose_results(out)
    elif ctx.json(step.name).is_file():
        record["result"] = json.loads(ctx.json(step.name).read_text())
    return record


def _best(rows: list[dict[str, Any]], resolution: int, batch: int) -> float | None:
    speeds = [
        r["img_s"]
        for r in rows
        if r.get("resolution") == resolution
        and r.get("batch") == batch
        and r.get("path") != "plain"
        and "img_s" in r
    ]
    return max(speeds) if speeds else None


def figures(steps: dict[str, Any]) -> dict[str, Any]:
    """The figures the targets are judged on, from the steps' results (None: not measured)."""
    train = steps.get("train_bench", {}).get("result", {})
    rows = train.get("rows", [])
    inference = steps.get("inference_bench", {}).get("result", {})
    summary = inference.get("summary", {})
    batch32 = inference.get("config", {}).get("batch") == 32
    final = "1024" in str(inference.get("config", {}).get("stage", ""))
    return {
        "train_1024_b16_img_s": _best(rows, 1024, 16),
        "train_1024_b4_img_s": _best(rows, 1024, 4),
        "train_128_b16_img_s": _best(rows, 128, 16),
        "inference_1024_b32_best_img_s": summary.get("best_img_per_s")
        if batch32 and final
        else None,
        "aoti_share_of_best": summary.get("aoti_share_of_best") if batch32 and final else None,
        "projected_hours": train.get("projected_hours")
        if "h100" in train.get("spec", "")
        else None,
    }


def targets(steps: dict[str, Any]) -> list[dict[str, Any]]:
    found = figures(steps)
    out = []
    for key, what, bound, kind in TARGETS:
        value = found.get(key)
        met = None if value is None else (value >= bound if kind == ">=" else value < bound)
        out.append(
            {
                "target": key,
                "what": what,
                "required": f"{kind} {bound:g}",
                "measured": value,
                "met": met,
            }
        )
    tests = steps.get("cuda_tests", {})
    smoke = steps.get("train_smoke", {}).get("result", {})
    fast_tests = [n for n in tests.get("result", {}).get("passed", []) if "test_train_fast" in n]
    out += [
        {
            "target": "cuda_tests_pass",
            "what": "every CUDA test passes",
            "required": "passed",
            "measured": tests.get("status"),
            "met": None if tests.get("status") == "skipped" else tests.get("status") == "passed",
        },
        {
            "target": "smoke_256_fade_resume",
            "what": "256x256 bf16 smoke: fade-in, save, resume",
            "required": "passed",
            "measured": smoke.get("passed"),
            "met": next(
                (r["passed"] for r in smoke.get("runs", []) if r["resolution"] == 256), None
            ),
        },
        {
            "target": "fast_matches_plain_bf16",
            "what": "fast paths match plain (GP, gradients)",
            "required": "cuda tests of test_train_fast pass",
            "measured": len(fast_tests),
            "met": None
            if tests.get("status") == "skipped"
            else bool(fast_tests) and tests.get("status") == "passed",
        },
    ]
    return out


def report(result: dict[str, Any]) -> str:
    """The tables of gpu_check.txt (also printed last)."""
    steps = [
        {
            "step": k,
            "status": v["status"],
            "seconds": v.get("seconds"),
            "note": v.get("note", "") or (v.get("tail") or [""])[-1][:90],
        }
        for k, v in result["steps"].items()
    ]
    parts = [
        f"progan-dsl device check ({'quick' if result['quick'] else 'full'}) on "
        f"{result['environment'].get('gpu') or 'cpu'}, {result['seconds']:.0f} s",
        format_table(steps, ["step", "status", "seconds", "note"]),
    ]
    train = result["steps"].get("train_bench", {}).get("result", {})
    cols = ["resolution", "batch", "path", "iter_ms", "img_s", "peak_mem_gb", "gp_share", "note"]
    if train.get("rows"):
        parts.append(format_table(train["rows"], cols))
    if train.get("projected_hours") is not None:
        parts.append(
            f"projected schedule ({train.get('projected_path')}): {train['projected_hours']:.2f} h"
        )
    inference = result["steps"].get("inference_bench", {}).get("result", {})
    if inference.get("inference"):
        parts.append(
            format_table(
                inference["inference"],
                [
                    "backend",
                    "provider",
                    "precision",
                    "ms_per_batch",
                    "img_per_s",
                    "first_call_s",
                    "build_s",
                    "note",
                ],
            )
        )
    parts.append(format_table(result["targets"], ["target", "required", "measured", "met"]))
    return "\n\n".join(parts) + "\n"


def environment(path: Path) -> None:
    """The environment step (in its own process): versions, devices, import locations."""
    import importlib.metadata as md
    import platform
    import shutil

    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "compiler": shutil.which(os.environ.get("CXX", "g++")),
    }
    for name in ("pydantic", "onnxruntime", "onnx", "onnxscript", "triton", "numpy"):
        try:
            info[name] = md.version(name)
        except md.PackageNotFoundError:
            info[name] = None
    import onnxruntime

    import progan_dsl.codegen

    info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    info["progan_dsl_from"] = str(Path(progan_dsl.__file__).parent)
    info["codegen_from"] = str(Path(progan_dsl.codegen.__file__).resolve().parent)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_count=torch.cuda.device_count(),
            capability=f"{props.major}.{props.minor}",
            memory_gb=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            sms=props.multi_processor_count,
        )
        if shutil.which("nvidia-smi"):  # a read-only query: clocks and power as found
            query = "name,driver_version,clocks.sm,clocks.mem,power.draw,temperature.gpu"
            done = subprocess.run(
                ["nvidia-smi", f"--query-gpu={query}", "--format=csv"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            info["nvidia_smi"] = done.stdout.strip().splitlines()
    print(json.dumps(info, indent=1))
    write_json("environment", info, path, quiet=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="check.sh", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CI-sized, on whatever device is here")
    p.add_argument("--out", type=Path, default=None, help="default $OUT, else out/gpu/")
    p.add_argument("--steps", default=None, help="comma list of steps to run (default: all)")
    p.add_argument("--total", type=float, default=None, help="seconds for the whole check")
    p.add_argument("--environment", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.environment is not None:
        environment(args.environment)
        return 0
    import torch

    out = args.out or Path(os.environ.get("OUT") or ROOT / "out" / "gpu")
    out.mkdir(parents=True, exist_ok=True)
    chosen = args.steps.split(",") if args.steps else [s.name for s in STEPS]
    unknown = set(chosen) - {s.name for s in STEPS}
    if unknown:
        print(f"check: unknown steps {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    total = args.total or (QUICK_TOTAL_S if args.quick else FULL_TOTAL_S)
    began = time.perf_counter()
    result: dict[str, Any] = {"quick": args.quick, "steps": {}, "environment": {}, "seconds": 0}
    with (
        tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp,
        open(out / "check.log", "w") as log,
    ):
        ctx = Context(args.quick, Path(tmp), torch.cuda.is_available())
        for step in STEPS:
            if step.name not in chosen:
                continue
            left = total - (time.perf_counter() - began)
            budget = min(step.quick_budget_s if args.quick else step.budget_s, left)
            if left < 5 and skip_reason(step, ctx) is None and step.name in COMMANDS:
                record = {
                    "what": step.what,
                    "status": "skipped",
                    "seconds": 0.0,
                    "note": f"skipped: the check's {total:g} s were spent",
                }
            else:
                record = run_step(step, ctx, budget, log)
            result["steps"][step.name] = record
            print(
                f"[{step.name}] {record['status']} ({record.get('seconds', 0):.0f} s) "
                f"{record.get('note', '')}",
                flush=True,
            )
            for line in record.get("tail", []):
                print(f"    {line}", flush=True)
            if step.name == "environment":
                result["environment"] = record.get("result", {})
            result["seconds"] = time.perf_counter() - began
            result["targets"] = targets(result["steps"])
            write_json("gpu_check", result, out / "gpu_check.json", quiet=True)
    result["passed"] = [k for k, v in result["steps"].items() if v["status"] == "passed"]
    result["failed"] = [
        k for k, v in result["steps"].items() if v["status"] in ("failed", "timeout")
    ]
    write_json("gpu_check", result, out / "gpu_check.json", quiet=True)
    text = report(result)
    (out / "gpu_check.txt").write_text(text)
    print("\n" + text + f"\nwrote {out / 'gpu_check.json'}, gpu_check.txt, check.log", flush=True)
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
