"""Shared test helpers: paths, golden files, the CUDA marker, training fixtures.

The suite runs in two worker processes (`pytest -n 2`, pytest-xdist) on a 2-core machine, so
each worker computes with one torch thread: two workers with two threads each would oversubscribe
the cores (spinning OpenMP threads collapse, see progan_dsl.devices).
"""

from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # before anything imports torch
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
TINY = ROOT / "tests" / "specs" / "tiny.yaml"
GOLDEN = ROOT / "tests" / "golden"


def check_golden(relpath: str, text: str) -> None:
    """Compare `text` with tests/golden/<relpath>; PROGAN_UPDATE_GOLDEN=1 rewrites the file."""
    path = GOLDEN / relpath
    if os.environ.get("PROGAN_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"missing golden file {path}; run with PROGAN_UPDATE_GOLDEN=1"
    expected = path.read_text()
    if text != expected:
        import difflib

        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), text.splitlines(True), "golden", "now", n=2
            )
        )
        pytest.fail(f"{relpath} differs from the golden file:\n{diff[:4000]}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def write_tiny_run(folder: Path, stages: list[tuple[int, str]]) -> dict[tuple[int, str], object]:
    """A run folder of weights-only checkpoints of the tiny spec (checkpoint i at 1000 * (i + 1)
    images; G EMA differs from G), as progan-train would leave them. Returns the Checkpoints."""
    import torch

    from progan_dsl.checkpoint import Checkpoint
    from progan_dsl.compiler import compile_spec

    program = compile_spec(TINY)
    written = {}
    for i, (res, phase) in enumerate(stages):
        stage = program.stage(res, phase)
        torch.manual_seed(100 + i)
        G, G_ema, D = (program.build(net, stage) for net in ("G", "G", "D"))
        with torch.no_grad():
            for p in G_ema.parameters():
                p.add_(0.3 * torch.randn_like(p))
        ckpt = Checkpoint.from_weights(
            program.loaded,
            stage,
            G=G.state_dict(),
            D=D.state_dict(),
            G_ema=G_ema.state_dict(),
            images_shown=1000 * (i + 1),
        )
        (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
        written[(res, phase)] = ckpt.save(folder / "checkpoints")
    return written


# ---- training fixtures (tests/train, tests/fault) ----------------------------------------------

# A tiny spec (the shape of tests/specs/tiny.yaml) with a checkpoint every 32 images: two land
# inside the 16x16 fade-in, which runs from 192 to 256 images.
TRAIN_SPEC = """\
spec_version: 1
name: tiny_train
architecture:
  latent_size: 16
  image_channels: 1
  final_resolution: 16
  channels:
    table: {4: 16, 8: 12, 16: 8}
  generator:
    first_block:
      - {kind: project, gain: 0.3535533905932738}
      - {kind: conv}
    block:
      - {kind: upsample}
      - {kind: conv}
      - {kind: conv}
  discriminator:
    block:
      - {kind: conv}
      - {kind: conv, out: lower}
      - {kind: downsample}
    last_block:
      - {kind: minibatch_stddev, group_size: 4}
      - {kind: conv}
      - {kind: dense, out: 16}
      - {kind: dense, out: 1, activation: linear, gain: 1.0}
training:
  schedule:
    fade_kimg: 0.064
    stable_kimg: 0.064
    total_kimg: 0.32
    minibatch: {4: 16, 8: 16, 16: 8}
  tick_kimg: 0.064
  snapshot: {every_kimg: 0.032, keep: 3}
  evaluation: {metrics: [swd], num_images: 64}
  grid: {rows: 2, cols: 2}
"""


@pytest.fixture(scope="session")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """96 random 16x16 grayscale images with a bright square (levels 4, 8, 16)."""
    root = tmp_path_factory.mktemp("train_data")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 64, (96, 16, 16), dtype=np.uint8)
    for i in range(96):
        y, x = rng.integers(0, 10, 2)
        images[i, y : y + 6, x : x + 6] = 230
    np.save(root / "src.npy", images)
    from progan_dsl.data import CreateOptions, create_dataset

    create_dataset(
        CreateOptions(source=str(root / "src.npy"), out=root / "ds", resolution=16, progress=False)
    )
    return root / "ds"


@pytest.fixture(scope="session")
def train_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("train_spec") / "tiny_train.yaml"
    path.write_text(TRAIN_SPEC)
    return path


TRAIN_SEED = 7


@pytest.fixture(scope="session")
def reference_run(train_spec: Path, train_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny schedule trained once without interruption (seed TRAIN_SEED, one thread): what
    every interrupted-and-resumed run must equal bit for bit."""
    from progan_dsl.train.loop import TrainOptions, train

    return train(
        TrainOptions(
            spec=str(train_spec),
            data=str(train_data),
            outdir=str(tmp_path_factory.mktemp("reference")),
            device="cpu",
            progress=False,
            threads=1,
            seed=TRAIN_SEED,
            quiet=True,
        )
    )
