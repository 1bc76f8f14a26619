"""The on-disk dataset format: file names, `manifest.json` (its typed model, reading with one
structural check, writing), checksums and the cheap digest checked at open. Creation
(`create.py`) and reading (`dataset.py`) both go through this module, so the format is described
in one place.

A dataset directory holds one `.npy` file per level, uint8 with layout [N, C, H, W], named
`level_<H>x<W>.npy`; optionally `labels.npy` (int64 [N]); `preview.png`; and `manifest.json`,
which is written last. A directory without a valid manifest is not a dataset.

Every file a manifest names is a bare file name inside the dataset folder: no folders, no `..`,
no absolute paths, and no symlink that resolves outside the folder (`confined_file`); files must
be regular files (a named pipe would block the reader). A manifest is validated once, here
(`read_manifest`): types, keys, shapes and counts, with one message naming the file and the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    StrictStr,
    ValidationError,
)

from progan_dsl.errors import UserError
from progan_dsl.fsutil import file_kind, fsync_dir, open_regular, read_regular

FORMAT_NAME = "progan-dsl-dataset"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.npy"
PREVIEW_NAME = "preview.png"
LAYOUT = "NCHW uint8"
MANIFEST_MAX_BYTES = 256 << 20  # a manifest lists at most every skipped file: far below this

# What `ImageDataset` checks at open (chosen so that opening a 1024x1024 CelebA-HQ dataset,
# 30,000 images in 9 levels, stays well under a second): levels up to FULL_HASH_MAX_BYTES are
# hashed in full (the 4..16 levels there: 30 MB, ~30 ms), larger ones by a sampled digest of
# SAMPLE_BLOCKS blocks of SAMPLE_BLOCK_BYTES (4 MiB read per level).
FULL_HASH_MAX_BYTES = 32 << 20
SAMPLE_BLOCKS = 64
SAMPLE_BLOCK_BYTES = 64 << 10

_LEVEL_FILE = re.compile(r"^level_[1-9][0-9]*x[1-9][0-9]*\.npy$")


def level_file_name(shape: tuple[int, int]) -> str:
    """File name of the level with image shape (H, W)."""
    return f"level_{shape[0]}x{shape[1]}.npy"


def is_dataset_file(name: str) -> bool:
    """Whether `progan-dataset create` writes a file of this name into a dataset folder."""
    return bool(_LEVEL_FILE.match(name)) or name in (MANIFEST_NAME, LABELS_NAME, PREVIEW_NAME)


# ---- the manifest's structure -----------------------------------------------------------------


def _bare_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"{name!r} is not a plain file name inside the dataset folder")
    return name


Count = Annotated[int, Strict(), Field(ge=0)]
Positive = Annotated[int, Strict(), Field(ge=1)]
Sha256 = Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{64}$")]
FileName = Annotated[str, Strict(), AfterValidator(_bare_name)]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SampledDigest(_Entry):
    """sha256 over the file size and `blocks` evenly spaced blocks (see `sampled_sha256`)."""

    blocks: Positive
    block_bytes: Positive
    sha256: Sha256


class LevelEntry(_Entry):
    resolution: Positive  # the longer side of `shape`
    shape: tuple[Positive, Positive]  # (H, W)
    file: FileName
    bytes: Count  # file size
    sha256: Sha256
    sampled: SampledDigest | None = None  # absent in manifests written before it existed


class LabelsEntry(_Entry):
    file: FileName
    classes: Annotated[list[StrictStr], Field(min_length=1)]
    sha256: Sha256


class SkippedEntry(_Entry):
    file: StrictStr
    reason: StrictStr


class Manifest(BaseModel):
    """`manifest.json`. Keys this code relies on are typed; other keys are kept as they are."""

    model_config = ConfigDict(extra="allow")

    format: Literal["progan-dsl-dataset"]
    format_version: Annotated[int, Strict()]
    num_images: Positive
    channels: Annotated[int, Strict(), Field(ge=1, le=3)]
    base_shape: tuple[Positive, Positive]
    levels: Annotated[list[LevelEntry], Field(min_length=1)]
    labels: LabelsEntry | None = None
    preview: FileName | None = None
    resolutions: list[Positive] | None = None
    layout: StrictStr | None = None
    downsampling: StrictStr | None = None
    created: StrictStr | None = None
    tool: StrictStr | None = None
    source: dict[str, Any] = {}
    options: dict[str, Any] = {}
    counts: dict[str, Count] = {}
    skipped: list[SkippedEntry] = []
    ignored: list[StrictStr] = []
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def raw(self) -> dict[str, Any]:
        """The manifest as read (plain JSON)."""
        return self._raw


def _key(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _validation_message(path: Path, err: ValidationError) -> str:
    lines = []
    for item in err.errors()[:3]:
        shown = repr(item.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        lines.append(f"{_key(item['loc'])}: {item['msg']} (got {shown})")
    more = f" (and {err.error_count() - 3} more)" if err.error_count() > 3 else ""
    return f"{path}: invalid manifest: " + "; ".join(lines) + more + "; re-create the dataset"


def _check_consistency(path: Path, m: Manifest) -> None:
    """The cross-key rules a dataset made by `create` satisfies; UserError names the key."""

    def bad(key: str, what: str) -> UserError:
        return UserError(f"{path}: invalid manifest: {key}: {what}; re-create the dataset")

    if m.channels not in (1, 3):
        raise bad("channels", f"{m.channels} is not 1 (gray) or 3 (rgb)")
    if m.layout is not None and m.layout != LAYOUT:
        raise bad("layout", f"{m.layout!r} is not {LAYOUT!r}")
    previous: tuple[int, int] | None = None
    for i, level in enumerate(m.levels):
        h, w = level.shape
        if level.resolution != max(h, w):
            raise bad(
                f"levels[{i}].resolution",
                f"{level.resolution} is not the longer side of shape {list(level.shape)}",
            )
        if previous is None and level.shape != m.base_shape:
            raise bad(
                "levels[0].shape", f"{list(level.shape)} is not base_shape {list(m.base_shape)}"
            )
        if previous is not None and level.shape != (2 * previous[0], 2 * previous[1]):
            raise bad(
                f"levels[{i}].shape",
                f"{list(level.shape)} is not twice levels[{i - 1}].shape {list(previous)}",
            )
        data = m.num_images * m.channels * h * w
        if level.bytes <= data:
            raise bad(
                f"levels[{i}].bytes",
                f"{level.bytes} is not more than the {data} bytes "
                f"of {m.num_images} images of {m.channels}x{h}x{w}",
            )
        previous = level.shape
    if m.resolutions is not None and m.resolutions != [lv.resolution for lv in m.levels]:
        raise bad(
            "resolutions",
            f"{m.resolutions} does not match the levels' {[lv.resolution for lv in m.levels]}",
        )
    names = [(f"levels[{i}].file", lv.file) for i, lv in enumerate(m.levels)]
    names += [("labels.file", m.labels.file)] if m.labels else []
    names += [("preview", m.preview)] if m.preview else []
    seen: dict[str, str] = {MANIFEST_NAME: "the manifest itself"}
    for key, name in names:
        if name in seen:
            raise bad(key, f"{name!r} is also {seen[name]}")
        seen[name] = key
    if m.labels and len(set(m.labels.classes)) != len(m.labels.classes):
        raise bad("labels.classes", "class names repeat")


# ---- reading and writing ----------------------------------------------------------------------


def confined_file(directory: Path, name: str, key: str) -> Path:
    """The regular file `name` inside `directory` (resolved); UserError if it is missing, not a
    regular file, or a symlink that leads outside the folder."""
    root = directory.resolve()
    path = root / _bare_name(name)
    if not os.path.lexists(path):
        raise UserError(f"{directory / name}: missing ({key} in {MANIFEST_NAME})")
    real = path.resolve()
    if not real.is_relative_to(root):
        raise UserError(
            f"{directory / name}: {key} is a symbolic link to {real}, outside the dataset folder; "
            "refusing to read it"
        )
    mode = real.stat().st_mode
    if file_kind(mode) != "regular file":
        raise UserError(f"{directory / name}: is a {file_kind(mode)}, not a regular file ({key})")
    return real


def _manifest_text(directory: Path) -> str | None:
    """The manifest's text, or None if there is none; never blocks on a special file."""
    try:
        path = confined_file(directory, MANIFEST_NAME, MANIFEST_NAME)
        return read_regular(path, MANIFEST_MAX_BYTES).decode("utf-8")
    except (UserError, OSError, ValueError):
        return None


def is_manifest_present(directory: Path) -> bool:
    """Whether `directory` has a manifest that names our format (valid or not)."""
    text = _manifest_text(directory)
    if text is None:
        return False
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT_NAME


def read_manifest(directory: Path) -> Manifest:
    """Load and check `manifest.json` in `directory`; UserError says what is wrong, and where."""
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise UserError(f"{directory}: no such dataset directory")
    if not os.path.lexists(path):
        raise UserError(
            f"{directory}: not a dataset ({MANIFEST_NAME} missing; an interrupted "
            "'progan-dataset create' leaves no manifest, so run it again)"
        )
    real = confined_file(directory, MANIFEST_NAME, MANIFEST_NAME)
    try:
        data = json.loads(read_regular(real, MANIFEST_MAX_BYTES).decode("utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable manifest: {err}") from None
    except RecursionError:
        raise UserError(f"{path}: unreadable manifest: nested too deeply") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise UserError(f"{path}: not a {FORMAT_NAME} manifest")
    version = data.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise UserError(
            f"{path}: format_version {version!r} is not supported "
            f"(this progan-dsl reads version {FORMAT_VERSION}); re-create the dataset"
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as err:
        raise UserError(_validation_message(path, err)) from None
    _check_consistency(path, manifest)
    manifest._raw = data
    return manifest


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


# ---- checksums ---------------------------------------------------------------------------------


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open_regular(path) as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def sample_offsets(size: int, blocks: int, block_bytes: int) -> list[int]:
    """Start of each sampled block: evenly spaced from 0 to size - block_bytes (the first block
    holds the header, the last the final bytes); one block at 0 if the file is that small."""
    if size <= block_bytes or blocks == 1:
        return [0]
    span = size - block_bytes
    return [i * span // (blocks - 1) for i in range(blocks)]


def sampled_sha256(
    path: Path, blocks: int = SAMPLE_BLOCKS, block_bytes: int = SAMPLE_BLOCK_BYTES
) -> SampledDigest:
    """sha256 of the file size (8 bytes, little-endian) followed by the sampled blocks."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        digest = hashlib.sha256(size.to_bytes(8, "little"))
        for offset in sample_offsets(size, blocks, block_bytes):
            digest.update(os.pread(fh.fileno(), block_bytes, offset))
    return SampledDigest(blocks=blocks, block_bytes=block_bytes, sha256=digest.hexdigest())


def checked_files(manifest: Manifest) -> list[tuple[str, str, str]]:
    """(manifest key, file name, sha256) of every checksummed file the manifest lists."""
    files = [(f"levels[{i}]", lv.file, lv.sha256) for i, lv in enumerate(manifest.levels)]
    if manifest.labels:
        files.append(("labels", manifest.labels.file, manifest.labels.sha256))
    return files


def verify_checksums(directory: Path, manifest: Manifest) -> list[str]:
    """Re-hash every listed file; return a problem description per bad file (empty = ok)."""
    problems = []
    for key, name, expected in checked_files(manifest):
        try:
            path = confined_file(directory, name, key)
        except UserError as err:
            problems.append(f"{name}: {str(err).split(': ', 1)[-1]}")
            continue
        if (actual := sha256_file(path)) != expected:
            problems.append(f"{name}: sha256 {actual[:12]}... != manifest {expected[:12]}...")
    return problems
