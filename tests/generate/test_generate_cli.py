"""`progan-generate` end to end: one generator source naming (run folder, checkpoint, .onnx),
determinism, torch vs onnxruntime, --seeds naming files by seed, grids with gutters, walks, output
folders that are never clobbered, and exit code 2 for every user error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from progan_dsl.cli import export_main, generate_main
from tests.conftest import write_tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run") / "00001-tiny"
    write_tiny_run(folder, [(4, "stable"), (8, "stable"), (16, "stable")])
    return folder


@pytest.fixture(scope="module")
def exported(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert export_main(["--network", str(run), "--out", str(out), "--quiet"]) == 0
    return out


def gen(*argv: str) -> int:
    return generate_main(["--device", "cpu", "--quiet", *argv])


def test_deterministic_and_backends_agree(run: Path, exported: Path, tmp_path: Path) -> None:
    first, second, by_torch = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "torch.png"
    native = ("--upscale", "1")  # cells at the generator's 16x16
    for path in (first, second):
        assert (
            gen(
                "--network",
                str(exported),
                "--num",
                "10",
                "--seed",
                "7",
                "--out",
                str(path),
                *native,
            )
            == 0
        )
    assert first.read_bytes() == second.read_bytes()
    assert (
        gen("--network", str(run), "--num", "10", "--seed", "7", "--out", str(by_torch), *native)
        == 0
    )
    with Image.open(first) as a, Image.open(by_torch) as b:
        assert a.mode == "L" and a.size == (4 * 16 + 3 * 2, 3 * 16 + 2 * 2)  # 4 x 3 cells, gutters
        pixels = [np.asarray(img, np.int16) for img in (a, b)]
    assert np.abs(pixels[0] - pixels[1]).max() <= 1  # rounding of fp32 differences only
    assert (pixels[0][16:18] == 128).all()  # the grey gutter below the first row
    other = tmp_path / "other.png"
    assert (
        gen("--network", str(exported), "--num", "10", "--seed", "8", "--out", str(other), *native)
        == 0
    )
    assert other.read_bytes() != first.read_bytes()

    singles = tmp_path / "singles"
    assert gen("--network", str(exported), "--num", "10", "--seed", "7", "--out", str(singles)) == 0
    files = sorted(p for p in singles.iterdir() if p.suffix == ".png")
    assert [f.name for f in files] == [f"img{i:06d}.png" for i in range(10)]
    with Image.open(files[5]) as img:  # image 5 sits in row 1, column 1 of the 4-column grid
        np.testing.assert_array_equal(np.asarray(img, np.int16), pixels[0][18:34, 18:34])


def test_seeds_name_files_and_do_not_depend_on_each_other(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "by_seed"
    assert gen("--network", str(exported), "--seeds", "3-4,42", "--out", str(out)) == 0
    assert sorted(p.name for p in out.glob("*.png")) == [
        "seed0003.png",
        "seed0004.png",
        "seed0042.png",
    ]
    alone = tmp_path / "alone"
    assert gen("--network", str(exported), "--seeds", "42", "--out", str(alone)) == 0
    assert (alone / "seed0042.png").read_bytes() == (out / "seed0042.png").read_bytes()


def test_output_folders_are_not_clobbered(exported: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "mixed"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for extra in ([], ["--force"]):  # a folder that holds someone else's files: never touched
        assert gen("--network", str(exported), "--num", "2", "--out", str(out), *extra) == 2
        assert "not an earlier progan-generate output" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    mine = tmp_path / "mine"
    assert gen("--network", str(exported), "--num", "3", "--out", str(mine)) == 0
    assert gen("--network", str(exported), "--num", "2", "--out", str(mine)) == 2
    assert "pass --force to replace it" in capsys.readouterr().err
    assert gen("--network", str(exported), "--num", "2", "--out", str(mine), "--force") == 0
    names = sorted(p.name for p in mine.iterdir())
    assert names == [".progan-output.json", "img000000.png", "img000001.png"]


def test_interpolation_gif_and_frames(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "walk.gif"
    assert (
        gen(
            "--network",
            str(exported),
            "--num",
            "3",
            "--interpolate",
            "4",
            "--fps",
            "20",
            "--out",
            str(out),
        )
        == 0
    )
    with Image.open(out) as img:
        # 16x16 frames enlarged 16 times by default: 256 px across (VIEW_SIDE)
        assert (img.n_frames, img.size, img.info["duration"]) == (12, (256, 256), 50)
    frames = tmp_path / "frames"
    assert (
        gen(
            "--network",
            str(exported),
            "--num",
            "2",
            "--interpolate",
            "3",
            "--interpolation",
            "linear",
            "--out",
            str(frames),
        )
        == 0
    )
    assert len(list(frames.glob("frame*.png"))) == 6


def test_user_errors_exit_2_without_traceback(
    run: Path, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    not_model = tmp_path / "notes.onnx"
    not_model.write_text("hello")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    png = str(tmp_path / "g.png")
    net = ["--network", str(exported)]
    cases = [
        (["--network", str(tmp_path / "none.onnx"), "--out", png], "no such ONNX"),
        (["--network", str(not_model), "--out", png], "cannot load"),
        ([*net, "--out", str(tmp_path / "g.gif")], "--interpolate"),
        ([*net, "--out", str(tmp_path / "g.jpg")], ".png"),
        ([*net, "--interpolate", "3", "--out", png], ".gif"),
        (
            [*net, "--num", "1", "--interpolate", "3", "--out", str(tmp_path / "g.gif")],
            "at least 2",
        ),
        ([*net, "--device", "tpu", "--out", png], "--device must be"),
        ([*net, "--num", "0", "--out", png], "--num"),
        ([*net, "--num", "100000000000", "--out", png], "allowed"),
        ([*net, "--seeds", "1-x", "--out", png], "--seeds"),
        ([*net, "--num", "2", "--seeds", "1", "--out", png], "not allowed with"),
        ([*net, "--fps", "inf", "--interpolate", "2", "--out", str(tmp_path / "w.gif")], "finite"),
        ([*net, "--out", str(a_file / "g.png")], "not a folder"),
        (["--network", str(run), "--resolution", "64", "--out", png], "no stage 64"),
        (["--out", png], "--network"),
    ]
    for argv, message in cases:
        assert gen(*argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, (argv, err)
    assert not any((tmp_path / name).exists() for name in ("g.png", "g.gif", "g.jpg", "w.gif"))


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img, np.int16)


def test_upscale_enlarges_cells_by_nearest_neighbour(exported: Path, tmp_path: Path) -> None:
    net = ["--network", str(exported), "--num", "10", "--seed", "7"]
    native, auto, singles = tmp_path / "native.png", tmp_path / "auto.png", tmp_path / "singles"
    assert gen(*net, "--upscale", "1", "--out", str(native)) == 0
    assert gen(*net, "--out", str(auto)) == 0  # auto: 16 px images shown 256 px across
    small, big = _pixels(native), _pixels(auto)
    assert big.shape == (3 * 256 + 2 * 2, 4 * 256 + 3 * 2)  # 4 x 3 cells, 2 px gutters kept
    for row, col in ((0, 0), (1, 2), (2, 1)):
        cell = small[row * 18 : row * 18 + 16, col * 18 : col * 18 + 16]
        top, left = row * 258, col * 258
        np.testing.assert_array_equal(
            big[top : top + 256, left : left + 256], np.kron(cell, np.ones((16, 16), np.int16))
        )
    assert (big[256:258] == 128).all()  # the grey gutter below the first row
    assert gen(*net, "--out", str(singles)) == 0  # PNG folders keep the generator's size
    assert _pixels(singles / "img000000.png").shape == (16, 16)
    assert gen(*net, "--upscale", "3", "--out", str(singles), "--force") == 0
    np.testing.assert_array_equal(
        _pixels(singles / "img000005.png"), np.kron(small[18:34, 18:34], np.ones((3, 3), np.int16))
    )


def test_a_grid_of_walks_in_one_animation(exported: Path, tmp_path: Path) -> None:
    net = ["--network", str(exported), "--seed", "3", "--interpolate", "3", "--upscale", "2"]
    grid, single = tmp_path / "grid", tmp_path / "single"
    assert gen(*net, "--num", "2", "--walks", "4", "--out", str(grid)) == 0
    assert gen(*net, "--num", "2", "--out", str(single)) == 0
    frames = sorted(grid.glob("frame*.png"))
    assert len(frames) == 6 == len(list(single.glob("frame*.png")))  # 2 keys x 3 steps each
    for t, frame in enumerate(frames):
        pixels = _pixels(frame)
        assert pixels.shape == (2 * 32 + 2, 2 * 32 + 2)  # 2 x 2 walks of 32 px (16 px x 2)
        # walk 0 goes through the first two key latents of the seed: the single walk
        np.testing.assert_array_equal(pixels[:32, :32], _pixels(single / f"frame{t:06d}.png"))
        assert not np.array_equal(pixels[:32, :32], pixels[:32, 34:])  # walk 1: other keys
    gif = tmp_path / "walks.gif"
    assert gen(*net, "--num", "2", "--walks", "3", "--cols", "3", "--out", str(gif)) == 0
    with Image.open(gif) as img:
        assert (img.n_frames, img.size) == (6, (3 * 32 + 2 * 2, 32))


def test_upscale_and_walk_errors_exit_2(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    net = ["--network", str(exported)]
    gif, png = str(tmp_path / "w.gif"), str(tmp_path / "g.png")
    cases = [
        ([*net, "--walks", "2", "--out", png], "needs --interpolate"),
        ([*net, "--seeds", "0-2", "--walks", "2", "--interpolate", "2", "--out", gif], "multiple"),
        ([*net, "--upscale", "0", "--out", png], "from 1 to 64"),
        ([*net, "--upscale", "big", "--out", png], "'auto' or an integer"),
        ([*net, "--walks", "300", "--interpolate", "2", "--out", gif], "at most 256"),
    ]
    for argv, message in cases:
        assert gen(*argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "w.gif").exists() and not (tmp_path / "g.png").exists()
