"""The on-disk dataset format: file names, `manifest.json` (reading, validating, writing) and
checksums. Creation (`create.py`) and reading (`dataset.py`) both go through this module, so the
format is described in one place.

A dataset directory holds one `.npy` file per level, uint8 with layout [N, C, H, W], named
`level_<H>x<W>.npy`; optionally `labels.npy` (int64 [N]); `preview.png`; and `manifest.json`,
which is written last. A directory without a valid manifest is not a dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from progan_dsl.errors import UserError

FORMAT_NAME = "progan-dsl-dataset"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.npy"
PREVIEW_NAME = "preview.png"
LAYOUT = "NCHW uint8"

_REQUIRED_KEYS = ("format", "format_version", "num_images", "channels", "base_shape", "levels")


def level_file_name(shape: tuple[int, int]) -> str:
    """File name of the level with image shape (H, W)."""
    return f"level_{shape[0]}x{shape[1]}.npy"


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def is_manifest_present(directory: Path) -> bool:
    """Whether `directory` has a manifest that names our format (valid or not)."""
    try:
        data = json.loads((directory / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT_NAME


def read_manifest(directory: Path) -> dict[str, Any]:
    """Load and check `manifest.json` in `directory`; UserError says what is wrong."""
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise UserError(f"{directory}: no such dataset directory")
    if not path.is_file():
        raise UserError(
            f"{directory}: not a dataset ({MANIFEST_NAME} missing; an interrupted "
            "'progan-dataset create' leaves no manifest, so run it again)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable manifest: {err}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise UserError(f"{path}: not a {FORMAT_NAME} manifest")
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise UserError(f"{path}: manifest lacks {', '.join(missing)}")
    if data["format_version"] != FORMAT_VERSION:
        raise UserError(
            f"{path}: format_version {data['format_version']} is not supported "
            f"(this progan-dsl reads version {FORMAT_VERSION}); re-create the dataset"
        )
    if not data["levels"]:
        raise UserError(f"{path}: manifest lists no levels")
    return data


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write `manifest.json` durably (temp file, fsync, rename) inside `directory`."""
    tmp = directory / (MANIFEST_NAME + ".partial")
    with open(tmp, "w") as fh:
        json.dump(manifest, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / MANIFEST_NAME)
    fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (so renames inside it survive a crash)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checked_files(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(file name, sha256) of every checksummed file the manifest lists."""
    files = [(level["file"], level["sha256"]) for level in manifest["levels"]]
    if manifest.get("labels"):
        files.append((manifest["labels"]["file"], manifest["labels"]["sha256"]))
    return files


def verify_checksums(directory: Path, manifest: dict[str, Any]) -> list[str]:
    """Re-hash every listed file; return a problem description per bad file (empty = ok)."""
    problems = []
    for name, expected in checked_files(manifest):
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif (actual := sha256_file(path)) != expected:
            problems.append(f"{name}: sha256 {actual[:12]}... != manifest {expected[:12]}...")
    return problems
