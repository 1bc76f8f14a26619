"""Image sources for `progan-dataset create`: a folder of images (any depth), a zip of images, a
uint8 `.npy` array, or a bundled dataset by name (`BUNDLED`: `mnist`, loaded by `mnist.py`).

A source lists its candidate images in a fixed order (sorted paths, or array order) and reads one
at a time; a candidate that cannot be read raises, and the caller skips it. Files whose extension
is not an image format Pillow can open are *ignored* (reported, not skipped); hidden files and
folders (leading ".") and `__MACOSX/` are not considered at all.

No image file larger than `MAX_FILE_BYTES` is read: a zip member's declared size and a file's
size are checked before its bytes are (a small zip can declare a member of many gigabytes), and
reads stop one byte past the bound; such a file is skipped and listed with its size.

Folders: only regular files are opened (`fsutil.open_regular`: a named pipe, socket or device
named like an image would block or never end; it is skipped and listed like any unreadable
file). Symlinks to regular files are followed wherever they point (a folder of links is a
common way to assemble a subset); symlinked folders are not descended into (no cycles) and are
listed as ignored, with a trailing "/".
"""

from __future__ import annotations

import io
import os
import threading
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
from PIL import Image

from progan_dsl.data import mnist
from progan_dsl.data.imageops import GRAY_MODES, SourceImage
from progan_dsl.errors import UserError
from progan_dsl.fsutil import file_kind, open_regular

# An image file larger than this is skipped unread. Far above any real training image (a
# 1024x1024 PNG is a few MB; an uncompressed 8-bit RGB 8192x8192 TIFF is 192 MiB), and it bounds
# what the decoding threads (`create`: at most 8) hold at once.
MAX_FILE_BYTES = 256 << 20


def _limit_text() -> str:
    mib = f" ({MAX_FILE_BYTES >> 20} MiB)" if MAX_FILE_BYTES >= 1 << 20 else ""
    return f"{MAX_FILE_BYTES:,} bytes{mib}"


def _check_size(num_bytes: int, what: str) -> None:
    """ValueError (the file is skipped) if an image file is larger than `MAX_FILE_BYTES`."""
    if num_bytes > MAX_FILE_BYTES:
        raise ValueError(
            f"{what} {num_bytes:,} bytes, more than the {_limit_text()} allowed for one image "
            "file; skipped unread"
        )


def _read_bounded(fh: IO[bytes], what: str) -> bytes:
    """All of `fh`, reading at most one byte past `MAX_FILE_BYTES` (ValueError if it is more)."""
    data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{what} more than the {_limit_text()} allowed for one image file")
    return data


def _image_extensions() -> frozenset[str]:
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


class Source(ABC):
    """Candidate images in a fixed order, read one at a time."""

    key: str  # identity recorded in the manifest options (for --skip-existing)
    names: list[str]  # one per candidate, in order
    ignored: list[str]  # entries that are not image files

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the source was, for the manifest."""

    @abstractmethod
    def read(self, index: int) -> SourceImage:
        """Candidate `index` as a PIL image or uint8 array; raises if unreadable."""

    @abstractmethod
    def class_of(self, index: int) -> str:
        """Class name of candidate `index` (for --labels)."""

    @abstractmethod
    def native_channels(self) -> int:
        """1 if the candidates are grayscale, else 3 (decides --channels auto)."""

    def close(self) -> None:  # noqa: B027 - optional hook; most sources hold no files
        """Release open files."""


class _FileSource(Source):
    """Shared logic of folders and zips: member names are POSIX paths relative to the root."""

    def __init__(self, root: Path, members: list[str], labels: bool) -> None:
        extensions = _image_extensions()
        self.root = root
        self.names = sorted(m for m in members if PurePosixPath(m).suffix.lower() in extensions)
        self.ignored = sorted(
            m for m in members if PurePosixPath(m).suffix.lower() not in extensions
        )
        if labels:
            loose = [name for name in self.names if "/" not in name]
            if loose:
                raise UserError(
                    f"--labels takes each image's folder as its class, but {len(loose)} image(s) "
                    f"in {root} are not in a class folder (e.g. {loose[0]!r})"
                )

    def class_of(self, index: int) -> str:
        return str(PurePosixPath(self.names[index]).parent)

    @abstractmethod
    def _open(self, index: int) -> Image.Image: ...

    @abstractmethod
    def _mode(self, index: int) -> str:
        """Candidate `index`'s PIL mode, from its header (nothing decoded)."""

    def read(self, index: int) -> SourceImage:
        return self._open(index)

    def native_channels(self) -> int:
        for index in range(len(self.names)):
            try:
                mode = self._mode(index)
            except Exception:
                continue  # unreadable: skipped later anyway
            if mode not in GRAY_MODES:
                return 3
        return 1


def _visible(parts: tuple[str, ...]) -> bool:
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts)


class FolderSource(_FileSource):
    def __init__(self, root: Path, labels: bool) -> None:
        members, linked_folders = [], []
        for dirpath, dirnames, filenames in os.walk(root):
            rel = Path(dirpath).relative_to(root)
            visible = sorted(d for d in dirnames if _visible((d,)))
            links = [d for d in visible if os.path.islink(os.path.join(dirpath, d))]
            linked_folders += [f"{(rel / d).as_posix()}/" for d in links]
            dirnames[:] = [d for d in visible if d not in links]
            members += [(rel / f).as_posix() for f in filenames if _visible((f,))]
        self.key = source_key(str(root))
        super().__init__(root, members, labels)
        self.ignored = sorted(self.ignored + linked_folders)

    def describe(self) -> dict[str, Any]:
        return {"kind": "folder", "path": str(self.root), "image_files": len(self.names)}

    def _open(self, index: int) -> Image.Image:
        with open_regular(self.root / self.names[index]) as fh:
            _check_size(os.fstat(fh.fileno()).st_size, "the file is")
            data = _read_bounded(fh, "the file grew to")
        return Image.open(io.BytesIO(data))

    def _mode(self, index: int) -> str:
        with open_regular(self.root / self.names[index]) as fh:
            _check_size(os.fstat(fh.fileno()).st_size, "the file is")
            with Image.open(fh) as image:
                return image.mode


class ZipSource(_FileSource):
    def __init__(self, path: Path, labels: bool) -> None:
        try:
            self._zip = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as err:
            raise UserError(f"{path}: not a readable zip file: {err}") from None
        self._lock = threading.Lock()
        self._infos = {
            info.filename: info
            for info in self._zip.infolist()
            if not info.is_dir() and _visible(PurePosixPath(info.filename).parts)
        }
        members = list(self._infos)
        self.key = source_key(str(path))
        super().__init__(path, members, labels)

    def describe(self) -> dict[str, Any]:
        return {"kind": "zip", "path": str(self.root), "image_files": len(self.names)}

    def _member(self, index: int) -> zipfile.ZipInfo:
        """Candidate `index`'s entry, its declared size checked before anything is read."""
        info = self._infos[self.names[index]]
        _check_size(info.file_size, "the zip declares it as")
        return info

    def _open(self, index: int) -> Image.Image:
        info = self._member(index)
        with self._lock, self._zip.open(info) as fh:  # one member at a time from the shared handle
            data = _read_bounded(fh, "it unpacks to")
        return Image.open(io.BytesIO(data))

    def _mode(self, index: int) -> str:
        info = self._member(index)
        with self._lock, self._zip.open(info) as fh, Image.open(fh) as image:  # the header only
            return image.mode

    def close(self) -> None:
        self._zip.close()


class ArraySource(Source):
    """Images held in a uint8 array [N, H, W] or [N, H, W, C] (C = 1, 3 or 4)."""

    def __init__(
        self,
        images: np.ndarray,
        key: str,
        description: dict[str, Any],
        classes: list[str] | None = None,
    ) -> None:
        where = description.get("path", key)
        if images.dtype != np.uint8:
            raise UserError(f"{where}: images must be uint8, got {images.dtype}")
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3, 4)):
            raise UserError(
                f"{where}: array shape {images.shape} is not (N, H, W) or (N, H, W, C) "
                "with C in 1, 3, 4"
            )
        self.images = images
        self.key = key
        self.names = [f"{where}[{i}]" for i in range(len(images))]
        self.ignored = []
        self._description = description
        self._classes = classes

    def describe(self) -> dict[str, Any]:
        return self._description

    def read(self, index: int) -> SourceImage:
        return np.asarray(self.images[index])

    def class_of(self, index: int) -> str:
        if self._classes is None:
            raise UserError(f"{self.key}: this source has no labels")
        return self._classes[index]

    def native_channels(self) -> int:
        return 1 if self.images.ndim == 3 or self.images.shape[3] == 1 else 3


def _npy_source(path: Path, labels: bool) -> ArraySource:
    if labels:
        raise UserError(f"{path}: --labels is not available for .npy sources")
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable .npy array: {err}") from None
    description = {"kind": "npy", "path": str(path), "shape": list(images.shape)}
    return ArraySource(images, source_key(str(path)), description)


def _mnist(labels: bool) -> ArraySource:
    images, digits = mnist.load_mnist()
    classes = [str(d) for d in digits] if labels else None
    return ArraySource(images, source_key("mnist"), mnist.description(), classes)


# Bundled datasets by --source name: each opens itself as a source (with or without labels).
BUNDLED: dict[str, Callable[[bool], ArraySource]] = {"mnist": _mnist}


def source_key(spec: str) -> str:
    """How a --source argument is recorded: "bundled:<name>" or the absolute path."""
    if spec in BUNDLED:
        return f"bundled:{spec}"
    return str(Path(spec).expanduser().resolve())


def open_source(spec: str, labels: bool = False) -> Source:
    """Resolve the --source argument; UserError if it is missing or of an unknown kind."""
    if spec in BUNDLED:
        return BUNDLED[spec](labels)
    path = Path(spec).expanduser().resolve()
    kinds = (
        "give a folder of images, a .zip of images, a uint8 .npy array, or a bundled dataset: "
        + ", ".join(BUNDLED)
    )
    if path.is_dir():
        return FolderSource(path, labels)
    if path.is_file() and path.suffix.lower() == ".zip":
        return ZipSource(path, labels)
    if path.is_file() and path.suffix.lower() == ".npy":
        return _npy_source(path, labels)
    if path.is_file():
        raise UserError(f"source {spec!r} is a file that is neither .zip nor .npy; {kinds}")
    if path.exists():
        raise UserError(f"source {spec!r} is a {file_kind(path.stat().st_mode)}; {kinds}")
    raise UserError(f"source {spec!r} not found; {kinds}")
