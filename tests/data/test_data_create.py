"""`progan-dataset create`, `info` and `verify`: level arithmetic, skipped files, atomicity, errors,
the bundled MNIST, and non-square base shapes. Expected values are derived here with plain numpy,
not with the code under test."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import progan_dsl
from progan_dsl.cli import dataset_main
from progan_dsl.data import CreateOptions, ImageDataset, create_dataset
from progan_dsl.errors import UserError

REPO = Path(progan_dsl.__file__).resolve().parents[1]


def _levels(path: Path) -> dict[tuple[int, int], np.ndarray]:
    """Every level file, read with plain np.load, keyed by (H, W) parsed from the manifest."""
    manifest = json.loads((path / "manifest.json").read_text())
    return {tuple(lv["shape"]): np.load(path / lv["file"]) for lv in manifest["levels"]}


def _official_levels(images_nchw: np.ndarray, count: int) -> list[np.ndarray]:
    """Reference: the official dataset_tool.py (`TFRecordExporter.add_image`), one [C, H, W]
    image at a time, written out again here: each lod averages the unrounded float32 image of
    the lod above, and every lod is stored as rint(img).clip(0, 255) in uint8. Top level first."""
    per_image = []
    for img in images_nchw:
        lods = []
        for lod in range(count):
            if lod:
                img = img.astype(np.float32)
                img = (
                    img[:, 0::2, 0::2]
                    + img[:, 0::2, 1::2]
                    + img[:, 1::2, 0::2]
                    + img[:, 1::2, 1::2]
                ) * 0.25
            lods.append(np.rint(img).clip(0, 255).astype(np.uint8))
        per_image.append(lods)
    return [np.stack([lods[k] for lods in per_image]) for k in range(count)]


def _block_mean(top: np.ndarray, factor: int) -> np.ndarray:
    """A second reference: the float64 mean of each factor x factor block of the top level,
    rounded half to even (the same as the official chain: its float32 values are exact)."""
    n, c, h, w = top.shape
    blocks = top.astype(np.float64).reshape(n, c, h // factor, factor, w // factor, factor)
    return np.round(blocks.mean(axis=(3, 5))).astype(np.uint8)


def _stored_mean(images: np.ndarray) -> np.ndarray:
    """The rule of datasets made by earlier versions: the rounded mean of the *stored* level."""
    return _block_mean(images, 2)


def _create(tmp_path: Path, source: str | Path, *args: str, out: str = "ds") -> tuple[int, Path]:
    target = tmp_path / out
    code = dataset_main(["create", "--source", str(source), "--out", str(target), "--quiet", *args])
    return code, target


def _npy(tmp_path: Path, images: np.ndarray, name: str = "src.npy") -> Path:
    path = tmp_path / name
    np.save(path, images)
    return path


def _photo_folder(root: Path) -> Path:
    """Three good images of odd sizes, two broken ones, and a text file."""
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(root / "b.jpg")
    Image.fromarray(rng.integers(0, 256, (33, 70), dtype=np.uint8)).save(root / "sub" / "c.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 300)))
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    (root / "sub" / "truncated.jpg").write_bytes(jpeg.getvalue()[:400])
    (root / "notes.txt").write_text("not an image\n")
    return root


def test_levels_are_the_official_dataset_tools(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    # Hand-made ties: the 2x2 block means 0.5 and 1.5 round half to even, to 0 and 2.
    images[0, 0:2, 0:2, 0] = [[0, 0], [1, 1]]
    images[0, 0:2, 2:4, 0] = [[1, 1], [2, 2]]
    # A 4x4 block whose 16x16 floats are 0.5, 0.5, 0.5, 1.5: stored as 0, 0, 0, 2, whose mean
    # 0.5 rounds to 0; the official tool averages the floats: 0.75 rounds to 1.
    images[1, 0:4, 0:4, 1] = [[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1], [1, 1, 2, 2]]
    code, out = _create(tmp_path, _npy(tmp_path, images), "--resolution", "32")
    assert code == 0
    levels = _levels(out)
    assert sorted(levels) == [(4, 4), (8, 8), (16, 16), (32, 32)]
    top = images.transpose(0, 3, 1, 2)  # NCHW
    np.testing.assert_array_equal(levels[(32, 32)], top)
    official = _official_levels(top, 4)
    for k, size in enumerate((32, 16, 8, 4)):
        np.testing.assert_array_equal(levels[(size, size)], official[k])
        np.testing.assert_array_equal(levels[(size, size)], _block_mean(top, 2**k))
    assert levels[(16, 16)][0, 0, 0, 0] == 0 and levels[(16, 16)][0, 0, 0, 1] == 2
    assert levels[(16, 16)][1, 1, 0:2, 0:2].tolist() == [[0, 0], [0, 2]]
    assert levels[(8, 8)][1, 1, 0, 0] == 1
    assert _stored_mean(levels[(16, 16)])[1, 1, 0, 0] == 0  # the earlier rule: one grey level off
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_images"] == 7 and manifest["channels"] == 3
    assert manifest["resolutions"] == [4, 8, 16, 32]
    assert "unrounded" in manifest["downsampling"] and "official" in manifest["downsampling"]
    for level in manifest["levels"]:
        assert level["sha256"] == hashlib.sha256((out / level["file"]).read_bytes()).hexdigest()
    assert (out / "preview.png").is_file()


def test_corrupt_and_non_image_files_are_skipped_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _photo_folder(tmp_path / "photos")
    code, out = _create(tmp_path, source, "--resolution", "16")
    assert code == 0
    err = capsys.readouterr().err
    assert "skipped 2 unreadable file(s)" in err
    assert "corrupt.png" in err and "sub/truncated.jpg" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(s["file"] for s in manifest["skipped"]) == ["corrupt.png", "sub/truncated.jpg"]
    assert all(s["reason"] for s in manifest["skipped"])
    assert manifest["ignored"] == ["notes.txt"]
    assert manifest["counts"]["images"] == 3 and manifest["num_images"] == 3
    assert manifest["channels"] == 3  # auto: a.png and b.jpg are RGB
    dataset = ImageDataset(out)
    assert dataset.images(16).shape == (3, 3, 16, 16)
    # c.png is gray: its three channels must be equal after conversion to RGB.
    gray = dataset.images(16)[2]
    np.testing.assert_array_equal(gray[0], gray[1])
    np.testing.assert_array_equal(gray[0], gray[2])


def test_gray_sources_give_one_channel_and_zip_matches_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    folder = tmp_path / "gray"
    (folder / "x").mkdir(parents=True)
    pixels = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(3)]
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(folder / "x" / f"{i}.png")
    with zipfile.ZipFile(tmp_path / "gray.zip", "w") as zf:
        for i in range(3):
            zf.write(folder / "x" / f"{i}.png", f"x/{i}.png")
        zf.writestr("readme.md", "hello")
    assert _create(tmp_path, folder, "--resolution", "8", out="a")[0] == 0
    assert _create(tmp_path, tmp_path / "gray.zip", "--resolution", "8", out="b")[0] == 0
    a, b = ImageDataset(tmp_path / "a"), ImageDataset(tmp_path / "b")
    assert a.channels == b.channels == 1
    np.testing.assert_array_equal(a.images(8)[:, 0], np.stack(pixels))  # no resampling at 8x8
    for res in a.resolutions:
        np.testing.assert_array_equal(a.images(res), b.images(res))
    assert b.manifest["ignored"] == ["readme.md"]


def test_non_square_base_shape(tmp_path: Path) -> None:
    source = _photo_folder(tmp_path / "photos")
    code, out = _create(tmp_path, source, "--resolution", "32", "--base-shape", "4x8")
    assert code == 0
    dataset = ImageDataset(out)
    assert dataset.resolutions == [8, 16, 32]
    assert [dataset.shape(r) for r in dataset.resolutions] == [(4, 8), (8, 16), (16, 32)]
    assert dataset.images(32).shape == (3, 3, 16, 32)
    official = _official_levels(np.asarray(dataset.images(32)), 3)
    for k, res in enumerate((32, 16, 8)):
        np.testing.assert_array_equal(dataset.images(res), official[k])


def test_seed_and_max_images_pick_a_seeded_subset(tmp_path: Path) -> None:
    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 1), np.uint8)
    src = _npy(tmp_path, images)
    assert _create(tmp_path, src, "--resolution", "4", "--max-images", "4", "--seed", "3")[0] == 0
    expected = np.random.default_rng(3).permutation(10)[:4]  # documented: seeded source order
    top = ImageDataset(tmp_path / "ds").images(4)
    np.testing.assert_array_equal(top[:, 0, 0, 0], expected)


@pytest.mark.parametrize("kill_in", ["_write_rows", "write_manifest"])
def test_killed_creation_leaves_nothing_that_looks_like_a_dataset(
    tmp_path: Path, kill_in: str
) -> None:
    src = _npy(tmp_path, np.random.default_rng(3).integers(0, 256, (20, 16, 16, 3), np.uint8))
    out = tmp_path / "ds"
    script = (
        "import os, signal, sys\n"
        "import progan_dsl.data.create as create\n"
        "from progan_dsl.cli import dataset_main\n"
        f"setattr(create, {kill_in!r}, lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL))\n"
        f"sys.exit(dataset_main(['create', '--source', {str(src)!r}, '--out', {str(out)!r},"
        " '--resolution', '16', '--quiet']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert not out.exists()
    leftovers = list(tmp_path.glob(".ds.tmp-*"))
    assert len(leftovers) == 1 and not (leftovers[0] / "manifest.json").exists()
    assert len(list(tmp_path.glob(".ds.txn-*.json"))) == 1  # the journal of the killed run
    with pytest.raises(UserError):
        ImageDataset(leftovers[0])
    with pytest.raises(UserError, match="no such dataset"):
        ImageDataset(out)  # a reader rolls the dead run back (incomplete): nothing to open
    assert not list(tmp_path.glob(".ds.*"))
    # The next run succeeds.
    assert _create(tmp_path, src, "--resolution", "16")[0] == 0
    assert ImageDataset(out).num_images == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "src.npy"]


def test_failed_replacement_keeps_the_existing_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _npy(tmp_path, np.random.default_rng(4).integers(0, 256, (6, 8, 8, 3), np.uint8))
    assert _create(tmp_path, src, "--resolution", "8")[0] == 0
    before = (tmp_path / "ds" / "manifest.json").read_text()
    import progan_dsl.data.create as create

    def fail(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(create, "_write_rows", fail)
    options = CreateOptions(source=str(src), out=tmp_path / "ds", resolution=8, force=True)
    with pytest.raises(RuntimeError, match="disk on fire"):
        create_dataset(options)
    assert (tmp_path / "ds" / "manifest.json").read_text() == before
    assert ImageDataset(tmp_path / "ds").verify() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "src.npy"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"corrupt.png": b"\x89PNG garbage", "notes.txt": b"hi"}, "all 1 image file(s) were"),
        ({"notes.txt": b"hi"}, "holds no image files"),
        ({}, "holds no image files"),
    ],
)
def test_no_usable_images_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, bytes], message: str
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name, data in files.items():
        (source / name).write_bytes(data)
    code, out = _create(tmp_path, source, "--resolution", "8")
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: no usable images in ") and message in err
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".ds.*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "does/not/exist", "--resolution", "8"], "not found"),
        (["--source", "{npy}", "--resolution", "48"], "resolution 48 is not the base shape"),
        (["--source", "{npy}", "--resolution", "8", "--base-shape", "4by4"], "HxW"),
        (["--source", "{float}", "--resolution", "8"], "must be uint8"),
        (["--source", "{npy}", "--resolution", "8", "--labels"], "--labels is not available"),
        (["--source", "{npy}", "--resolution", "0"], "must be at least 1"),
        (["--source", "{npy}", "--resolution", "8", "--mode", "zoom"], "invalid choice"),
    ],
)
def test_bad_options_exit_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    npy = _npy(tmp_path, np.zeros((2, 8, 8), np.uint8))
    flt = _npy(tmp_path, np.zeros((2, 8, 8), np.float32), "float.npy")
    args = [a.format(npy=npy, float=flt) for a in args]
    code = dataset_main(["create", "--out", str(tmp_path / "ds"), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "ds").exists()


def test_existing_output_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _npy(tmp_path, np.random.default_rng(5).integers(0, 256, (5, 8, 8), np.uint8))
    assert _create(tmp_path, src, "--resolution", "8")[0] == 0
    created = json.loads((tmp_path / "ds" / "manifest.json").read_text())["created"]
    capsys.readouterr()
    assert _create(tmp_path, src, "--resolution", "8")[0] == 2
    assert "already holds a dataset" in capsys.readouterr().err
    assert _create(tmp_path, src, "--resolution", "8", "--skip-existing")[0] == 0
    assert capsys.readouterr() == ("", "")  # --quiet: nothing at all
    args = ["create", "--source", str(src), "--out", str(tmp_path / "ds"), "--resolution", "8"]
    assert dataset_main([*args, "--skip-existing"]) == 0
    assert capsys.readouterr() == (
        f"{tmp_path / 'ds'}: dataset with these options exists, skipped\n",
        "",
    )
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["created"] == created
    assert (
        _create(tmp_path, src, "--resolution", "8", "--skip-existing", "--max-images", "2")[0] == 2
    )
    assert "max_images: None there, 2 asked" in capsys.readouterr().err
    assert _create(tmp_path, src, "--resolution", "8", "--max-images", "2", "--force")[0] == 0
    assert ImageDataset(tmp_path / "ds").num_images == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    assert _create(tmp_path, src, "--resolution", "8", "--force", out="mine")[0] == 2
    assert "is not a dataset" in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_quiet_prints_nothing_and_the_summary_comes_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _npy(tmp_path, np.random.default_rng(5).integers(0, 256, (5, 8, 8), np.uint8))
    capsys.readouterr()
    assert _create(tmp_path, src, "--resolution", "8")[0] == 0  # _create passes --quiet
    assert capsys.readouterr() == ("", "")
    args = ["create", "--source", str(src), "--resolution", "8", "--out", str(tmp_path / "loud")]
    assert dataset_main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"dataset   {tmp_path / 'loud'}\n") and "level_8x8.npy" in out


def test_skip_existing_notes_a_dataset_made_with_the_earlier_downsampling_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Datasets made by earlier versions (lower levels from the stored, rounded level above)
    are still read as they are, and reused by --skip-existing with a note."""
    src = _npy(tmp_path, np.random.default_rng(5).integers(0, 256, (5, 8, 8), np.uint8))
    assert _create(tmp_path, src, "--resolution", "8")[0] == 0
    path = tmp_path / "ds" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["downsampling"] = (
        "level k = rint(mean of each 2x2 block of the stored uint8 level k+1), mean in float32 "
        "(exact), rint = round half to even; computed level by level from the level above"
    )
    path.write_text(json.dumps(manifest))
    assert ImageDataset(tmp_path / "ds").images(4).shape == (5, 1, 4, 4)
    capsys.readouterr()
    assert _create(tmp_path, src, "--resolution", "8", "--skip-existing")[0] == 0
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"note: {tmp_path / 'ds'} was made by an earlier")
    assert "--force re-creates it with the official rule" in err
    assert json.loads(path.read_text()) == manifest  # reused, not rewritten


def test_float_images_are_taken_as_zero_to_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Float TIFFs (Pillow mode F) hold [0, 1]: v -> rint(clip(v, 0, 1) * 255); NaN is skipped."""
    root = tmp_path / "floats"
    root.mkdir()
    values = np.random.default_rng(7).random((8, 8)).astype(np.float32)
    values[0, :4] = [0.0, 0.5, 1.0, 1.0 / 255.0]
    values[1, :2] = [-0.25, 1.5]  # outside [0, 1]: clipped
    Image.fromarray(values, "F").save(root / "a.tif")
    with Image.open(root / "a.tif") as check:
        assert check.mode == "F"
    broken = values.copy()
    broken[3, 3] = np.nan
    Image.fromarray(broken, "F").save(root / "b.tif")
    assert _create(tmp_path, root, "--resolution", "8")[0] == 0
    dataset = ImageDataset(tmp_path / "ds")
    assert dataset.channels == 1 and dataset.num_images == 1
    expected = np.rint(np.clip(values.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(dataset.images(8)[0, 0], expected)
    assert dataset.images(8)[0, 0, 0, :4].tolist() == [0, 128, 255, 1]  # 127.5 rounds to even
    assert dataset.images(8)[0, 0, 1, :2].tolist() == [0, 255]
    assert dataset.images(8).mean() > 100  # not black
    assert dataset.manifest["skipped"] == [
        {"file": "b.tif", "reason": "ValueError: the float image holds NaN or infinite values"}
    ]


def test_the_preview_shows_a_seeded_random_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import progan_dsl.images

    shown: list[np.ndarray] = []
    real_grid = progan_dsl.images.image_grid
    monkeypatch.setattr(
        progan_dsl.images, "image_grid", lambda images: shown.append(images) or real_grid(images)
    )
    images = (np.arange(100, dtype=np.uint8) * 2)[:, None, None] * np.ones((1, 4, 4), np.uint8)
    assert _create(tmp_path, _npy(tmp_path, images), "--resolution", "4")[0] == 0
    rows = np.sort(np.random.default_rng(0).choice(100, 64, replace=False))  # as documented
    assert shown[0].shape == (64, 1, 4, 4)
    assert shown[0][:, 0, 0, 0].tolist() == (2 * rows).tolist()
    assert (rows >= 64).sum() > 10  # not the first 64 images
    assert (
        _create(tmp_path, _npy(tmp_path, images[:5], "few.npy"), "--resolution", "4", out="few")[0]
        == 0
    )
    assert shown[1][:, 0, 0, 0].tolist() == [0, 2, 4, 6, 8]  # all of them, in order


def test_labels_come_from_class_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "pets"
    for cls, count in (("cat", 2), ("dog", 3)):
        (root / cls).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(root / cls / f"{i}.png")
    assert _create(tmp_path, root, "--resolution", "8", "--labels")[0] == 0
    dataset = ImageDataset(tmp_path / "ds")
    assert dataset.class_names == ["cat", "dog"]
    assert dataset.labels.tolist() == [0, 0, 1, 1, 1]  # sorted paths: cat/0, cat/1, dog/0..2
    # A subset keeps the numbering of the whole source: dog stays 1 even without any cat.
    order = np.random.default_rng(0).permutation(5)
    assert order[0] >= 2  # with seed 0 the first candidate is a dog
    assert (
        _create(
            tmp_path,
            root,
            "--resolution",
            "8",
            "--labels",
            "--max-images",
            "1",
            "--seed",
            "0",
            out="one",
        )[0]
        == 0
    )
    assert ImageDataset(tmp_path / "one").labels.tolist() == [1]
    Image.new("RGB", (8, 8)).save(root / "loose.png")
    capsys.readouterr()
    assert _create(tmp_path, root, "--resolution", "8", "--labels", out="bad")[0] == 2
    assert "not in a class folder (e.g. 'loose.png')" in capsys.readouterr().err


def test_out_inside_the_source_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _photo_folder(tmp_path / "photos")
    code = dataset_main(
        [
            "create",
            "--source",
            str(source),
            "--out",
            str(source / "ds"),
            "--resolution",
            "8",
            "--quiet",
        ]
    )
    assert code == 2 and "is inside --source" in capsys.readouterr().err
    assert not (source / "ds").exists()


def test_info_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _npy(tmp_path, np.random.default_rng(6).integers(0, 256, (4, 8, 8, 3), np.uint8))
    assert _create(tmp_path, src, "--resolution", "8")[0] == 0
    capsys.readouterr()
    assert dataset_main(["info", str(tmp_path / "ds")]) == 0
    info = capsys.readouterr().out
    assert "images    4  (rgb, 3 channels, layout NCHW uint8)" in info
    assert "level_8x8.npy" in info and "level_4x4.npy" in info
    assert dataset_main(["verify", str(tmp_path / "ds")]) == 0
    level = tmp_path / "ds" / "level_8x8.npy"
    data = bytearray(level.read_bytes())
    data[-1] ^= 0xFF
    level.write_bytes(bytes(data))
    assert dataset_main(["verify", str(tmp_path / "ds")]) == 2
    assert "level_8x8.npy: sha256" in capsys.readouterr().err


def test_mnist_slice(tmp_path: Path) -> None:
    pytest.importorskip("pureml")
    pytest.importorskip("zarr")
    code, out = _create(tmp_path, "mnist", "--resolution", "32", "--max-images", "256", "--labels")
    assert code == 0
    dataset = ImageDataset(out)
    assert dataset.num_images == 256 and dataset.channels == 1
    top = dataset.images(32)
    assert top.shape == (256, 1, 32, 32)
    # 28x28 digits zero-padded by 2 on each side: the border is zero, the middle is not.
    assert not top[:, :, :2].any() and not top[:, :, -2:].any()
    assert not top[:, :, :, :2].any() and not top[:, :, :, -2:].any()
    assert top[:, :, 2:30, 2:30].max(axis=(1, 2, 3)).min() > 100  # every digit has ink
    assert not dataset.images(16)[:, :, 0].any()  # padding of 1 at 16x16
    labels = dataset.labels
    assert labels is not None and labels.shape == (256,)
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # MNIST's first training labels
    assert dataset.class_names == [str(d) for d in range(10)]
