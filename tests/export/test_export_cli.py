"""`progan-export` end to end on checkpoints of the tiny spec: which checkpoint and stage ship,
EMA weights, --no-fuse/--source/--batch/--precision, and exit code 2 for every user error.
(`progan-generate` is tests/generate/test_generate_cli.py.)"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from progan_dsl.checkpoint import Checkpoint
from progan_dsl.cli import export_main, generate_main
from progan_dsl.compiler import compile_spec
from progan_dsl.export.onnx_export import read_metadata
from progan_dsl.generate.latents import latents
from tests.conftest import TINY, write_tiny_run

FP16_REL_L2 = 1e-2  # the documented fp16 bound (see test_export_onnx.py)
STAGES = [(4, "stable"), (8, "fade"), (8, "stable"), (16, "fade"), (16, "stable")]


def ema_generator(state: Checkpoint, resolution: int) -> torch.nn.Module:
    program = compile_spec(TINY)
    G = program.build("G", program.stage(resolution)).eval()
    G.load_state_dict({k: v for k, v in state.G_ema.items() if k in G.state_dict()})
    return G


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("run") / "00001-tiny"
    return folder, write_tiny_run(folder, STAGES)


@pytest.fixture(scope="module")
def exported(run: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert export_main(["--network", str(run[0]), "--out", str(out), "--quiet"]) == 0
    return out


def test_export_of_a_run_ships_the_newest_stable_ema_generator(
    run: tuple[Path, dict], exported: Path
) -> None:
    folder, states = run
    meta = read_metadata(onnx.load(str(exported)))
    assert (meta["stage"], meta["images_trained"], meta["weights"]) == (
        "16/stable",
        "5000",
        "G_ema",
    )
    assert meta["checkpoint"] == "checkpoint-000005000.pt"
    z = latents(4, 16, seed=11)
    got = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"]).run(
        None, {"z": z}
    )[0]
    with torch.no_grad():
        want = ema_generator(states[(16, "stable")], 16)(torch.from_numpy(z)).numpy()
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-4


def test_resolution_no_fuse_fp16_fixed_batch_and_source(
    run: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """From the fade-in checkpoint to 16 (which still holds b8_torgb): the 8x8 stable G, unfused,
    fp16, batch 3, plus the PyTorch source folder whose generate.py draws progan-generate's grid."""
    folder, states = run
    fade16 = folder / "checkpoints" / "checkpoint-000004000.pt"
    out, src = tmp_path / "g8.onnx", tmp_path / "g8_torch"
    assert (
        export_main(
            [
                "--network",
                str(fade16),
                "--resolution",
                "8",
                "--no-fuse",
                "--precision",
                "fp16",
                "--batch",
                "3",
                "--out",
                str(out),
                "--source",
                str(src),
            ]
        )
        == 0
    )
    assert "fused_scale=off" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [3, 16]
    assert session.get_outputs()[0].shape == [3, 1, 8, 8]
    meta = dict(session.get_modelmeta().custom_metadata_map)
    assert (meta["fused_scale"], meta["precision"], meta["stage"]) == ("false", "fp16", "8/stable")
    assert {n.op_type for n in onnx.load(str(out)).graph.node} >= {"Resize", "Cast"}
    z = latents(3, 16, seed=4)
    with torch.no_grad():
        want = ema_generator(states[(16, "fade")], 8)(torch.from_numpy(z)).numpy()
    got = session.run(None, {"z": z})[0]
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < FP16_REL_L2

    names = sorted(p.name for p in src.iterdir())
    assert names == [
        ".progan-output.json",
        "G_ema.safetensors",
        "generate.py",
        "progan_tiny",
        "spec.yaml",
    ]
    assert (src / "spec.yaml").read_text() == TINY.read_text()
    assert (src / "progan_tiny" / "g_0008_stable.py").is_file()
    grid_src = tmp_path / "from_source.png"
    subprocess.run(
        [
            sys.executable,
            "-I",
            str(src / "generate.py"),
            "--num",
            "9",
            "--seed",
            "3",
            "--out",
            str(grid_src),
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=120,
    )
    grid_cli = tmp_path / "from_cli.png"
    assert (
        generate_main(
            [
                "--network",
                str(fade16),
                "--resolution",
                "8",
                "--num",
                "9",
                "--seed",
                "3",
                "--upscale",
                "1",  # generate.py draws at the generator's size
                "--out",
                str(grid_cli),
            ]
        )
        == 0
    )
    with Image.open(grid_src) as a, Image.open(grid_cli) as b:
        assert a.size == b.size == (28, 28)  # 3 x 3 cells of 8 x 8 with 2-pixel gutters
        assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 1


def test_user_errors_exit_2_without_traceback(
    run: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder, _ = run
    not_ckpt = tmp_path / "notes.pt"
    not_ckpt.write_text("hello")
    fade_only = tmp_path / "fade_only"
    write_tiny_run(fade_only, [(4, "stable"), (8, "fade")])
    (fade_only / "checkpoints" / "checkpoint-000001000.pt").unlink()
    out = str(tmp_path / "x.onnx")
    cases = [
        (["--network", str(tmp_path / "missing"), "--out", out], "no such checkpoint"),
        (["--network", str(not_ckpt), "--out", out], "not a checkpoint"),
        (["--network", str(tmp_path), "--out", out], "no checkpoint-*.pt"),
        (["--network", str(folder), "--resolution", "32", "--out", out], "no stage 32"),
        (["--network", str(folder), "--resolution", "12", "--out", out], "no stage 12"),
        (["--network", str(fade_only), "--out", out], "--resolution"),
        (["--network", str(folder)], "--out"),
        (["--network", str(folder), "--out", out, "--batch", "0"], "--batch"),
        (["--network", str(folder), "--out", out, "--precision", "int8"], "--precision"),
        (["--out", out], "--network"),
    ]
    for argv, message in cases:
        assert export_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "x.onnx").exists()


def test_source_export_on_a_full_disk_names_the_file_and_keeps_the_earlier_one(
    run: tuple[Path, dict],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "src"
    network = ["--network", str(run[0]), "--source", str(out), "--quiet"]
    assert export_main(network) == 0
    earlier = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real_write = Path.write_bytes

    def full_disk(self: Path, data: bytes) -> int:  # type: ignore[override]
        if self.suffix == ".safetensors":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    for argv in (
        [*network, "--force"],
        ["--network", str(run[0]), "--source", str(tmp_path / "new")],
    ):
        assert export_main(argv) == 2
        err = capsys.readouterr().err
        target = Path(argv[argv.index("--source") + 1])
        assert err == (
            f"error: disk full while writing {target / 'G_ema.safetensors'}; nothing older was "
            "touched; the partial folder was removed\n"
        )
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no staging folder left
