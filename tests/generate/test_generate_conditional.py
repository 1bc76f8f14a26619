"""Class-conditional generation: `progan-generate --class` (one class, a list or all, one grid
row per class with the seeds as columns), the torch sampler binding labels through the
network's signature, and exit code 2 for --class on an unconditional generator, a class out of
range, or a conditional generator without --class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from progan_dsl.checkpoint import Checkpoint
from progan_dsl.cli import generate_main
from progan_dsl.generate.latents import latents, latents_for_seeds
from progan_dsl.generate.sampler import TorchSampler, class_labels, open_sampler
from progan_dsl.images import GUTTER, to_uint8
from tests.conftest import write_tiny_run
from tests.generate.conditional import NUM_CLASSES, write_conditional_run

LATENT, SIDE = 16, 16  # tests/specs/tiny_conditional.yaml: latent 16, 16x16 RGB


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run") / "00002-tiny_conditional"
    write_conditional_run(folder)
    return folder


@pytest.fixture(scope="module")
def G_ema(run: Path) -> torch.nn.Module:
    """The run's EMA generator, built here by hand (not through the sampler under test)."""
    ckpt = Checkpoint.read(next((run / "checkpoints").glob("*.pt")))
    program = ckpt.program()
    G = program.build("G", program.stage(16))
    G.load_state_dict(ckpt.G_ema)
    return G.eval()


def expected(G: torch.nn.Module, z: np.ndarray, classes: list[int]) -> np.ndarray:
    """uint8 images of G for latents z and classes, called with keyword arguments by name."""
    onehot = torch.zeros(len(z), NUM_CLASSES)
    onehot[torch.arange(len(z)), torch.tensor(classes)] = 1.0
    with torch.no_grad():
        return to_uint8(G(z=torch.from_numpy(z), labels=onehot).numpy())


def same_pixels(got: np.ndarray, want: np.ndarray) -> None:
    """uint8 images equal up to one level: batches of another size sum in another order, and a
    value at a rounding boundary may land one level off."""
    assert got.shape == want.shape
    assert np.abs(got.astype(np.int16) - want.astype(np.int16)).max() <= 1


def gen(*argv: str) -> int:
    return generate_main(["--device", "cpu", "--quiet", *argv])


def cell(grid: np.ndarray, row: int, col: int) -> np.ndarray:
    """The [C, H, W] image in grid cell (row, col) of an [H', W', C] grid with gutters."""
    top, left = row * (SIDE + GUTTER), col * (SIDE + GUTTER)
    return grid[top : top + SIDE, left : left + SIDE].transpose(2, 0, 1)


def test_one_class_for_every_seed(run: Path, G_ema: torch.nn.Module, tmp_path: Path) -> None:
    out = tmp_path / "threes"
    assert gen("--network", str(run), "--class", "3", "--seeds", "0-15", "--out", str(out)) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [f"class3-seed{s:04d}.png" for s in range(16)]
    want = expected(G_ema, latents_for_seeds(list(range(16)), LATENT), [3] * 16)
    other = expected(G_ema, latents_for_seeds(list(range(16)), LATENT), [4] * 16)
    for s, name in enumerate(names):
        with Image.open(out / name) as image:
            got = np.asarray(image).transpose(2, 0, 1)
        same_pixels(got, want[s])
        assert np.abs(got.astype(int) - other[s]).max() > 8  # the class changes the image


def test_class_list_grid_has_one_row_per_class(
    run: Path, G_ema: torch.nn.Module, tmp_path: Path
) -> None:
    out = tmp_path / "rows.png"
    argv = ("--network", str(run), "--class", "7,0,3", "--seeds", "5,9", "--upscale", "1")
    assert gen(*argv, "--out", str(out)) == 0
    with Image.open(out) as image:
        grid = np.asarray(image)
    assert grid.shape == (3 * SIDE + 2 * GUTTER, 2 * SIDE + GUTTER, 3)  # 3 rows, 2 columns
    z = latents_for_seeds([5, 9], LATENT)
    for row, k in enumerate([7, 0, 3]):  # the order given
        want = expected(G_ema, z, [k, k])
        for col in range(2):
            same_pixels(cell(grid, row, col), want[col])


def test_class_all_with_num_latents_as_columns(
    run: Path, G_ema: torch.nn.Module, tmp_path: Path
) -> None:
    out = tmp_path / "all.png"
    argv = ("--network", str(run), "--class", "all", "--num", "3", "--seed", "2", "--upscale", "1")
    assert gen(*argv, "--out", str(out)) == 0
    with Image.open(out) as image:
        grid = np.asarray(image)
    assert grid.shape == (10 * SIDE + 9 * GUTTER, 3 * SIDE + 2 * GUTTER, 3)
    z = latents(3, LATENT, seed=2)  # the same three latents in every row
    for k in range(NUM_CLASSES):
        want = expected(G_ema, z, [k] * 3)
        for col in range(3):
            same_pixels(cell(grid, k, col), want[col])
    folder = tmp_path / "all"
    assert gen("--network", str(run), "--class", "0-1", "--num", "2", "--out", str(folder)) == 0
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".png") == [
        "class0-img000000.png",
        "class0-img000001.png",
        "class1-img000000.png",
        "class1-img000001.png",
    ]


def test_a_walk_of_one_class(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "walk"
    argv = ("--network", str(run), "--class", "5", "--num", "2", "--interpolate", "3")
    assert gen(*argv, "--out", str(out)) == 0
    assert len(list(out.glob("frame*.png"))) == 6  # 2 key latents x 3 steps, all of class 5


def test_torch_sampler_binds_labels_by_the_signature(run: Path, G_ema: torch.nn.Module) -> None:
    sampler = open_sampler(run, device="cpu", batch_size=3)
    assert isinstance(sampler, TorchSampler) and sampler.num_classes == NUM_CLASSES
    classes = [2, 2, 8, 0, 1]
    z = latents(5, LATENT, seed=4)
    got = sampler.sample(z, labels=class_labels(classes, 5, NUM_CLASSES))  # 2 passes
    same_pixels(to_uint8(got), expected(G_ema, z, classes))
    same_pixels(sampler.sample_uint8(5, seed=4, classes=classes), expected(G_ema, z, classes))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "is a class-conditional generator (10 classes, 0-9): give --class K"),
        (("--class", "10"), "--class 10 is out of range: the generator has 10 classes (0-9)"),
        (("--class", "2,12"), "--class 12 is out of range"),
        (("--class", "x"), "'x' is not a class index, a range like 0-4, or 'all'"),
        (("--class", "3,3"), "'3,3' names a class twice"),
        (("--class", "4-2"), "'4-2' must be non-negative and ascending"),
        (("--class", "0,1", "--cols", "2"), "one row per class and one column per latent"),
        (("--class", "0,1", "--interpolate", "3"), "a latent walk draws one class; give --class K"),
    ],
)
def test_conditional_user_errors_exit_2(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, extra: tuple, message: str
) -> None:
    out = tmp_path / "out"  # a folder of PNGs (or of frames): every case can write it
    assert gen("--network", str(run), "--num", "2", *extra, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_class_on_an_unconditional_generator_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "00001-tiny"
    write_tiny_run(folder, [(4, "stable")])
    out = tmp_path / "out.png"
    assert gen("--network", str(folder), "--class", "1", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"--class: --network {folder} is an unconditional generator; it takes no class" in err
    assert not out.exists()
