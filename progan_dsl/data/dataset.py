"""`ImageDataset`: a read-only view of a dataset directory made by `progan-dataset create`.

It checks the manifest and every level file's header on open (cheap; no hashing, see `verify`)
and hands out each level as a uint8 memmap with layout [N, C, H, W]. Torch-free on purpose, so
`progan-dataset info` stays light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from progan_dsl.data.manifest import read_manifest, verify_checksums
from progan_dsl.errors import UserError


class ImageDataset:
    """Levels of a created dataset, keyed by resolution (the longer image side)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.manifest: dict[str, Any] = read_manifest(self.path)
        self.num_images: int = int(self.manifest["num_images"])
        self.channels: int = int(self.manifest["channels"])
        self._levels: dict[int, np.ndarray] = {}
        self._shapes: dict[int, tuple[int, int]] = {}
        for level in self.manifest["levels"]:
            height, width = (int(v) for v in level["shape"])
            array = self._open_level(level["file"], (height, width))
            self._levels[max(height, width)] = array
            self._shapes[max(height, width)] = (height, width)
        self.resolutions: list[int] = sorted(self._levels)

    def _open_level(self, name: str, shape: tuple[int, int]) -> np.ndarray:
        file = self.path / name
        try:
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UserError(f"{file}: cannot open level file: {err}") from None
        expected = (self.num_images, self.channels, *shape)
        if array.dtype != np.uint8 or array.shape != expected:
            raise UserError(
                f"{file}: holds {array.dtype} {array.shape}, manifest says uint8 {expected}"
            )
        return array

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

    def labels(self) -> np.ndarray | None:
        """int64 [N] class indices if the dataset was created with --labels, else None."""
        entry = self.manifest.get("labels")
        if not entry:
            return None
        return np.load(self.path / entry["file"], allow_pickle=False)

    @property
    def class_names(self) -> list[str]:
        """Class name of each label index (empty without labels)."""
        entry = self.manifest.get("labels") or {}
        return list(entry.get("classes", []))

    def verify(self) -> list[str]:
        """Re-hash all files against the manifest; problems found (empty list = intact)."""
        return verify_checksums(self.path, self.manifest)

    def __repr__(self) -> str:
        return (
            f"ImageDataset({str(self.path)!r}, num_images={self.num_images}, "
            f"channels={self.channels}, resolutions={self.resolutions})"
        )
