"""`ImageLoader`: values, epochs, determinism, resume, fade-in, rank slices, mirroring, prefetch,
labels (`next_reals`, `random_labels`). Expected batches are rebuilt from the level files with
numpy, not with the loader's own code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import progan_dsl.data.loader as loader_module
from progan_dsl.data import CreateOptions, ImageDataset, Reals, create_dataset, random_labels
from progan_dsl.data.loader import ImageLoader, served_reals
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


def _upsampled(images: np.ndarray) -> torch.Tensor:
    """Stored uint8 images -> [-1, 1], each pixel repeated 2x2 (nearest)."""
    return _as_float(images).repeat_interleave(2, 2).repeat_interleave(2, 3)


def test_fade_in_is_the_official_float_mean_of_the_current_level(dataset_dir: Path) -> None:
    dataset = ImageDataset(dataset_dir)
    loader = ImageLoader(dataset, seed=5)
    high = loader.next_batch(16, 4, 1.0)
    rows = _match(high, dataset.images(16))[0]
    for alpha in (1e-6, 0.25, 0.6, 1.0):
        loader.load_state_dict({**loader.state_dict(), "position": 0})
        faded = loader.next_batch(16, 4, alpha)
        if alpha == 1.0:
            assert torch.equal(faded, high)
        torch.testing.assert_close(faded.double(), _official_fade(high, alpha), rtol=0, atol=1e-6)
        np.testing.assert_array_equal(
            served_reals(dataset, 16, np.array(rows), alpha), faded.numpy()
        )


def test_alpha_zero_serves_the_stored_level_below_upsampled(dataset_dir: Path) -> None:
    """The official train.py at the first image of a fade-in (lod a whole number) reads the
    level floor(lod), i.e. the stored lower level, and upsamples it ('UpscaleLOD')."""
    dataset = ImageDataset(dataset_dir)
    loader = ImageLoader(dataset, seed=5, mirror=True)
    high = loader.next_batch(16, 8, 1.0)
    rows, flips = _match(high, dataset.images(16))
    stored_low = np.stack(
        [
            dataset.images(8)[r][..., ::-1] if f else dataset.images(8)[r]
            for r, f in zip(rows, flips)
        ]
    )
    loader.load_state_dict({**loader.state_dict(), "position": 0})
    start = loader.next_batch(16, 8, 0.0)
    assert torch.equal(start, _upsampled(stored_low))
    assert start.shape == (8, 3, 16, 16)
    # It is not the limit of the blend (the float 2x2 mean of level 16): up to half a grey level
    # apart in [-1, 1] units, so the two rules are told apart.
    gap = (start.double() - _official_fade(high, 0.0)).abs().max().item()
    assert 0 < gap <= 0.5 / 127.5 + 1e-6
    np.testing.assert_array_equal(
        served_reals(dataset, 16, np.array(rows), 0.0), _upsampled(dataset.images(8)[rows]).numpy()
    )
    with pytest.raises(ValueError, match="4 is the dataset's lowest level"):
        loader.next_batch(4, 2, 0.0)
    with pytest.raises(ValueError, match="lowest level"):
        served_reals(dataset, 4, np.arange(2), 0.0)


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
    high = loader.next_batch(32, 3, 1.0)
    assert high.shape == (3, 1, 16, 32)
    rows = _match(high, dataset.images(32))[0]
    for alpha in (0.0, 0.5):
        loader.load_state_dict({**loader.state_dict(), "position": 0})
        batch = loader.next_batch(32, 3, alpha)
        assert batch.shape == (3, 1, 16, 32)
        if alpha == 0.0:
            assert torch.equal(batch, _upsampled(dataset.images(16)[rows]))
        else:
            torch.testing.assert_close(
                batch.double(), _official_fade(high, alpha), rtol=0, atol=1e-6
            )


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


# ---- labels ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 flat gray 8x8 images in class folders a (2 images), b (3) and c (7); every pixel of
    image i is 20 * i, so a batch image names its row whatever the fade or mirroring."""
    root = tmp_path_factory.mktemp("labelled")
    counts = {"a": 2, "b": 3, "c": 7}
    i = 0
    for name, count in counts.items():
        (root / "src" / name).mkdir(parents=True)
        for j in range(count):
            Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(
                root / "src" / name / f"{j}.png"
            )
            i += 1
    options = CreateOptions(source=str(root / "src"), out=root / "ds", resolution=8, labels=True)
    create_dataset(options)
    return root / "ds"


def _rows_of(images: torch.Tensor) -> list[int]:
    """Row number of each batch image of `labelled_dir` (pixel value 20 * row)."""
    return torch.round((images[:, 0, 0, 0] + 1) * 127.5 / 20).long().tolist()


def test_dataset_labels_classes_and_counts(labelled_dir: Path, dataset_dir: Path) -> None:
    dataset = ImageDataset(labelled_dir)
    assert dataset.num_classes == 3 and dataset.class_names == ["a", "b", "c"]
    assert dataset.labels is not None and dataset.labels.dtype == np.int64
    assert dataset.labels.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2]  # sorted paths
    assert dataset.class_counts.dtype == np.int64 and dataset.class_counts.tolist() == [2, 3, 7]
    with pytest.raises(ValueError, match="read-only"):
        dataset.labels[0] = 2
    plain = ImageDataset(dataset_dir)
    assert plain.labels is None and plain.num_classes == 0
    assert plain.class_counts.dtype == np.int64 and plain.class_counts.shape == (0,)


def test_next_reals_labels_are_those_of_the_images(labelled_dir: Path) -> None:
    dataset = ImageDataset(labelled_dir)
    loader = ImageLoader(dataset, seed=3, mirror=True, workers=2)
    expected_labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2])
    seen = []
    for resolution, batch, alpha in [(8, 5, 1.0), (8, 5, 0.0), (4, 6, 1.0), (8, 4, 0.5)] * 2:
        reals = loader.next_reals(resolution, batch, alpha)
        assert isinstance(reals, Reals)
        assert reals.images.shape == (batch, 1, resolution, resolution)
        assert reals.labels is not None
        assert reals.labels.dtype == torch.float32 and reals.labels.shape == (batch, 3)
        assert reals.labels.device == reals.images.device
        assert set(reals.labels.unique().tolist()) <= {0.0, 1.0}
        assert reals.labels.sum(dim=1).tolist() == [1.0] * batch  # one-hot
        rows = _rows_of(reals.images)  # flat images: fading and mirroring keep the value
        assert reals.labels.argmax(dim=1).tolist() == expected_labels[rows].tolist()
        seen += rows
    loader.close()
    assert sorted(seen[:12]) == list(range(12))  # the first epoch: every image once


def test_next_reals_and_next_batch_share_one_stream(labelled_dir: Path, dataset_dir: Path) -> None:
    calls = [(8, 4, 1.0), (8, 6, 0.0), (4, 2, 1.0), (8, 4, 0.3)]
    plain = _batches(ImageLoader(labelled_dir, seed=8, mirror=True), calls)
    mixed = ImageLoader(labelled_dir, seed=8, mirror=True, workers=2)
    got = [
        mixed.next_reals(*call).images if i % 2 else mixed.next_batch(*call)
        for i, call in enumerate(calls)
    ]
    assert mixed.position == sum(batch for _, batch, _ in calls)  # one step per call
    mixed.close()
    assert all(torch.equal(x, y) for x, y in zip(plain, got, strict=True))
    unlabelled = ImageLoader(dataset_dir, seed=8).next_reals(16, 4, 0.5)
    assert unlabelled.labels is None and unlabelled.images.shape == (4, 3, 16, 16)


def test_next_reals_resume_and_rank_slices(labelled_dir: Path) -> None:
    calls = [(8, 4, 1.0), (8, 6, 0.5), (8, 8, 1.0), (8, 10, 0.0), (4, 4, 1.0)]
    first = ImageLoader(labelled_dir, seed=4, mirror=True)
    for call in calls[:2]:
        first.next_reals(*call)
    state = json.loads(json.dumps(first.state_dict()))
    expected = [first.next_reals(*call) for call in calls[2:]]
    resumed = ImageLoader(labelled_dir, seed=0, mirror=True, workers=1)
    resumed.next_reals(8, 2)  # unrelated progress and prefetches before loading
    resumed.load_state_dict(state)
    got = [resumed.next_reals(*call) for call in calls[2:]]
    resumed.close()
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a.images, b.images) and a.labels is not None and b.labels is not None
        assert torch.equal(a.labels, b.labels)
    whole = ImageLoader(labelled_dir, seed=4).next_reals(8, 6)
    halves = [
        ImageLoader(labelled_dir, seed=4, rank=r, world_size=2).next_reals(8, 6) for r in (0, 1)
    ]
    assert whole.labels is not None
    assert torch.equal(torch.cat([h.labels for h in halves if h.labels is not None]), whole.labels)


def _independent_draw(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The documented rule rebuilt here: a uniform index (torch.randint from a generator seeded
    `seed`) into the label array sorted by class."""
    index = torch.randint(0, len(labels), (n,), generator=torch.Generator().manual_seed(seed))
    return np.sort(labels)[index.numpy()]


def test_random_labels_follow_the_class_counts(labelled_dir: Path) -> None:
    dataset = ImageDataset(labelled_dir)
    drawn = random_labels(dataset, 12_000, torch.Generator().manual_seed(1))
    assert drawn.dtype == torch.float32 and drawn.shape == (12_000, 3)
    assert drawn.sum(dim=1).eq(1).all() and set(drawn.unique().tolist()) == {0.0, 1.0}
    classes = drawn.argmax(dim=1).numpy()
    assert dataset.labels is not None
    np.testing.assert_array_equal(classes, _independent_draw(dataset.labels, 12_000, 1))
    frequencies = np.bincount(classes, minlength=3) / 12_000
    np.testing.assert_allclose(frequencies, [2 / 12, 3 / 12, 7 / 12], atol=0.01)
    # the same draws from the counts alone (a checkpoint can keep them) and from a list
    again = random_labels(dataset.class_counts, 12_000, torch.Generator().manual_seed(1))
    assert torch.equal(again, drawn)
    assert torch.equal(
        random_labels([2, 3, 7], 5, torch.Generator().manual_seed(9)),
        random_labels(torch.tensor([2, 3, 7]), 5, torch.Generator().manual_seed(9)),
    )
    other = random_labels(dataset, 12_000, torch.Generator().manual_seed(2))
    assert not torch.equal(other, drawn)
    # a class without images is never drawn; n = 0 gives an empty [0, K]
    never = random_labels([0, 5, 0, 1], 1000, torch.Generator().manual_seed(0)).argmax(dim=1)
    assert set(never.tolist()) == {1, 3}
    assert random_labels([1, 1], 0, torch.Generator()).shape == (0, 2)


def test_random_labels_refuse_what_has_no_classes(dataset_dir: Path) -> None:
    with pytest.raises(UserError, match="has no labels.*--labels"):
        random_labels(ImageDataset(dataset_dir), 4, torch.Generator())
    for counts in ([], [0, 0], [1, -1], [[1, 2]], np.array([0.5, 1.0])):
        with pytest.raises(ValueError, match="class counts must be"):
            random_labels(counts, 4, torch.Generator())
    with pytest.raises(ValueError, match="cannot draw -1"):
        random_labels([1], -1, torch.Generator())


def test_the_uint8_tensor_path_gives_the_numpy_paths_batches(
    labelled_dir: Path, dataset_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CUDA path (rows into a pinned uint8 tensor, converted, faded and upsampled with torch
    on the device) run on the CPU: pinning is switched off, everything else is that path."""
    real_empty = torch.empty

    def unpinned(*args: object, pin_memory: bool = False, **kwargs: object) -> torch.Tensor:
        return real_empty(*args, **kwargs)  # type: ignore[call-overload]

    for path, resolution in ((dataset_dir, 16), (labelled_dir, 8)):
        calls = [(resolution, 4, 1.0), (resolution, 6, 0.0), (resolution, 4, 0.4)]
        plain = ImageLoader(path, seed=6, mirror=True)
        expected = [plain.next_reals(*call) for call in calls]
        tensor_path = ImageLoader(path, seed=6, mirror=True)
        tensor_path._pin = True
        with monkeypatch.context() as patch:
            patch.setattr(torch, "empty", unpinned)
            got = [tensor_path.next_reals(*call) for call in calls]
        for (_, _, alpha), a, b in zip(calls, expected, got, strict=True):
            assert b.images.dtype == torch.float32 and b.images.shape == a.images.shape
            if alpha in (0.0, 1.0):
                assert torch.equal(a.images, b.images)
            torch.testing.assert_close(a.images, b.images, rtol=0, atol=1e-6)
            assert (a.labels is None) == (b.labels is None) == (path == dataset_dir)
            if a.labels is not None and b.labels is not None:
                assert torch.equal(a.labels, b.labels)
