"""Fixtures of the training tests: a small grayscale dataset and a tiny spec with frequent
checkpoints (4x4 -> 16x16 in 0.32 kimg). Tests train with one CPU thread: fast on busy machines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from progan_dsl.data import CreateOptions, create_dataset

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
        images[i, y:y + 6, x:x + 6] = 230
    np.save(root / "src.npy", images)
    create_dataset(CreateOptions(source=str(root / "src.npy"), out=root / "ds", resolution=16,
                                 progress=False))
    return root / "ds"


@pytest.fixture(scope="session")
def train_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("train_spec") / "tiny_train.yaml"
    path.write_text(TRAIN_SPEC)
    return path
