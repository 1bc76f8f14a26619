"""`ImageLoader`: values, epochs, determinism, resume, fade-in, rank slices, mirroring, prefetch.
Expected batches are rebuilt from the level files with numpy, not with the loader's own code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import progan_dsl.data.loader as loader_module
from progan_dsl.data import CreateOptions, ImageDataset, create_dataset
from progan_dsl.data.loader import ImageLoader
from progan_dsl.errors import UserError

N = 10


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 random RGB images at 16x16 (levels 4, 8, 16); image i has pixel [0, 0, 0] = i."""
    root = tmp_path_factory.mktemp("loader")
    images = np.random.default_rng(0).integers(0, 256, (N, 16, 16, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(N)
    np.save(root / "src.npy", images)
    create_dataset(CreateOptions(source=str(root / "src.npy"), out=root / "ds", resolution=16))
    return root / "ds"


@pytest.fixture(scope="module")
def wide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 random gray images with base shape 4x8 at resolution 32 (16x32)."""
    root = tmp_path_factory.mktemp("wide")
    np.save(root / "src.npy", np.random.default_rng(1).integers(0, 256, (6, 16, 32), np.uint8))
    options = CreateOptions(
        source=str(root / "src.npy"), out=root / "ds", resolution=32, base_shape=(4, 8)
    )
    create_dataset(options)
    return root / "ds"


def _as_float(images: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(images.astype(np.float32)) - 127.5) / 127.5


def _match(batch: torch.Tensor, level: np.ndarray) -> tuple[list[int], list[bool]]:
    """For each batch image, the dataset row it equals and whether it is mirrored."""
    rows, flips = [], []
    for image in batch:
        plain = [i for i in range(len(level)) if torch.equal(image, _as_float(level[i]))]
        mirrored = [
            i
            for i in range(len(level))
            if torch.equal(image, _as_float(level[i][..., ::-1].copy()))
        ]
        assert len(plain) + len(mirrored) >= 1, "batch image is not a dataset image"
        rows.append((plain or mirrored)[0])
        flips.append(not plain)
    return rows, flips


def _batches(loader: ImageLoader, calls: list[tuple[int, int, float]]) -> list[torch.Tensor]:
    return [loader.next_batch(res, batch, alpha) for res, batch, alpha in calls]


def test_batches_are_dataset_images_in_minus_one_to_one(dataset_dir: Path) -> None:
    level = ImageDataset(dataset_dir).images(16)
    batch = ImageLoader(dataset_dir).next_batch(16, 4)
    assert batch.dtype == torch.float32 and batch.shape == (4, 3, 16, 16)
    rows, flips = _match(batch, level)
    assert not any(flips) and len(set(rows)) == 4
    images = torch.from_numpy(level[rows])
    assert set(batch[images == 255].tolist()) == {1.0}  # end points are exact
    assert set(batch[images == 0].tolist()) == {-1.0}
    assert batch.min() >= -1 and batch.max() <= 1


def test_each_epoch_is_a_permutation_and_batches_straddle_epochs(dataset_dir: Path) -> None:
    level = ImageDataset(dataset_dir).images(16)
    loader = ImageLoader(dataset_dir, seed=7)
    stream = torch.cat(_batches(loader, [(16, 4, 1.0)] * 5))  # 20 positions = 2 epochs
    # Pixel [0, 0, 0] holds the image number (-1 + 2 * i / 255 in float).
    ids = torch.round((stream[:, 0, 0, 0] + 1) * 127.5).long().tolist()
    assert sorted(ids[:N]) == list(range(N)) and sorted(ids[N:]) == list(range(N))
    assert ids[:N] != ids[N:]  # a fresh permutation per epoch
    assert _match(stream[:3], level)[0] == ids[:3]
    assert loader.state_dict()["epoch"] == 2 and loader.state_dict()["position"] == 20


def test_same_seed_same_batches_other_seed_other_batches(dataset_dir: Path) -> None:
    calls = [(16, 4, 1.0), (8, 6, 1.0), (16, 2, 0.5)]
    a = _batches(ImageLoader(dataset_dir, seed=3, mirror=True), calls)
    b = _batches(ImageLoader(dataset_dir, seed=3, mirror=True), calls)
    c = _batches(ImageLoader(dataset_dir, seed=4, mirror=True), calls)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_resume_from_state_dict_gives_the_same_batches(dataset_dir: Path) -> None:
    calls = [(8, 4, 1.0), (8, 4, 0.3), (16, 6, 0.7), (16, 6, 1.0), (16, 3, 1.0)]
    first = ImageLoader(dataset_dir, seed=11, mirror=True)
    _batches(first, calls[:2])
    state = json.loads(json.dumps(first.state_dict()))  # must survive JSON
    expected = _batches(first, calls[2:])
    resumed = ImageLoader(dataset_dir, seed=999, mirror=True, workers=2)
    resumed.next_batch(16, 4)  # some unrelated progress (and prefetches) before loading
    resumed.load_state_dict(state)
    got = _batches(resumed, calls[2:])
    resumed.close()
    assert all(torch.equal(x, y) for x, y in zip(expected, got, strict=True))
    with pytest.raises(ValueError, match="mirror"):
        ImageLoader(dataset_dir, mirror=False).load_state_dict(state)


def _official_fade(high: torch.Tensor, alpha: float) -> torch.Tensor:
    """The official real-image fade (train.py process_reals, 'FadeLOD'), computed independently
    in float64: lerp(x, up(2x2 mean of x), 1 - alpha) of the current level x in [-1, 1]."""
    x = high.double()
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5), keepdim=True)
    y = y.expand(n, c, h // 2, 2, w // 2, 2).reshape(n, c, h, w)
    return x + (y - x) * (1.0 - alpha)


def test_fade_in_is_the_official_float_mean_of_the_current_level(dataset_dir: Path) -> None:
    dataset = ImageDataset(dataset_dir)
    loader = ImageLoader(dataset, seed=5)
    high = loader.next_batch(16, 4, 1.0)
    rows = _match(high, dataset.images(16))[0]
    stored_low = _as_float(dataset.images(8)[rows]).repeat_interleave(2, 2).repeat_interleave(2, 3)
    for alpha in (0.0, 0.25, 0.6, 1.0):
        loader.load_state_dict({**loader.state_dict(), "position": 0})
        faded = loader.next_batch(16, 4, alpha)
        if alpha == 1.0:
            assert torch.equal(faded, high)
        torch.testing.assert_close(faded.double(), _official_fade(high, alpha), rtol=0, atol=1e-6)
    # the stored (rounded) lower level is not what the official code blends with: it differs
    # by up to half a grey level (0.5 / 127.5 in [-1, 1] units)
    loader.load_state_dict({**loader.state_dict(), "position": 0})
    gap = (loader.next_batch(16, 4, 0.0) - stored_low).abs().max().item()
    assert 0 < gap <= 0.5 / 127.5 + 1e-6


def test_fade_in_chunking_does_not_change_results(
    dataset_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = [(16, 6, 0.3), (8, 4, 0.8), (16, 10, 0.0)]
    whole = _batches(ImageLoader(dataset_dir, seed=4, mirror=True), calls)
    monkeypatch.setattr(loader_module, "_FADE_CHUNK_BYTES", 1)  # one image per step
    chunked = _batches(ImageLoader(dataset_dir, seed=4, mirror=True), calls)
    assert all(torch.equal(x, y) for x, y in zip(whole, chunked, strict=True))


def test_two_rank_slices_concatenate_to_the_one_rank_batch(dataset_dir: Path) -> None:
    calls = [(16, 4, 1.0), (16, 6, 0.5), (8, 8, 1.0), (16, 4, 1.0)]
    single = _batches(ImageLoader(dataset_dir, seed=2, mirror=True), calls)
    rank0 = _batches(ImageLoader(dataset_dir, seed=2, mirror=True, world_size=2), calls)
    rank1 = _batches(ImageLoader(dataset_dir, seed=2, mirror=True, rank=1, world_size=2), calls)
    for whole, a, b in zip(single, rank0, rank1, strict=True):
        assert a.shape[0] == b.shape[0] == whole.shape[0] // 2
        assert torch.equal(torch.cat([a, b]), whole)
    with pytest.raises(ValueError, match="multiple of world_size"):
        ImageLoader(dataset_dir, world_size=2).next_batch(16, 5)


def test_mirror_is_fixed_per_seed_epoch_and_image(dataset_dir: Path) -> None:
    level = ImageDataset(dataset_dir).images(16)
    by_4 = torch.cat(_batches(ImageLoader(dataset_dir, seed=1, mirror=True), [(16, 5, 1.0)] * 4))
    by_2 = torch.cat(_batches(ImageLoader(dataset_dir, seed=1, mirror=True), [(16, 2, 1.0)] * 10))
    assert torch.equal(by_4, by_2)  # flips do not depend on the batch size
    rows, flips = _match(by_4, level)
    assert 0 < sum(flips) < len(flips)  # some mirrored, some not
    plain = torch.cat(_batches(ImageLoader(dataset_dir, seed=1), [(16, 5, 1.0)] * 4))
    assert _match(plain, level)[0] == rows  # mirroring does not change the order


def test_prefetch_workers_give_identical_results(dataset_dir: Path) -> None:
    calls = [(16, 4, 1.0)] * 3 + [(16, 4, 0.2), (16, 4, 0.6), (8, 6, 1.0), (16, 2, 1.0)] * 2
    plain = _batches(ImageLoader(dataset_dir, seed=9, mirror=True), calls)
    with ImageLoader(dataset_dir, seed=9, mirror=True, workers=2) as loader:
        threaded = _batches(loader, calls)
    assert all(torch.equal(x, y) for x, y in zip(plain, threaded, strict=True))


def test_non_square_levels(wide_dir: Path) -> None:
    dataset = ImageDataset(wide_dir)
    loader = ImageLoader(dataset, seed=0)
    batch = loader.next_batch(32, 3, 0.0)
    assert batch.shape == (3, 1, 16, 32)
    loader.load_state_dict({**loader.state_dict(), "position": 0})
    high = loader.next_batch(32, 3, 1.0)
    torch.testing.assert_close(batch.double(), _official_fade(high, 0.0), rtol=0, atol=1e-6)


def test_invalid_datasets_and_levels_are_user_errors(dataset_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such dataset"):
        ImageDataset(tmp_path / "missing")
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(UserError, match="manifest.json missing"):
        ImageLoader(tmp_path / "empty")
    with pytest.raises(UserError, match="available: 4, 8, 16"):
        ImageLoader(dataset_dir).next_batch(32, 4)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in dataset_dir.iterdir():
        broken.joinpath(f.name).write_bytes(f.read_bytes())
    level = broken / "level_16x16.npy"
    level.write_bytes(level.read_bytes()[:-100])  # truncated level file
    with pytest.raises(UserError, match="level_16x16.npy"):
        ImageDataset(broken)
