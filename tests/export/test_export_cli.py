"""`progan-export` and `progan-generate` end to end on checkpoints of the tiny spec: which
checkpoint and stage ship, EMA weights, --no-fuse/--source/--batch/--precision, determinism,
torch vs onnxruntime, and exit code 2 for every user error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from progan_dsl.cli import export_main, generate_main
from progan_dsl.compiler import compile_spec
from progan_dsl.export.onnx_export import read_metadata
from progan_dsl.export.sampling import latents
from progan_dsl.train.checkpoint import save_checkpoint
from tests.conftest import TINY

FP16_REL_L2 = 1e-2  # the documented fp16 bound (see test_export_onnx.py)


def write_run(folder: Path, stages: list[tuple[int, str]]) -> dict[tuple[int, str], dict]:
    """Checkpoints of the tiny spec with the documented keys; G_ema differs from G."""
    program = compile_spec(TINY)
    states = {}
    for i, (res, phase) in enumerate(stages):
        stage = program.stage(res, phase)
        torch.manual_seed(100 + i)
        G, G_ema, D = (
            program.build("G", stage),
            program.build("G", stage),
            program.build("D", stage),
        )
        with torch.no_grad():
            for p in G_ema.parameters():
                p.add_(0.3 * torch.randn_like(p))
        state = {
            "spec_text": program.loaded.doc.text,
            "spec_hash": program.loaded.hash,
            "spec_path": str(TINY),
            "stage": {"resolution": res, "phase": phase},
            "images_shown": 1000 * (i + 1),
            "G": G.state_dict(),
            "D": D.state_dict(),
            "G_ema": G_ema.state_dict(),
            "opt_G": {},
            "opt_D": {},
            "rng": {},
            "loader": {},
            "extra": {},
        }
        save_checkpoint(state, folder / "checkpoints")
        states[(res, phase)] = state
    return states


def ema_generator(state: dict, resolution: int) -> torch.nn.Module:
    program = compile_spec(TINY)
    G = program.build("G", program.stage(resolution)).eval()
    G.load_state_dict({k: v for k, v in state["G_ema"].items() if k in G.state_dict()})
    return G


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("run") / "00001-tiny"
    states = write_run(
        folder, [(4, "stable"), (8, "fade"), (8, "stable"), (16, "fade"), (16, "stable")]
    )
    return folder, states


@pytest.fixture(scope="module")
def exported(run: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert export_main([str(run[0]), "--out", str(out)]) == 0
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
    assert names == ["G_ema.safetensors", "generate.py", "progan_tiny", "spec.yaml"]
    assert (src / "spec.yaml").read_text() == TINY.read_text()
    assert (src / "progan_tiny" / "g_0008_stable.py").is_file()
    grid_src = tmp_path / "from_source.png"
    subprocess.run(
        [
            sys.executable,
            "-I",
            str(src / "generate.py"),
            "--n",
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
                "--checkpoint",
                str(fade16),
                "--resolution",
                "8",
                "--n",
                "9",
                "--seed",
                "3",
                "--out",
                str(grid_cli),
            ]
        )
        == 0
    )
    with Image.open(grid_src) as a, Image.open(grid_cli) as b:
        assert a.size == b.size == (24, 24)
        assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 1


def test_generate_is_deterministic_and_backends_agree(
    run: tuple[Path, dict], exported: Path, tmp_path: Path
) -> None:
    folder, _ = run
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    for path in (first, second):
        assert (
            generate_main(["--onnx", str(exported), "--n", "10", "--seed", "7", "--out", str(path)])
            == 0
        )
    assert first.read_bytes() == second.read_bytes()
    by_torch, by_ort = tmp_path / "torch.png", tmp_path / "ort.png"
    assert (
        generate_main(
            ["--checkpoint", str(folder), "--n", "10", "--seed", "7", "--out", str(by_torch)]
        )
        == 0
    )
    assert (
        generate_main(
            [
                "--checkpoint",
                str(folder),
                "--backend",
                "onnxruntime",
                "--n",
                "10",
                "--seed",
                "7",
                "--out",
                str(by_ort),
            ]
        )
        == 0
    )
    with Image.open(first) as a, Image.open(by_torch) as b, Image.open(by_ort) as c:
        assert a.mode == "L" and a.size == (64, 48)  # 4 columns x 3 rows of 16x16
        pixels = [np.asarray(img, np.int16) for img in (a, b, c)]
    assert np.abs(pixels[0] - pixels[1]).max() <= 1  # rounding of fp32 differences only
    np.testing.assert_array_equal(pixels[0], pixels[2])  # the same exported graph
    other = tmp_path / "other.png"
    assert (
        generate_main(["--onnx", str(exported), "--n", "10", "--seed", "8", "--out", str(other)])
        == 0
    )
    assert other.read_bytes() != first.read_bytes()

    singles = tmp_path / "singles"
    assert (
        generate_main(["--onnx", str(exported), "--n", "10", "--seed", "7", "--out", str(singles)])
        == 0
    )
    files = sorted(singles.iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(10)]
    with Image.open(files[5]) as img:  # image 5 sits in row 1, column 1 of the 4-column grid
        np.testing.assert_array_equal(np.asarray(img, np.int16), pixels[0][16:32, 16:32])


def test_generate_interpolation_gif(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "walk.gif"
    assert (
        generate_main(
            [
                "--onnx",
                str(exported),
                "--n",
                "3",
                "--interpolate",
                "4",
                "--fps",
                "20",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with Image.open(out) as img:
        assert (img.n_frames, img.size, img.info["duration"]) == (12, (16, 16), 50)
    frames = tmp_path / "frames"
    assert (
        generate_main(
            [
                "--onnx",
                str(exported),
                "--n",
                "2",
                "--interpolate",
                "3",
                "--interpolation",
                "linear",
                "--out",
                str(frames),
            ]
        )
        == 0
    )
    assert len(list(frames.glob("*.png"))) == 6


def test_user_errors_exit_2_without_traceback(
    run: tuple[Path, dict], exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder, states = run
    not_ckpt = tmp_path / "notes.pt"
    not_ckpt.write_text("hello")
    fade_only = tmp_path / "fade_only"
    write_run(fade_only, [(4, "stable"), (8, "fade")])
    (fade_only / "checkpoints" / "checkpoint-000001000.pt").unlink()
    out, png = str(tmp_path / "x.onnx"), str(tmp_path / "g.png")
    cases = [
        (export_main, [str(tmp_path / "missing"), "--out", out], "no such checkpoint"),
        (export_main, [str(not_ckpt), "--out", out], "not a checkpoint"),
        (export_main, [str(tmp_path), "--out", out], "no checkpoint-*.pt"),
        (export_main, [str(folder), "--resolution", "32", "--out", out], "valid: 4, 8, 16"),
        (export_main, [str(folder), "--resolution", "12", "--out", out], "valid: 4, 8, 16"),
        (export_main, [str(fade_only), "--out", out], "--resolution"),
        (export_main, [str(folder)], "--out"),
        (export_main, [str(folder), "--out", out, "--batch", "0"], "--batch"),
        (export_main, [str(folder), "--out", out, "--precision", "int8"], "--precision"),
        (generate_main, ["--onnx", str(tmp_path / "none.onnx"), "--out", png], "no such ONNX"),
        (generate_main, ["--onnx", str(not_ckpt), "--out", png], "cannot load"),
        (
            generate_main,
            ["--onnx", str(exported), "--out", str(tmp_path / "g.gif")],
            "--interpolate",
        ),
        (generate_main, ["--onnx", str(exported), "--out", str(tmp_path / "g.jpg")], ".png"),
        (
            generate_main,
            ["--onnx", str(exported), "--interpolate", "3", "--out", str(tmp_path / "g.png")],
            ".gif",
        ),
        (
            generate_main,
            [
                "--onnx",
                str(exported),
                "--n",
                "1",
                "--interpolate",
                "3",
                "--out",
                str(tmp_path / "g.gif"),
            ],
            "at least 2",
        ),
        (
            generate_main,
            ["--onnx", str(exported), "--backend", "torch", "--out", png],
            "--checkpoint",
        ),
        (generate_main, ["--onnx", str(exported), "--device", "cuda", "--out", png], "cuda"),
        (generate_main, ["--checkpoint", str(folder), "--resolution", "64", "--out", png], "valid"),
        (generate_main, ["--out", png], "--onnx"),
    ]
    for main, argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, (argv, err)
    assert not any((tmp_path / name).exists() for name in ("x.onnx", "g.png", "g.gif", "g.jpg"))
