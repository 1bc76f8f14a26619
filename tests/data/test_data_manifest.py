"""Manifests: paths confined to the dataset folder, one structural check with one message (file
and key) for every command that reads a dataset, and the size/digest checks at open
(`ImageDataset.verified`). Digests are recomputed here from their documented definition."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import progan_dsl.data.dataset as dataset_module
from progan_dsl.cli import dataset_main
from progan_dsl.data import CreateOptions, ImageDataset, create_dataset
from progan_dsl.data.manifest import (
    FULL_HASH_MAX_BYTES,
    SAMPLE_BLOCK_BYTES,
    SAMPLE_BLOCKS,
    read_manifest,
)
from progan_dsl.errors import UserError


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled 4-image RGB dataset at 16x16 (levels 4, 8, 16), made once."""
    root = tmp_path_factory.mktemp("made")
    for cls in ("a", "b"):
        (root / "src" / cls).mkdir(parents=True)
        for i in range(2):
            pixels = np.random.default_rng(i + 10 * len(cls)).integers(0, 256, (16, 16, 3))
            from PIL import Image

            Image.fromarray(pixels.astype(np.uint8)).save(root / "src" / cls / f"{i}.png")
    create_dataset(
        CreateOptions(
            source=str(root / "src"), out=root / "ds", resolution=16, labels=True, progress=False
        )
    )
    return root / "ds"


@pytest.fixture
def ds(made: Path, tmp_path: Path) -> Path:
    """A private copy of the made dataset."""
    return Path(shutil.copytree(made, tmp_path / "ds"))


def _edit(ds: Path, change: Callable[[dict[str, Any]], object]) -> None:
    path = ds / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data).replace('"DEEP"', "[" * 5000 + "]" * 5000))


def _all_readers_refuse(
    ds: Path,
    capsys: pytest.CaptureFixture[str],
    *needles: str,
    commands: tuple[str, ...] = ("info", "verify"),
) -> None:
    """ImageDataset (training, metrics) and `commands`: UserError / exit 2 with `needles`."""
    with pytest.raises(UserError) as caught:
        ImageDataset(ds)
    for needle in needles:
        assert needle in str(caught.value), str(caught.value)
    for command in commands:
        capsys.readouterr()
        assert dataset_main([command, str(ds)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and all(n in err for n in needles), err


def _set(*path_and_value: Any) -> Callable[[dict[str, Any]], None]:
    *keys, value = path_and_value

    def change(data: dict[str, Any]) -> None:
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


# ---- paths outside the folder ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (_set("levels", 2, "file", "../outside.npy"), "levels[2].file"),
        (_set("levels", 0, "file", "/etc/passwd"), "levels[0].file"),
        (_set("labels", "file", "/etc/passwd"), "labels.file"),
        (_set("labels", "file", "sub/labels.npy"), "labels.file"),
        (_set("preview", ".."), "preview"),
    ],
)
def test_manifest_paths_outside_the_folder_are_refused(
    ds: Path, capsys: pytest.CaptureFixture[str], change: Callable[[dict[str, Any]], None], key: str
) -> None:
    shutil.copy(ds / "level_16x16.npy", ds.parent / "outside.npy")
    _edit(ds, change)
    _all_readers_refuse(ds, capsys, str(ds / "manifest.json"), key, "is not a plain file name")


def test_a_symlink_leaving_the_folder_is_refused_even_with_a_matching_hash(
    ds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = ds.parent / "foreign.npy"
    shutil.copy(ds / "level_16x16.npy", foreign)
    data = bytearray(foreign.read_bytes())
    data[-1] ^= 0xFF
    foreign.write_bytes(bytes(data))
    (ds / "level_16x16.npy").unlink()
    (ds / "level_16x16.npy").symlink_to(foreign)
    digest = hashlib.sha256(bytes(data)).hexdigest()
    _edit(ds, _set("levels", 2, "sha256", digest))  # the attacker also fixes the hash
    # info reads only the manifest (it lists the files, it does not open them)
    _all_readers_refuse(ds, capsys, "levels[2]", "outside the dataset folder", commands=("verify",))


def test_a_symlink_inside_the_folder_is_read(ds: Path) -> None:
    (ds / "level_4x4.npy").rename(ds / "real_4x4.npy")
    (ds / "level_4x4.npy").symlink_to("real_4x4.npy")
    assert ImageDataset(ds).images(4).shape == (4, 3, 4, 4)
    assert ImageDataset(ds).verify() == []


def test_a_named_pipe_as_a_level_file_is_refused_without_blocking(ds: Path) -> None:
    (ds / "level_8x8.npy").unlink()
    with _pipe(ds / "level_8x8.npy"), pytest.raises(UserError) as info:
        ImageDataset(ds)
    assert "level_8x8.npy: is a named pipe, not a regular file (levels[1].file)" in str(info.value)


def test_a_named_pipe_as_the_manifest_is_refused_without_blocking(ds: Path) -> None:
    (ds / "manifest.json").unlink()
    with _pipe(ds / "manifest.json"), pytest.raises(UserError) as info:
        ImageDataset(ds)
    assert "manifest.json: is a named pipe, not a regular file" in str(info.value)


@contextmanager
def _pipe(path: Path) -> Iterator[None]:
    """A named pipe at `path`, with a writer waiting to open it: should the code under test open
    the pipe after all, it reads end-of-file (a wrong message) instead of blocking. No clock."""
    os.mkfifo(path)
    writer = threading.Thread(target=lambda: os.close(os.open(path, os.O_WRONLY)), daemon=True)
    writer.start()
    try:
        yield
    finally:
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer's open return
        writer.join()
        os.close(reader)


# ---- malformed manifests: one message naming the file and the key --------------------------------


def _deep(data: dict[str, Any]) -> None:
    data["source"] = {"deep": "DEEP"}  # replaced by 5000 nested lists in the text (_edit)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_set("num_images", "4"), "num_images: Input should be a valid integer (got '4')"),
        (_set("num_images", True), "num_images: Input should be a valid integer (got True)"),
        (_set("num_images", 0), "num_images: Input should be greater than or equal to 1"),
        (_set("channels", 2), "channels: 2 is not 1 (gray) or 3 (rgb)"),
        (_set("levels", {"a": 1}), "levels: Input should be a valid list"),
        (_set("levels", []), "levels: List should have at least 1 item"),
        (lambda d: d["levels"][1].pop("sha256"), "levels[1].sha256: Field required"),
        (_set("levels", 1, "sha256", "abc"), "levels[1].sha256: String should match pattern"),
        (_set("levels", 1, "shape", [8]), "levels[1].shape[1]: Field required (got [8])"),
        (_set("levels", 1, "shape", [8, "8"]), "levels[1].shape[1]: Input should be a valid"),
        (_set("levels", 1, "shape", [8, 16]), "levels[1].resolution: 8 is not the longer side"),
        (_set("levels", 1, "bytes", -1), "levels[1].bytes: Input should be greater than or"),
        (_set("levels", 1, "bytes", 10), "levels[1].bytes: 10 is not more than the 768 bytes"),
        (_set("levels", 1, "extra", 1), "levels[1].extra: Extra inputs are not permitted"),
        (_set("levels", 2, "file", "level_8x8.npy"), "levels[2].file: 'level_8x8.npy' is also"),
        (_set("levels", 0, "shape", [2, 2]), "levels[0].resolution: 4 is not the longer side"),
        (_set("base_shape", [4, 8]), "levels[0].shape: [4, 4] is not base_shape [4, 8]"),
        (_set("resolutions", [4, 8]), "resolutions: [4, 8] does not match"),
        (_set("labels", "classes", []), "labels.classes: List should have at least 1 item"),
        (_set("labels", "classes", ["a", "a"]), "labels.classes: class names repeat"),
        (_set("labels", 7), "labels: Input should be a valid dictionary"),
        (_set("counts", "images", -3), "counts.images: Input should be greater than or equal"),
        (_set("skipped", [{"file": "x.png"}]), "skipped[0].reason: Field required"),
        (_set("layout", "NHWC uint8"), "layout: 'NHWC uint8' is not 'NCHW uint8'"),
        (_set("format_version", "1"), "format_version '1' is not supported"),
        (_set("format_version", 2), "format_version 2 is not supported"),
        (_set("format", "other"), "not a progan-dsl-dataset manifest"),
        (_deep, "unreadable manifest: nested too deeply"),
    ],
)
def test_malformed_manifests_give_one_located_message(
    ds: Path,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    _edit(ds, change)
    _all_readers_refuse(ds, capsys, f"{ds / 'manifest.json'}: ", expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{", "unreadable manifest: Expecting property name"),
        ("[1, 2]", "not a progan-dsl-dataset manifest"),
        ("\xff\xfe", "unreadable manifest: 'utf-8' codec can't decode"),
    ],
)
def test_unparsable_manifests(
    ds: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    (ds / "manifest.json").write_bytes(text.encode("latin-1"))
    _all_readers_refuse(ds, capsys, expected)


# ---- checks at open ---------------------------------------------------------------------------


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_small_levels_are_fully_hashed_at_open(
    ds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opened = ImageDataset(ds)
    assert opened.verified.startswith("fully verified at open: the sha256 of all 3 level files")
    _flip(ds / "level_8x8.npy", 200)  # one bit of one pixel
    with pytest.raises(
        UserError,
        match=r"level_8x8.npy: does not match the dataset's manifest "
        r"\(its sha256 differs",
    ):
        ImageDataset(ds)
    assert dataset_main(["verify", str(ds)]) == 2  # verify still reports instead of refusing
    assert "level_8x8.npy: sha256" in capsys.readouterr().err
    assert dataset_main(["info", str(ds)]) == 0


def test_flipped_labels_are_refused_at_open(ds: Path) -> None:
    _flip(ds / "labels.npy", 130)
    with pytest.raises(UserError, match="labels.npy: does not match"):
        ImageDataset(ds)


@pytest.mark.parametrize(
    ("labels", "shown"),
    [
        (np.array([0, 0, 1, 1], np.int32), "int32 (4,)"),
        (np.array([0, 1, 1], np.int64), "int64 (3,)"),
        (np.array([0, 1, 2, 1], np.int64), "int64 (4,)"),  # class 2 of 2 classes
    ],
)
def test_labels_of_the_wrong_kind_are_refused_at_open(
    ds: Path, labels: np.ndarray, shown: str
) -> None:
    """Labels whose hash matches (the manifest edited with them) but whose content does not fit
    the manifest: refused when the dataset is opened, not when the labels are first used."""
    np.save(ds / "labels.npy", labels)
    digest = hashlib.sha256((ds / "labels.npy").read_bytes()).hexdigest()
    _edit(ds, _set("labels", "sha256", digest))
    with pytest.raises(
        UserError,
        match=re.escape(f"labels.npy: holds {shown}, manifest says int64 (4,) with values in 0..1"),
    ):
        ImageDataset(ds)


def test_truncated_and_extended_levels_are_refused_by_size(ds: Path) -> None:
    level = ds / "level_16x16.npy"
    original = level.read_bytes()
    level.write_bytes(original[:-1])
    with pytest.raises(
        UserError, match=f"it is {len(original) - 1} bytes, the manifest says {len(original)}"
    ):
        ImageDataset(ds)
    level.write_bytes(original + b"\0" * 64)
    _edit(ds, _set("levels", 2, "bytes", len(original) + 64))
    with pytest.raises(UserError, match="64 stray bytes at the end"):
        ImageDataset(ds)


def _sampled_by_hand(path: Path, blocks: int, block: int) -> str:
    """The documented digest: sha256(size as 8 bytes LE, then `blocks` blocks starting at
    i * (size - block) // (blocks - 1); one block at 0 if size <= block)."""
    data = path.read_bytes()
    digest = hashlib.sha256(len(data).to_bytes(8, "little"))
    if len(data) <= block:
        digest.update(data)
        return digest.hexdigest()
    for i in range(blocks):
        start = i * (len(data) - block) // (blocks - 1)
        digest.update(data[start : start + block])
    return digest.hexdigest()


def test_large_levels_are_checked_by_the_sampled_digest(
    ds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = json.loads((ds / "manifest.json").read_text())
    top = manifest["levels"][2]
    assert top["sampled"] == {
        "blocks": SAMPLE_BLOCKS,
        "block_bytes": SAMPLE_BLOCK_BYTES,
        "sha256": _sampled_by_hand(ds / top["file"], SAMPLE_BLOCKS, SAMPLE_BLOCK_BYTES),
    }
    assert (SAMPLE_BLOCKS, SAMPLE_BLOCK_BYTES, FULL_HASH_MAX_BYTES) == (64, 1 << 16, 32 << 20)
    # Smaller blocks than the file, so sampling skips bytes: 4 blocks of 100 of a 3200-byte file.
    size = top["bytes"]
    assert size == 128 + 4 * 3 * 16 * 16  # header + N*C*H*W
    _edit(
        ds,
        _set(
            "levels",
            2,
            "sampled",
            {"blocks": 4, "block_bytes": 100, "sha256": _sampled_by_hand(ds / top["file"], 4, 100)},
        ),
    )
    monkeypatch.setattr(dataset_module, "FULL_HASH_MAX_BYTES", 1024)  # levels 4 and 8 stay full
    opened = ImageDataset(ds)
    assert opened.verified == (
        "partly verified at open: sizes and headers of all 3 level files; full sha256 of levels "
        "4, 8; sampled sha256 of levels 16 (evenly spaced blocks; most single-byte changes are "
        "not seen); 'progan-dataset verify' re-hashes every byte"
    )
    # Block starts: i * (3200 - 100) // 3 = 0, 1033, 2066, 3100.
    _flip(ds / top["file"], 1033 + 50)  # inside a sampled block: caught
    with pytest.raises(UserError, match="its sampled digest differs"):
        ImageDataset(ds)
    _flip(ds / top["file"], 1033 + 50)  # undo
    _flip(ds / top["file"], 600)  # between blocks: not seen at open, seen by a full check
    assert ImageDataset(ds).num_images == 4
    with pytest.raises(UserError, match="its sha256 differs"):
        ImageDataset(ds, full_check=True)
    assert ImageDataset(ds).verify() == [
        f"level_16x16.npy: sha256 "
        f"{hashlib.sha256((ds / top['file']).read_bytes()).hexdigest()[:12]}"
        f"... != manifest {top['sha256'][:12]}..."
    ]


def test_manifests_without_sampled_digests_are_checked_by_size(
    ds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _edit(ds, lambda d: [level.pop("sampled") for level in d["levels"]])
    monkeypatch.setattr(dataset_module, "FULL_HASH_MAX_BYTES", 1024)
    assert "levels 16 by size only (their manifest predates sampled digests)" in (
        ImageDataset(ds).verified
    )


def test_opening_a_1024_dataset_is_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The size of CelebA-HQ at 1024 (30,000 RGB images, 9 levels: 125 GB) as sparse files:
    the open reads the small levels in full and 4 MiB of each large one (bytes counted, not
    seconds)."""
    probe = tmp_path / "probe"
    with open(probe, "wb") as fh:
        fh.truncate(1 << 30)
    if probe.stat().st_blocks * 512 > 1 << 20:
        pytest.skip("this file system has no sparse files")
    probe.unlink()
    from progan_dsl.data.manifest import level_file_name, sampled_sha256, sha256_file

    n, levels = 30_000, []
    for k in range(9):
        side = 4 << k
        file = tmp_path / level_file_name((side, side))
        header = _npy_header((n, 3, side, side))
        with open(file, "wb") as fh:
            fh.write(header)
            fh.truncate(len(header) + n * 3 * side * side)
        small = file.stat().st_size <= FULL_HASH_MAX_BYTES
        levels.append(
            {
                "resolution": side,
                "shape": [side, side],
                "file": file.name,
                "bytes": file.stat().st_size,
                "sha256": sha256_file(file) if small else "0" * 64,  # large: never fully hashed
                "sampled": sampled_sha256(file).model_dump(),
            }
        )
    manifest = {
        "format": "progan-dsl-dataset",
        "format_version": 1,
        "num_images": n,
        "channels": 3,
        "base_shape": [4, 4],
        "levels": levels,
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    read: dict[str, int] = {}  # bytes each level's check reads
    real_full, real_sampled = dataset_module.sha256_file, dataset_module.sampled_sha256

    def full(path: Path, *args: Any) -> str:
        read[path.name] = path.stat().st_size
        return real_full(path, *args)

    def sampled(path: Path, blocks: int, block_bytes: int) -> Any:
        read[path.name] = min(blocks * block_bytes, path.stat().st_size)
        return real_sampled(path, blocks, block_bytes)

    monkeypatch.setattr(dataset_module, "sha256_file", full)
    monkeypatch.setattr(dataset_module, "sampled_sha256", sampled)
    opened = ImageDataset(tmp_path)
    assert opened.resolutions == [4 << k for k in range(9)]
    assert "full sha256 of levels 4, 8, 16; sampled sha256 of levels 32, 64" in opened.verified
    small = [lv["file"] for lv in levels if lv["bytes"] <= FULL_HASH_MAX_BYTES]
    assert {name: read[name] for name in small} == {
        lv["file"]: lv["bytes"] for lv in levels if lv["file"] in small
    }
    large = {name: n for name, n in read.items() if name not in small}
    assert large and all(n <= 4 << 20 for n in large.values()), large
    assert sum(read.values()) < (1 << 30) and sum(lv["bytes"] for lv in levels) > 100 << 30


def _npy_header(shape: tuple[int, ...]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "|u1", "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def test_read_manifest_returns_the_typed_manifest_and_the_json(made: Path) -> None:
    manifest = read_manifest(made)
    assert [level.shape for level in manifest.levels] == [(4, 4), (8, 8), (16, 16)]
    assert manifest.labels is not None and manifest.labels.classes == ["a", "b"]
    assert manifest.raw == json.loads((made / "manifest.json").read_text())
