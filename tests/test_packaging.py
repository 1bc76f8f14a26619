"""The wheel built from the repository works outside it: progan-compile, progan-train --dry-run
and progan-export run from another folder against the installed files, and the code generator
installs as progan_dsl.codegen, never as a generic top-level `codegen` package. `make setup`
takes torch from where README says (pip's indexes, or TORCH_INDEX) and keeps one already there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY

EXPORT_FROM_INSTALLED = """
import sys, torch
from progan_dsl import Checkpoint, compile_spec
from progan_dsl.cli import export_main
program = compile_spec(sys.argv[1])
stage = program.final_stage
torch.manual_seed(0)
G = program.build("G", stage)
Checkpoint.from_weights(program.loaded, stage, G=G.state_dict()).save(sys.argv[2])
sys.exit(export_main(["--network", sys.argv[2], "--out", sys.argv[3]]))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if build.returncode != 0 and "No module named" in build.stderr:
        pytest.skip(f"cannot build without isolation here: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr[-3000:]
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools' scratch folder
    (whl,) = out.glob("progan_dsl-*.whl")
    return whl


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert not {"codegen", "benchmarks", "tests"} & tops
    assert "progan_dsl/benchmarks/gpu/check.sh" in names
    assert "progan_dsl/codegen/templates/stage_module.py.j2" in names
    assert "progan_dsl/codegen/templates/generate.py.j2" in names
    assert "progan_dsl/nn/layers.py" in names and "progan_dsl/pretrained/unpickle.py" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry).decode()
    for name in ("compile", "train", "dataset", "metrics", "export", "generate", "import", "bench"):
        assert f"progan-{name} = progan_dsl.cli:{name}_main" in scripts


def test_installed_wheel_runs_outside_the_repository(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert not (target / "codegen").exists()
    spec = tmp_path / "tiny.yaml"
    shutil.copyfile(TINY, spec)
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}

    def run(*code: str) -> str:
        done = subprocess.run(
            [sys.executable, *code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    where = run(
        "-c",
        "import progan_dsl, progan_dsl.codegen as c; print(progan_dsl.__file__); print(c.__file__)",
    )
    assert all(line.startswith(str(target)) for line in where.split())
    assert "ok " in run(
        "-c",
        "from progan_dsl.cli import compile_main; import sys; "
        f"sys.exit(compile_main([{str(spec)!r}]))",
    )
    assert "total:" in run(
        "-c",
        "from progan_dsl.cli import train_main; import sys; "
        f"sys.exit(train_main([{str(spec)!r}, '--dry-run']))",
    )
    script = tmp_path / "export.py"
    script.write_text(EXPORT_FROM_INSTALLED)
    run(str(script), str(spec), str(tmp_path / "ckpt.pt"), str(tmp_path / "g.onnx"))
    assert (tmp_path / "g.onnx").stat().st_size > 1000


# ---- make setup: where torch comes from -----------------------------------------------------

FAKE_PYTHON = """#!/bin/sh
# stands in for the venv's python: logs its arguments, answers `import torch` as told
echo "$*" >> "$FAKE_LOG"
case "$*" in
  "-c import torch") exit "$FAKE_HAS_TORCH" ;;
  "-c import torch; print(torch.__version__)") echo 2.9.0+cu126 ;;
esac
exit 0
"""


def _setup_log(tmp_path: Path, *, has_torch: bool, extra: tuple[str, ...] = ()) -> list[str]:
    """What `make .venv/.installed` (setup without graphviz) runs against a fake venv python."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / ("venv-with-torch" if has_torch else "venv")
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    log = tmp_path / f"{venv.name}.log"
    env = {**os.environ, "FAKE_LOG": str(log), "FAKE_HAS_TORCH": "0" if has_torch else "1"}
    for name in ("TORCH_INDEX", "TORCH_SPEC", "TORCH_VERSION", "MAKEFLAGS"):
        env.pop(name, None)
    done = subprocess.run(
        ["make", "-s", f"{venv}/.installed", f"VENV={venv}", "PYTHON=true", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (venv / ".installed").exists()
    return log.read_text().splitlines()


def test_setup_installs_the_pinned_torch_from_pips_own_indexes(tmp_path: Path) -> None:
    assert _setup_log(tmp_path, has_torch=False) == [
        "-c import torch",
        "-m pip install -q torch==2.13.0",
        "-m pip install -q -e .[dev,mnist,fid]",
    ]


def test_setup_takes_torch_from_the_index_it_is_given(tmp_path: Path) -> None:
    url = "https://download.pytorch.org/whl/cpu"
    log = _setup_log(tmp_path, has_torch=False, extra=(f"TORCH_INDEX={url}",))
    assert log[1] == f"-m pip install -q --index-url {url} torch==2.13.0"
    log = _setup_log(tmp_path / "spec", has_torch=False, extra=("TORCH_SPEC=torch>=2.3",))
    assert log[1] == "-m pip install -q torch>=2.3"


def test_setup_keeps_a_torch_already_in_the_venv(tmp_path: Path) -> None:
    log = _setup_log(tmp_path, has_torch=True, extra=("TORCH_INDEX=https://example.invalid",))
    assert not any("install -q torch" in line or "--index-url" in line for line in log)
    assert log[-1] == "-m pip install -q -e .[dev,mnist,fid]"
