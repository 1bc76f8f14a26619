"""What every CLI shares: device names, thread defaults, argument types, errors a user causes on
the file system, output piped into a reader that stops, and progan-bench parsing like the others
(--version, --help without torch, one error message with exit 2, arguments after `--`)."""

from __future__ import annotations

import argparse
import errno
import subprocess
import sys

import pytest

from progan_dsl.cli import _os_error_message
from progan_dsl.cliutil import positive_float, positive_int, seed_int
from progan_dsl.devices import default_threads, parse_device
from progan_dsl.errors import UserError
from tests.conftest import ROOT, TINY


def test_device_names() -> None:
    assert parse_device("cpu") == ("cpu", 0)
    assert parse_device("cuda") == ("cuda", 0)
    assert parse_device(" cuda:3 ") == ("cuda", 3)
    for bad in ("gpu", "cuda:", "cuda:x", "cpu:0", "tpu"):
        with pytest.raises(UserError, match="--device must be cpu, cuda or cuda:<index>"):
            parse_device(bad)


@pytest.mark.parametrize(
    ("busy", "cores", "threads"),
    [
        (0.0, 2, 1),  # one spare core on an idle 2-core machine
        (0.4, 2, 1),
        (1.0, 2, 1),
        (5.0, 2, 1),
        (0.0, 16, 15),
        (3.2, 16, 12),
        (0.0, 1, 1),
    ],
)
def test_threads_default_to_the_cores_other_work_leaves_free(busy, cores, threads) -> None:
    assert default_threads(busy=busy, cores=cores) == threads


def test_busy_cores_is_the_non_idle_share_of_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two /proc/stat samples a window apart: 300 of 400 ticks busy on 4 cores is 3 busy cores.
    Fed fixed samples, so the answer does not depend on what else the machine runs."""
    import io

    from progan_dsl import devices

    samples = iter(
        [
            "cpu  100 0 100 700 100 0 0 0 0 0\n",  # 1000 ticks, 800 idle + iowait
            "cpu  250 0 250 750 150 0 0 0 0 0\n",  # +400 ticks, +100 idle + iowait
        ]
    )
    slept: list[float] = []
    monkeypatch.setattr(devices, "open", lambda *a, **k: io.StringIO(next(samples)), raising=False)
    monkeypatch.setattr(devices.time, "sleep", slept.append)
    monkeypatch.setattr(devices.os, "cpu_count", lambda: 4)
    assert devices.busy_cores(0.3) == pytest.approx(3.0)
    assert slept == [0.3]

    def missing(*a: object, **k: object) -> None:
        raise FileNotFoundError("/proc/stat")

    monkeypatch.setattr(devices, "open", missing, raising=False)
    assert devices.busy_cores(0.3) is None  # then default_threads uses the load average


def test_busy_cores_reads_this_machine() -> None:
    """On a system with /proc/stat: a number of cores between none and all (any load)."""
    import os

    from progan_dsl.devices import busy_cores

    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat here")
    busy = busy_cores(0.05)
    assert busy is not None and 0.0 <= busy <= (os.cpu_count() or 1)


def test_argument_types_refuse_what_would_crash_later() -> None:
    assert positive_int("3") == 3 and seed_int("0") == 0 and positive_float("0.5") == 0.5
    for parse, bad in (
        (positive_int, "0"),
        (positive_int, "100000000000"),
        (seed_int, "-1"),
        (positive_float, "inf"),
        (positive_float, "nan"),
        (positive_float, "-2"),
        (positive_float, "x"),
    ):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)


def test_file_system_errors_become_messages(tmp_path) -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/data/x.pt")
    assert (
        _os_error_message(full) == "disk full while writing /data/x.pt; nothing older was touched"
    )
    assert _os_error_message(OSError(errno.EROFS, "Read-only", "/ro/g.png")) == (
        "/ro/g.png: read-only file system"
    )
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "exists and is not a folder" in _os_error_message(
        OSError(errno.EEXIST, "File exists", str(a_file))
    )
    assert _os_error_message(OSError(errno.EIO, "I/O error")) is None  # a bug: keep the trace


@pytest.mark.parametrize(
    "argv",
    [
        ["progan-compile", "specs/celebahq_1024.yaml", "--dump"],
        ["progan-train", "specs/celebahq_1024.yaml", "--dry-run"],
    ],
)
def test_output_into_head_ends_quietly(argv) -> None:
    script = (
        f"{sys.executable} -c 'import sys; from progan_dsl.cli import "
        f"{argv[0].split('-')[1]}_main as m; sys.exit(m(sys.argv[1:]))' {' '.join(argv[1:])}"
    )
    done = subprocess.run(
        f"{script} | head -n 2", shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


# ---- progan-bench: a command like the others ----------------------------------------------------

BENCH_IN_PROCESS = (
    "import sys\n"
    "from progan_dsl.cli import bench_main\n"
    "try:\n"
    "    code = bench_main(sys.argv[1:])\n"
    "except SystemExit as stop:\n"
    "    code = stop.code\n"
    "print('torch loaded:', 'torch' in sys.modules)\n"
    "sys.exit(code)\n"
)


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BENCH_IN_PROCESS, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bench_version_and_help_read_like_every_command() -> None:
    import progan_dsl

    done = _bench("--version")
    assert done.returncode == 0
    version = f"progan-bench (progan-dsl {progan_dsl.__version__})"
    assert done.stdout == f"{version}\ntorch loaded: False\n"
    done = _bench("--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: progan-bench [-h] [--version]")
    assert "examples:\n  progan-bench " in done.stdout and "python -m" not in done.stdout
    assert done.stdout.endswith("torch loaded: False\n")  # --help answers without torch


def test_bench_bad_input_is_one_message_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from progan_dsl.cli import bench_main

    assert bench_main(["nope"]) == 2
    assert capsys.readouterr().err == (
        "error: progan-bench: unknown benchmark 'nope' (available: compile, loader, metrics, "
        "inference, train, conditional, ada_heuristics, augment, augment_cost); options for the "
        "benchmarks go after --\n"
    )
    assert bench_main(["compile", "--", "--bogus"]) == 2
    assert capsys.readouterr().err == (
        "error: progan-bench compile --: unrecognized arguments: --bogus\n"
    )
    assert bench_main(["compile", "--", "--threads", "0", "--no-write"]) == 2
    assert capsys.readouterr().err == "error: --threads must be at least 1, got 0\n"


def test_bench_passes_what_follows_the_separator_to_the_benchmark(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from progan_dsl.cli import bench_main

    out = tmp_path / "compile.json"
    assert bench_main(["compile", "--", str(TINY), "--threads", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("\n=== compile ===\n") and printed.endswith(f"wrote {out}\n")
    result = json.loads(out.read_text())
    assert result["threads"]["threads"] == 1 and result["threads"]["chosen_by"] == "--threads"
    assert [(row["spec"], row["stages"]) for row in result["compile"]] == [(str(TINY), 5)]
    assert bench_main(["compile", "--", str(TINY), "--threads", "1", "--no-write"]) == 0
    assert "wrote" not in capsys.readouterr().out
