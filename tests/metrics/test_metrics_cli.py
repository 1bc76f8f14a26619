"""`progan-metrics` and the metric registry: end to end on a real dataset directory made by the
dataset tool, generated images from .npy and PNG folders, the JSON report, the real-statistics
cache, and user errors (exit 2, a message, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from progan_dsl.cli import metrics_main
from progan_dsl.data import CreateOptions, create_dataset
from progan_dsl.errors import UserError
from progan_dsl.metrics import METRICS, evaluate, fid, resolve_metric_names
from progan_dsl.metrics.swd import sliced_wasserstein
from progan_dsl.metrics.synthetic import textures, uniform_noise


def _nhwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32x32 RGB dataset of 24 textures (levels 32 ... 4), made by the dataset tool."""
    root = tmp_path_factory.mktemp("metrics_cli")
    source = root / "real.npy"
    np.save(source, _nhwc(textures(24, 32, seed=0)))
    out = root / "ds"
    create_dataset(CreateOptions(source=str(source), out=out, resolution=32, progress=False))
    return out


def _npy(path: Path, images: torch.Tensor | np.ndarray) -> Path:
    np.save(path, images.numpy() if isinstance(images, torch.Tensor) else images)
    return path


def test_swd_and_msssim_end_to_end(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = _npy(tmp_path / "fake.npy", uniform_noise(16, 32, seed=1))  # NCHW
    report = tmp_path / "out" / "metrics.json"
    argv = [
        "--data",
        str(dataset),
        "--fake",
        str(fake),
        "--metrics",
        "swd,msssim",
        "--num",
        "16",
        "--pairs",
        "50",
    ]
    assert metrics_main([*argv, "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert list(data["metrics"]) == ["swd_avg", "swd_32", "swd_16", "msssim"]
    assert (data["num_real"], data["num_fake"], data["resolution"]) == (16, 16, 32)
    # The SWD is the library's on the same 16 real images (the dataset's fixed subset).
    from progan_dsl.data import ImageDataset
    from progan_dsl.metrics.images import subset_indices

    level = ImageDataset(dataset).images(32)
    real = torch.from_numpy(np.asarray(level[subset_indices(24, 16)]))
    expected = sliced_wasserstein(real, torch.from_numpy(np.load(fake)))
    assert data["metrics"]["swd_avg"] == pytest.approx(expected.average)
    out = capsys.readouterr().out
    assert "swd_avg" in out and "msssim" in out and "16 images, 32x32x3" in out


def test_png_folder_nhwc_and_msssim_without_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "samples"
    folder.mkdir()
    images = textures(6, 16, channels=1, seed=2)
    for i, image in enumerate(images):
        Image.fromarray(image[0].numpy()).save(folder / f"{i:03d}.png")
    argv = ["--fake", str(folder), "--metrics", "msssim", "--pairs", "40", "--seed", "3"]
    assert metrics_main([*argv, "--json", str(tmp_path / "m.json")]) == 0
    value = json.loads((tmp_path / "m.json").read_text())["metrics"]["msssim"]
    # The PNGs round-trip exactly, so the value equals the library's on the tensor.
    from progan_dsl.metrics.msssim import ms_ssim_diversity

    assert value == pytest.approx(ms_ssim_diversity(images, 40, seed=3))
    out = capsys.readouterr().out
    assert "real: none" in out and "6 images, 16x16x1" in out


def test_fid_uses_the_real_stats_cache(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def fake_features(images: torch.Tensor, **_: object) -> torch.Tensor:
        calls.append(images.shape[0])
        x = images.float().flatten(2)
        return torch.cat([x.mean(dim=2), x.std(dim=2)], dim=1)

    monkeypatch.setattr(fid, "inception_features", fake_features)
    fake = _npy(tmp_path / "fake.npy", _nhwc(textures(10, 32, seed=3)))  # NHWC is accepted too
    cache = tmp_path / "cache"
    argv = [
        "--data",
        str(dataset),
        "--fake",
        str(fake),
        "--metrics",
        "fid,kid",
        "--num",
        "12",
        "--cache-dir",
        str(cache),
    ]
    assert metrics_main([*argv, "--json", str(tmp_path / "a.json")]) == 0
    assert calls == [12, 10]  # real (then cached) and fake features
    assert len(list(cache.glob("inception-*-32px-12.npz"))) == 1
    assert metrics_main([*argv, "--json", str(tmp_path / "b.json")]) == 0
    assert calls == [12, 10, 10]  # second run: real statistics from the cache
    first = json.loads((tmp_path / "a.json").read_text())["metrics"]
    assert json.loads((tmp_path / "b.json").read_text())["metrics"] == first
    assert first["fid"] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--metrics", "swdd"], "did you mean 'swd'"),
        (["--metrics", "swd", "--no-data"], "--data is required for swd"),
        (["--resolution", "64"], "comparison resolution is 64"),
        (["--device", "tpu"], "--device"),
        (["--num", "1"], "--num must be at least 2"),
        (["--fake-path", "missing.npy"], "expected a folder of .png images or a .npy file"),
        (["--fake-path", "floats.npy"], "must be uint8"),
        (
            ["--fake-path", "gray.npy"],
            "real images are 32x32 with 3 channel(s), generated ones 32x32 with 1",
        ),
        (["--pairs", "0"], "--pairs: '0' must be at least 1"),
        (["--swd-patches", "some"], "--swd-patches"),
        (["--num", "100000000000"], "allowed"),
    ],
)
def test_user_errors_exit_2(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    _npy(tmp_path / "fake.npy", uniform_noise(4, 32))
    np.save(tmp_path / "floats.npy", np.zeros((4, 3, 32, 32), dtype=np.float32))
    np.save(tmp_path / "gray.npy", np.zeros((4, 1, 32, 32), dtype=np.uint8))
    args = ["--data", str(dataset), "--fake", str(tmp_path / "fake.npy"), "--metrics", "swd"]
    for i, arg in enumerate(argv):
        if arg == "--no-data":
            args = args[2:]
        elif arg == "--fake-path":
            args[3] = str(tmp_path / argv[i + 1])
        elif i == 0 or argv[i - 1] != "--fake-path":
            args.append(arg)
    assert metrics_main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_dataset_without_the_level(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = _npy(tmp_path / "fake.npy", uniform_noise(4, 64))
    assert metrics_main(["--data", str(dataset), "--fake", str(fake), "--metrics", "swd"]) == 2
    assert "available: 4, 8, 16, 32" in capsys.readouterr().err


# ---- the registry ----------------------------------------------------------------------------


def test_registry_names_and_errors() -> None:
    assert list(METRICS) == ["swd", "swd_floor", "msssim", "fid", "kid"]
    assert resolve_metric_names([" SWD", "msssim", "swd"]) == ["swd", "msssim"]
    with pytest.raises(
        UserError,
        match="unknown metric 'ms-ssim' \\(did you mean 'msssim'\\?\\); valid metrics: "
        "swd, swd_floor, msssim, fid, kid",
    ):
        resolve_metric_names(["ms-ssim"])
    with pytest.raises(UserError, match="valid metrics"):
        resolve_metric_names(["bleu"])


def test_evaluate_returns_a_flat_dict() -> None:
    real, fake = textures(16, 16, seed=4), textures(16, 16, seed=5)
    results = evaluate(["msssim", "swd"], real, fake, seed=1, msssim_pairs=100)
    assert list(results) == ["msssim", "swd_avg", "swd_16"]
    assert all(isinstance(v, float) for v in results.values())
    assert results["swd_avg"] == results["swd_16"] == sliced_wasserstein(real, fake, seed=1).average
    with pytest.raises(UserError, match="compares against real images"):
        evaluate(["swd"], None, fake)


# ---- image readers ---------------------------------------------------------------------------


def test_npy_layouts(tmp_path: Path) -> None:
    from progan_dsl.metrics.images import load_image_source

    nchw = uniform_noise(3, 8, seed=6)
    for name, array in {
        "nchw": nchw.numpy(),
        "nhwc": nchw.permute(0, 2, 3, 1).numpy(),
    }.items():
        assert torch.equal(load_image_source(_npy(tmp_path / f"{name}.npy", array)), nchw)
    gray = nchw[:, :1]
    assert torch.equal(load_image_source(_npy(tmp_path / "nhw.npy", gray[:, 0].numpy())), gray)
    assert load_image_source(tmp_path / "nchw.npy", num=2).shape == (2, 3, 8, 8)
    with pytest.raises(UserError, match="1 or 3 channels"):
        load_image_source(_npy(tmp_path / "c5.npy", np.zeros((2, 5, 8, 8), np.uint8)))


def test_png_modes_and_mismatches(tmp_path: Path) -> None:
    from progan_dsl.metrics.images import load_image_source

    folder = tmp_path / "png"
    folder.mkdir()
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    Image.fromarray(rgba).save(folder / "a.png")  # RGBA
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(folder / "b.png")
    (folder / "notes.txt").write_text("not an image")
    images = load_image_source(folder)
    assert images.shape == (2, 3, 8, 8)
    assert images[0, 0].unique().tolist() == [200] and images[1].unique().tolist() == [7]
    Image.fromarray(np.zeros((4, 8, 3), np.uint8)).save(folder / "c.png")
    with pytest.raises(UserError, match="c.png: image is 8x4 with 3 channel"):
        load_image_source(folder)
    deep = tmp_path / "deep"
    deep.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(deep / "a.png")  # 16-bit gray
    with pytest.raises(UserError, match="only 8-bit"):
        load_image_source(deep)


# ---- class-conditional generators -------------------------------------------------------------

SKEWED = [1] * 9 + [30]  # images per class of the labelled dataset: class 9 holds 30 of 39


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16x16 RGB dataset with labels from 10 class folders (counts SKEWED)."""
    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    for k, count in enumerate(SKEWED):
        (root / "src" / f"c{k}").mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "src" / f"c{k}" / f"{i}.png")
    out = root / "ds"
    create_dataset(
        CreateOptions(source=str(root / "src"), out=out, resolution=16, labels=True, progress=False)
    )
    return out


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.generate.conditional import write_conditional_run

    folder = tmp_path_factory.mktemp("cond") / "00000-tiny_conditional"
    write_conditional_run(folder)
    return folder


def test_classes_follow_the_dataset_or_are_uniform(labelled: Path, dataset: Path) -> None:
    from progan_dsl.data import ImageDataset
    from progan_dsl.data.labels import random_labels
    from progan_dsl.metrics.cli import fake_classes

    assert ImageDataset(labelled).class_counts.tolist() == SKEWED
    classes, note = fake_classes(labelled, 10, 400, seed=3)
    counts = np.bincount(classes, minlength=10)
    assert 0.65 < counts[9] / 400 < 0.9  # 30 / 39 = 0.77 of the dataset is class 9
    assert counts[:9].max() < 25  # 1 / 39 each: about 10 of 400
    assert f"drawn in the class distribution of {labelled} (10 classes)" in note
    # the official recipe (random_labels) from a generator seeded with --seed; the same again
    official = random_labels(ImageDataset(labelled), 400, torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(classes, official.argmax(1).numpy())
    np.testing.assert_array_equal(fake_classes(labelled, 10, 400, seed=3)[0], classes)

    uniform, note = fake_classes(None, 10, 400, seed=3)
    counts = np.bincount(uniform, minlength=10)
    assert counts.min() > 20 and counts.max() < 60  # 40 each expected
    assert note.endswith("drawn uniformly: no --data (10 classes)")
    assert f"uniformly: {dataset} has no labels" in fake_classes(dataset, 10, 8, seed=0)[1]
    with pytest.raises(UserError, match=r"has 10 classes, the generator 4; score a generator"):
        fake_classes(labelled, 4, 8, seed=0)


def test_conditional_network_is_scored_on_dataset_classes(
    labelled: Path, conditional_run: Path, tmp_path: Path
) -> None:
    from progan_dsl.data import ImageDataset
    from progan_dsl.data.labels import random_labels
    from progan_dsl.generate.sampler import open_sampler
    from progan_dsl.metrics.images import subset_indices

    report = tmp_path / "m.json"
    argv = ["--data", str(labelled), "--network", str(conditional_run), "--metrics", "swd"]
    argv += ["--num", "16", "--seed", "5", "--no-log", "--quiet", "--json", str(report)]
    assert metrics_main(argv) == 0
    data = json.loads(report.read_text())
    assert any("in the class distribution of" in note for note in data["notes"])
    # the value is SWD against the generator's images of classes drawn as training draws them
    official = random_labels(ImageDataset(labelled), 16, torch.Generator().manual_seed(5))
    classes = official.argmax(1).numpy()
    sampler = open_sampler(conditional_run, device="cpu")
    fakes = torch.from_numpy(sampler.sample_uint8(16, seed=5, classes=classes))
    level = ImageDataset(labelled).images(16)
    real = torch.from_numpy(np.asarray(level[subset_indices(39, 16)]))
    want = sliced_wasserstein(real, fakes, seed=5)  # --seed seeds the metric too
    assert data["metrics"]["swd_avg"] == pytest.approx(want.average)


def test_conditional_network_without_data_draws_uniform_classes(
    conditional_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--network", str(conditional_run), "--metrics", "msssim", "--num", "8"]
    assert metrics_main([*argv, "--pairs", "4", "--no-log"]) == 0
    out = capsys.readouterr().out
    assert "note: classes of the generated images drawn uniformly: no --data (10 classes)" in out
