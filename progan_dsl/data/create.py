"""`create_dataset`: turn a source into a dataset directory, atomically.

Pipeline: open the source -> check the free space -> decode candidates in chunks on a thread pool
(unreadable files are skipped and listed) -> write the top level and, chunk by chunk, every lower
level as the 2x2 box average of the unrounded level above (`geometry.DOWNSAMPLE_RULE`, the
official dataset tool's) -> preview (a seeded random sample) -> checksums -> manifest (last).

Atomicity (`fsutil.staged_dir`): everything is written into the hidden sibling `.DIR.tmp-<pid>`,
which becomes `DIR` only when complete, under a locked journal `.DIR.txn-<pid>.json`. A failure
removes the temp folder; a kill at any instant leaves either the old or the new complete dataset
at `DIR`, or a journal from which the next run (or the next reader of a missing `DIR`) restores
the old dataset or finishes the replacement. An existing `DIR` is never written into: a dataset
there is replaced only with `force` (moved aside, then deleted after the new one is in place),
and only if it holds nothing but dataset files; a non-empty folder that is not a dataset is
always refused.

Level files are written with plain writes (`npyfile.NpyWriter`), never through a memory map, so
a full disk is an `OSError`, reported as "disk full while writing ...; nothing older was touched"
(exit 2) after the temp folder is removed, instead of a SIGBUS.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from tqdm import tqdm

import progan_dsl
from progan_dsl.data.dataset import ImageDataset
from progan_dsl.data.geometry import DOWNSAMPLE_RULE, Geometry, pyramid
from progan_dsl.data.imageops import FitMode, prepare
from progan_dsl.data.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    LABELS_NAME,
    LAYOUT,
    MANIFEST_NAME,
    PREVIEW_NAME,
    is_dataset_file,
    is_manifest_present,
    level_file_name,
    sampled_sha256,
    sha256_file,
    write_manifest,
)
from progan_dsl.data.npyfile import NpyWriter
from progan_dsl.data.sources import Source, open_source, source_key
from progan_dsl.errors import UserError
from progan_dsl.fsutil import (
    OutputDir,
    foreign_entries,
    recover_interrupted,
    staged_dir,
    target_path,
    write_error_message,
)

Channels = Literal["rgb", "gray", "auto"]
CHUNK_BYTES = 64 << 20  # decoded top-level pixels held in memory per chunk
PREVIEW_MAX_SIDE = 128  # preview tiles come from the largest level at most this long
PREVIEW_IMAGES = 64  # images in preview.png: a seeded random sample (`preview_rows`)
PREVIEW_SEED = 0
SLACK_BYTES = 1 << 20  # free space asked for beyond the levels and labels: preview, manifest


@dataclass(frozen=True)
class CreateOptions:
    """Everything `progan-dataset create` accepts."""

    source: str  # folder, .zip, .npy, or a bundled name ("mnist")
    out: Path  # dataset directory to create
    resolution: int  # longer side of the top level
    base_shape: tuple[int, int] = (4, 4)  # (H, W) of the lowest level
    mode: FitMode = "crop"  # crop: centre crop to the aspect ratio; resize: stretch
    channels: Channels = "auto"  # auto: gray if every source image is grayscale
    max_images: int | None = None  # keep at most this many usable images
    labels: bool = False  # store labels.npy (class folders, or MNIST digits)
    seed: int | None = None  # None: sorted source order; int: seeded random order
    force: bool = False  # replace an existing dataset at `out`
    skip_existing: bool = False  # return at once if `out` has this dataset already
    progress: bool = True  # tqdm progress bar on stderr

    def recorded(self) -> dict[str, Any]:
        """The options that define the dataset's content (stored; --skip-existing compares)."""
        fields = asdict(self)
        for key in ("out", "force", "skip_existing", "progress"):
            del fields[key]
        fields["source"] = source_key(self.source)
        fields["base_shape"] = list(self.base_shape)
        return fields


@dataclass(frozen=True)
class CreateResult:
    path: Path
    manifest: dict[str, Any]
    reused: bool  # True: --skip-existing found the same dataset and nothing was written


def create_dataset(opts: CreateOptions) -> CreateResult:
    """Create the dataset described by `opts` (see the module docstring for the guarantees)."""
    geometry = Geometry(opts.base_shape, opts.resolution)
    if opts.max_images is not None and opts.max_images < 1:
        raise UserError(f"--max-images must be at least 1, got {opts.max_images}")
    out = target_path(opts.out)
    recover_interrupted(out)  # a killed earlier run may have left DIR aside
    state = _existing_state(out, opts)
    if isinstance(state, CreateResult):
        return state
    source_path = Path(source_key(opts.source))
    if source_path.is_dir() and out.is_relative_to(source_path):
        raise UserError(f"--out {out} is inside --source {source_path}; choose a folder outside it")
    source = open_source(opts.source, opts.labels)
    plan = OutputDir(out, replace=state == "replace")
    try:
        with staged_dir(plan, complete_file=MANIFEST_NAME) as tmp:
            manifest = _build(source, geometry, opts, tmp)
    except OSError as err:  # disk full, permissions, ...: the user's to fix, not a bug
        message = write_error_message(
            err,
            out,
            "the partial dataset was removed; free some space (or fix the "
            "permissions) and run the command again",
        )
        raise UserError(message or f"creating {out} failed: {err}") from err
    finally:
        source.close()
    return CreateResult(out, manifest, reused=False)


def _existing_state(out: Path, opts: CreateOptions) -> str | CreateResult:
    """What is at `out`: "new", "empty" or "replace", a reuse result, or a UserError."""
    if not out.exists():
        return "new"
    if not out.is_dir():
        raise UserError(f"{out} exists and is not a directory")
    if is_manifest_present(out):
        if opts.skip_existing:
            try:
                existing = ImageDataset(out).manifest
            except UserError as err:
                existing, invalid = None, str(err)
            if existing is not None and existing.get("options") == opts.recorded():
                return CreateResult(out, existing, reused=True)
            if not opts.force:
                why = invalid if existing is None else _option_diff(existing, opts)
                raise UserError(
                    f"{out} holds a dataset that does not match ({why}); pass --force to replace it"
                )
        elif not opts.force:
            raise UserError(
                f"{out} already holds a dataset; pass --force to replace it "
                "or --skip-existing to keep it"
            )
        foreign = foreign_entries(out, is_dataset_file)
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise UserError(
                f"{out} holds a dataset and also files progan-dataset did not write ({shown}); "
                "--force replaces the whole folder, so move them out first"
            )
        return "replace"
    if any(out.iterdir()):
        raise UserError(
            f"{out} exists, is not empty and is not a dataset; refusing to write into it "
            "(choose another --out)"
        )
    return "empty"


def _option_diff(manifest: dict[str, Any], opts: CreateOptions) -> str:
    old = manifest.get("options") or {}
    new = opts.recorded()
    diffs = [f"{k}: {old.get(k)!r} there, {v!r} asked" for k, v in new.items() if old.get(k) != v]
    return "; ".join(diffs) or "options differ"


def _check_space(folder: Path, needed: int, out: Path) -> None:
    """UserError before anything is written if the disk cannot hold the dataset (an upper bound:
    every candidate usable). Quotas are not visible here; the writes report them."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise UserError(
            f"disk full while writing {out}: the dataset needs about {_size(needed)} and "
            f"{folder} has {_size(free)} free; nothing older was touched; free some space "
            "(with --force the old dataset stays until the new one is complete) or use "
            "--max-images"
        )


def _size(num_bytes: int) -> str:
    return f"{num_bytes / (1 << 30):.2f} GiB" if num_bytes >= 1 << 26 else f"{num_bytes >> 10} KiB"


def _candidate_order(count: int, seed: int | None) -> np.ndarray:
    if seed is None:
        return np.arange(count)
    return np.random.default_rng(seed).permutation(count)


def _load_one(
    source: Source, index: int, shape: tuple[int, int], channels: int, mode: FitMode
) -> tuple[np.ndarray | None, str]:
    """Decode and prepare one candidate; (None, reason) if it cannot be read."""
    image = None
    try:
        image = source.read(index)
        return prepare(image, shape, channels, mode), ""
    except Exception as err:  # any decoder failure means "skip this file", never fatal
        return None, f"{type(err).__name__}: {err}"
    finally:
        if isinstance(image, Image.Image):
            image.close()


def _build(source: Source, geometry: Geometry, opts: CreateOptions, tmp: Path) -> dict[str, Any]:
    """Write all levels, labels, preview and (last) the manifest into `tmp`."""
    channels = {"rgb": 3, "gray": 1}.get(opts.channels) or source.native_channels()
    order = _candidate_order(len(source.names), opts.seed)
    target = min(len(order), opts.max_images or len(order))
    if target == 0:
        raise _no_images(source, [])
    top_desc = geometry.resolutions[::-1]  # top level first
    files = {r: tmp / level_file_name(geometry.shape(r)) for r in top_desc}
    per_image = sum(channels * geometry.shape(r)[0] * geometry.shape(r)[1] for r in top_desc)
    _check_space(tmp.parent, target * (per_image + 8) + SLACK_BYTES, opts.out)
    top_shape = geometry.shape(geometry.resolution)
    chunk = max(1, min(1024, CHUNK_BYTES // (channels * top_shape[0] * top_shape[1])))
    used: list[int] = []
    skipped: list[dict[str, str]] = []
    considered = 0
    bar = tqdm(total=target, unit="img", desc="create", disable=None if opts.progress else True)
    writers: list[NpyWriter] = []
    try:
        for r in top_desc:
            writers.append(NpyWriter(files[r], target, (channels, *geometry.shape(r)), np.uint8))
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool, bar:
            while len(used) < target and considered < len(order):
                batch = order[considered : considered + min(chunk, target - len(used))]
                considered += len(batch)
                results = pool.map(
                    lambda i: _load_one(source, int(i), top_shape, channels, opts.mode), batch
                )
                good = []
                for index, (array, reason) in zip(batch, results, strict=True):
                    if array is None:
                        skipped.append({"file": source.names[index], "reason": reason})
                        bar.set_postfix(skipped=len(skipped))
                    else:
                        good.append(array)
                        used.append(int(index))
                if good:
                    _write_rows(writers, np.stack(good))
                    bar.update(len(good))
        if not used:
            raise _no_images(source, skipped)
        hashes = {r: writer.finish() for r, writer in zip(top_desc, writers, strict=True)}
    finally:
        for writer in writers:
            writer.abort()
    manifest = _manifest(
        source, geometry, opts, channels, tmp, files, hashes, used, skipped, considered
    )
    write_manifest(tmp, manifest)
    return manifest


def _write_rows(writers: Sequence[NpyWriter], block: np.ndarray) -> None:
    """Append a chunk [n, C, H, W] of top-level images and every level below it (writers are
    ordered top level first)."""
    for writer, level in zip(writers, pyramid(block, len(writers)), strict=True):
        writer.append(level)


def preview_rows(num_images: int) -> np.ndarray:
    """The images preview.png shows, in dataset order: `PREVIEW_IMAGES` drawn without replacement
    by `numpy.random.default_rng(PREVIEW_SEED)` (all of them if there are no more)."""
    count = min(num_images, PREVIEW_IMAGES)
    return np.sort(np.random.default_rng(PREVIEW_SEED).choice(num_images, count, replace=False))


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _no_images(source: Source, skipped: list[dict[str, str]]) -> UserError:
    where = source.describe().get("path", source.key)
    parts = [f"no usable images in {where}"]
    if skipped:
        first = skipped[0]
        parts.append(
            f"all {len(skipped)} image file(s) were unreadable "
            f"(e.g. {first['file']}: {first['reason']})"
        )
    else:
        parts.append("it holds no image files")
    if source.ignored:
        parts.append(
            f"{len(source.ignored)} non-image file(s) ignored (e.g. {source.ignored[0]!r})"
        )
    return UserError("; ".join(parts))


def _manifest(
    source: Source,
    geometry: Geometry,
    opts: CreateOptions,
    channels: int,
    tmp: Path,
    files: dict[int, Path],
    hashes: dict[int, str],
    used: list[int],
    skipped: list[dict[str, str]],
    considered: int,
) -> dict[str, Any]:
    """Labels, preview, checksums, and the manifest dict (written by the caller)."""
    labels = None
    if opts.labels:
        names = [source.class_of(i) for i in used]
        # Number classes over the whole source, so a subset keeps the same label numbers.
        classes = sorted({source.class_of(i) for i in range(len(source.names))})
        lookup = {name: k for k, name in enumerate(classes)}
        np.save(tmp / LABELS_NAME, np.array([lookup[n] for n in names], dtype=np.int64))
        _fsync_file(tmp / LABELS_NAME)
        labels = {"file": LABELS_NAME, "classes": classes, "sha256": sha256_file(tmp / LABELS_NAME)}
    small = [r for r in geometry.resolutions if r <= PREVIEW_MAX_SIDE] or geometry.resolutions[:1]
    from progan_dsl.images import image_grid, write_png  # torch, only when a dataset is made

    level = np.load(files[small[-1]], mmap_mode="r")
    write_png(tmp / PREVIEW_NAME, image_grid(np.asarray(level[preview_rows(len(level))])))
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tool": f"progan-dsl {progan_dsl.__version__}",
        "source": source.describe(),
        "options": opts.recorded(),
        "num_images": len(used),
        "channels": channels,
        "layout": LAYOUT,
        "base_shape": list(geometry.base_shape),
        "resolutions": geometry.resolutions,
        "downsampling": DOWNSAMPLE_RULE,
        "levels": [
            {
                "resolution": r,
                "shape": list(geometry.shape(r)),
                "file": files[r].name,
                "bytes": files[r].stat().st_size,
                "sha256": hashes[r],
                "sampled": sampled_sha256(files[r]).model_dump(),
            }
            for r in geometry.resolutions
        ],
        "labels": labels,
        "preview": PREVIEW_NAME,
        "counts": {
            "images": len(used),
            "candidates": len(source.names),
            "considered": considered,
            "skipped": len(skipped),
            "ignored_non_images": len(source.ignored),
        },
        "skipped": skipped,
        "ignored": source.ignored[:100],
    }
