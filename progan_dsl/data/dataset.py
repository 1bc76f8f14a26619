"""`ImageDataset`: a read-only view of a dataset directory made by `progan-dataset create`.

On open it validates the manifest (`manifest.read_manifest`), confines every file to the folder,
and checks each level file's size and npy header against the manifest and its contents by a
cheap digest: the full sha256 for levels up to `FULL_HASH_MAX_BYTES`, the sampled digest
(`manifest.sampled_sha256`) for larger ones, and the full sha256 of `labels.npy`. What was
checked is in `ImageDataset.verified` (training writes it to its log); `full_check=True`, or
`verify()`, re-hashes every byte. Levels are handed out as uint8 memmaps, layout [N, C, H, W];
labels (`labels`, `num_classes`, `class_counts`: the class-conditional contract) are read and
checked at open.
Torch-free on purpose, so `progan-dataset info` stays light.

A dataset folder that is missing because a `--force` replacement was killed half-way is
restored (or the replacement finished) first, by `fsutil.recover_interrupted`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from progan_dsl.data.manifest import (
    FULL_HASH_MAX_BYTES,
    LevelEntry,
    Manifest,
    confined_file,
    read_manifest,
    sampled_sha256,
    sha256_file,
    verify_checksums,
)
from progan_dsl.errors import UserError
from progan_dsl.fsutil import recover_interrupted


class ImageDataset:
    """Levels of a created dataset, keyed by resolution (the longer image side)."""

    def __init__(self, path: str | os.PathLike[str], *, full_check: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists() and not self.path.is_symlink():
            try:
                recover_interrupted(self.path)  # a killed `create --force` may have left it aside
            except UserError as err:
                raise UserError(f"{self.path}: no such dataset directory ({err})") from None
        self.format: Manifest = read_manifest(self.path)
        self.manifest: dict[str, Any] = self.format.raw  # the JSON, for display and comparison
        self.num_images: int = self.format.num_images
        self.channels: int = self.format.channels
        self._levels: dict[int, np.ndarray] = {}
        self._shapes: dict[int, tuple[int, int]] = {}
        hashed: list[int] = []
        sampled: list[int] = []
        sized: list[int] = []
        for i, level in enumerate(self.format.levels):
            file = confined_file(self.path, level.file, f"levels[{i}].file")
            self._levels[level.resolution] = self._open_level(file, level)
            self._shapes[level.resolution] = level.shape
            how = self._check_contents(file, level, full_check)
            {"sha256": hashed, "sampled": sampled, "size": sized}[how].append(level.resolution)
        self._labels: np.ndarray | None = None
        if self.format.labels:
            labels_file = confined_file(self.path, self.format.labels.file, "labels.file")
            if sha256_file(labels_file) != self.format.labels.sha256:
                raise self._corrupt(labels_file, "its sha256 differs from the manifest's")
            self._labels = self._read_labels(labels_file, len(self.format.labels.classes))
        self.resolutions: list[int] = sorted(self._levels)
        self.verified: str = self._describe_checks(hashed, sampled, sized, full_check)

    def _open_level(self, file: Path, level: LevelEntry) -> np.ndarray:
        size = file.stat().st_size
        if size != level.bytes:
            raise self._corrupt(file, f"it is {size} bytes, the manifest says {level.bytes}")
        try:
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UserError(f"{file}: cannot open level file: {err}") from None
        expected = (self.num_images, self.channels, *level.shape)
        if array.dtype != np.uint8 or array.shape != expected or not array.flags.c_contiguous:
            order = "" if array.flags.c_contiguous else " (Fortran order)"
            raise UserError(
                f"{file}: holds {array.dtype} {array.shape}{order}, manifest says uint8 {expected}"
            )
        if array.offset + array.nbytes != size:
            raise self._corrupt(
                file, f"{size - array.offset - array.nbytes} stray bytes at the end"
            )
        return array

    def _check_contents(self, file: Path, level: LevelEntry, full: bool) -> str:
        """Compare a level with the manifest as cheaply as allowed: 'sha256', 'sampled', 'size'."""
        if full or level.bytes <= FULL_HASH_MAX_BYTES:
            if sha256_file(file) != level.sha256:
                raise self._corrupt(file, "its sha256 differs from the manifest's")
            return "sha256"
        if level.sampled is None:
            return "size"
        actual = sampled_sha256(file, level.sampled.blocks, level.sampled.block_bytes)
        if actual.sha256 != level.sampled.sha256:
            raise self._corrupt(file, "its sampled digest differs from the manifest's")
        return "sampled"

    def _corrupt(self, file: Path, why: str) -> UserError:
        return UserError(
            f"{file}: does not match the dataset's manifest ({why}): the file was changed or "
            f"damaged after creation; 'progan-dataset verify {self.path}' checks every file, "
            "and re-creating the dataset repairs it"
        )

    @staticmethod
    def _describe_checks(
        hashed: list[int], sampled: list[int], sized: list[int], full: bool
    ) -> str:
        if full or not (sampled or sized):
            return (
                f"fully verified at open: the sha256 of all {len(hashed)} level files (and "
                "labels, if any) match the manifest"
            )
        parts = [f"sizes and headers of all {len(hashed) + len(sampled) + len(sized)} level files"]
        if hashed:
            parts.append(f"full sha256 of levels {', '.join(map(str, hashed))}")
        if sampled:
            parts.append(
                f"sampled sha256 of levels {', '.join(map(str, sampled))} "
                f"(evenly spaced blocks; most single-byte changes are not seen)"
            )
        if sized:
            parts.append(
                f"levels {', '.join(map(str, sized))} by size only (their manifest predates "
                "sampled digests)"
            )
        return (
            "partly verified at open: "
            + "; ".join(parts)
            + "; 'progan-dataset verify' re-hashes every byte"
        )

    def _check(self, resolution: int) -> None:
        if resolution not in self._levels:
            raise UserError(
                f"dataset {self.path} has no level at resolution {resolution}; "
                f"available: {', '.join(map(str, self.resolutions))}"
            )

    def shape(self, resolution: int) -> tuple[int, int]:
        """(H, W) of the images at `resolution`."""
        self._check(resolution)
        return self._shapes[resolution]

    def images(self, resolution: int) -> np.ndarray:
        """The level as a read-only uint8 memmap, layout [N, C, H, W]."""
        self._check(resolution)
        return self._levels[resolution]

    def _read_labels(self, file: Path, classes: int) -> np.ndarray:
        """`labels.npy`, checked: int64 [N] with values in 0..classes-1 (read-only)."""
        try:
            labels = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UserError(f"{file}: cannot read labels: {err}") from None
        if (
            labels.dtype != np.int64
            or labels.shape != (self.num_images,)
            or (labels.size and (labels.min() < 0 or labels.max() >= classes))
        ):
            raise UserError(
                f"{file}: holds {labels.dtype} {labels.shape}, manifest says int64 "
                f"({self.num_images},) with values in 0..{classes - 1}"
            )
        labels.flags.writeable = False
        return labels

    @property
    def labels(self) -> np.ndarray | None:
        """int64 [N] class index of each image, in image order (read-only), if the dataset was
        created with --labels; else None. Read and checked at open."""
        return self._labels

    @property
    def num_classes(self) -> int:
        """Number of classes (the length of a one-hot label); 0 without labels."""
        return len(self.format.labels.classes) if self.format.labels else 0

    @property
    def class_counts(self) -> np.ndarray:
        """int64 [num_classes]: images of each class (empty without labels). A class with no
        image (a subset of the source) counts 0."""
        if self._labels is None:
            return np.zeros(0, dtype=np.int64)
        return np.bincount(self._labels, minlength=self.num_classes).astype(np.int64)

    @property
    def class_names(self) -> list[str]:
        """Class name of each label index (empty without labels)."""
        return list(self.format.labels.classes) if self.format.labels else []

    def verify(self) -> list[str]:
        """Re-hash all files against the manifest; problems found (empty list = intact)."""
        return verify_checksums(self.path, self.format)

    def __repr__(self) -> str:
        return (
            f"ImageDataset({str(self.path)!r}, num_images={self.num_images}, "
            f"channels={self.channels}, resolutions={self.resolutions})"
        )
