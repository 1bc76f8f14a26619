"""The device check (`benchmarks/gpu/check.sh`) in its CI-sized `--quick` form on the CPU, so the
one prepared GPU call cannot fail on a typo; and its step isolation (a failing or hanging step is
recorded and the rest still run) on stand-in steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu import check
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out)}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu" / "check.sh"), "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done, out


def test_quick_check_runs_every_step_and_writes_its_files(quick) -> None:  # type: ignore[no-untyped-def]
    done, out = quick
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["check.log", "gpu_check.json", "gpu_check.txt"]
    result = json.loads((out / "gpu_check.json").read_text())
    status = {name: step["status"] for name, step in result["steps"].items()}
    assert status == {
        "environment": "passed",
        "cuda_tests": "skipped",
        "train_smoke": "passed",
        "nccl_2proc": "skipped",
        "train_bench": "passed",
        "inference_bench": "passed",
    }
    assert result["steps"]["cuda_tests"]["note"] == "skipped: no CUDA"
    assert result["failed"] == [] and result["quick"] is True
    assert result["environment"]["cuda_available"] is False
    assert result["environment"]["pydantic"]  # the package set the device lacks is importable


def test_quick_check_results_hold_the_figures_the_targets_read(quick) -> None:  # type: ignore[no-untyped-def]
    _, out = quick
    result = json.loads((out / "gpu_check.json").read_text())
    smoke = result["steps"]["train_smoke"]["result"]
    assert smoke["passed"] and [r["resolution"] for r in smoke["runs"]] == [8, 16]
    assert all(all(r["checks"].values()) for r in smoke["runs"])
    train = result["steps"]["train_bench"]["result"]
    assert [(r["resolution"], r["batch"], r["path"]) for r in train["rows"]] == [
        (8, 8, "plain"),
        (8, 8, "fast"),
    ]
    assert all(r["img_s"] > 0 for r in train["rows"]) and train["rows"][0]["lsgan_iter_ms"] > 0
    assert isinstance(train["rows"][0]["gp_share"], float)  # measured (noisy at this size)
    assert "gp_share" not in train["rows"][1]  # not on a compiled path
    assert "compile(aot_eager)" in train["rows"][1]["fast_paths"]
    assert [r["resolution"] for r in train["sweep"]] == [4, 8, 16]
    assert train["projected_hours"] > 0
    rows = {
        (r["backend"], r["precision"]): r
        for r in result["steps"]["inference_bench"]["result"]["inference"]
    }
    assert rows[("torch eager", "fp32")]["img_per_s"] > 0
    assert rows[("torch cudagraphs", "fp32")]["note"] == "skipped: no CUDA"
    assert rows[("aoti", "fp32")]["img_per_s"] > 0 and rows[("torch compile", "fp32")]["iters"]
    targets = {t["target"]: t for t in result["targets"]}
    assert set(targets) == {key for key, *_ in check.TARGETS} | {
        "cuda_tests_pass",
        "smoke_256_fade_resume",
        "fast_matches_plain_bf16",
    }
    assert all(t["met"] is None for t in targets.values())  # nothing to judge on a CPU
    text = (out / "gpu_check.txt").read_text()
    assert text.startswith("progan-dsl device check (quick) on cpu") and "projected_hours" in text
    assert text in quick[0].stdout  # the tables are the last thing the device call prints


def test_a_failing_or_hanging_step_is_recorded_and_the_rest_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    py = sys.executable
    # the limits of the steps that end are hang guards, generous for a busy machine (each ends
    # in well under a second); the hanging step sleeps 60 times its limit
    steps = (
        check.Step("environment", 120, 120, False, "ok"),
        check.Step("train_smoke", 120, 120, False, "fails"),
        check.Step("train_bench", 1, 1, False, "hangs"),
        check.Step("cuda_tests", 120, 120, True, "needs CUDA"),
        check.Step("inference_bench", 120, 120, False, "still runs"),
    )

    def write(name: str, code: int) -> list[str]:
        return [
            py,
            "-c",
            f"import json,sys; print('step {name}'); "
            f"json.dump({{'ran': '{name}'}}, open(sys.argv[1], 'w')); sys.exit({code})",
            str(tmp_path / "scratch" / f"{name}.json"),
        ]

    commands = {
        "environment": lambda ctx, b: write("environment", 0),
        "train_smoke": lambda ctx, b: write("train_smoke", 3),
        "train_bench": lambda ctx, b: [py, "-c", "import time; time.sleep(60)"],
        "inference_bench": lambda ctx, b: write("inference_bench", 0),
    }
    monkeypatch.setattr(check, "STEPS", steps)
    monkeypatch.setattr(check, "COMMANDS", commands)
    monkeypatch.setattr(
        check.Context, "json", lambda self, step: tmp_path / "scratch" / f"{step}.json"
    )
    (tmp_path / "scratch").mkdir()
    assert check.main(["--quick", "--out", str(tmp_path / "out")]) == 1
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    status = {k: v["status"] for k, v in result["steps"].items()}
    assert status == {
        "environment": "passed",
        "train_smoke": "failed",
        "train_bench": "timeout",
        "cuda_tests": "skipped",
        "inference_bench": "passed",
    }
    assert result["steps"]["train_smoke"]["returncode"] == 3
    assert result["steps"]["train_smoke"]["tail"] == ["step train_smoke"]
    assert result["steps"]["inference_bench"]["result"] == {"ran": "inference_bench"}
    assert result["failed"] == ["train_smoke", "train_bench"]
    assert result["passed"] == ["environment", "inference_bench"]
    assert "step environment" in (tmp_path / "out" / "check.log").read_text()
