"""`NpyWriter`: write a C-ordered `.npy` file block by block with plain file writes.

No memory map: on a full disk a memmap'd write only fails when the kernel writes the page back,
which kills the process with SIGBUS; a plain `write` raises `OSError(ENOSPC)` (with the file
name) that the caller can report. Rows are appended in order; the header is written first for
the rows the caller means to write and, if fewer arrive (skipped images), rewritten in place for
the rows actually written, padded to the same length so the data never moves. The sha256 of the
file is computed while writing.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt

from progan_dsl.data.manifest import sha256_file

_MAGIC_1_0 = b"\x93NUMPY\x01\x00"  # npy format version 1.0: 2-byte little-endian header length


def _header(shape: tuple[int, ...], dtype: np.dtype, length: int | None = None) -> bytes:
    """The npy 1.0 header for a C-ordered array; padded with spaces to `length` if given."""
    buffer = io.BytesIO()
    descr = np.lib.format.dtype_to_descr(dtype)
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    header = buffer.getvalue()
    if length is None or len(header) == length:
        return header
    if len(header) > length:
        raise ValueError(f"npy header for {shape} does not fit in {length} bytes")
    text = header[len(_MAGIC_1_0) + 2 : -1] + b" " * (length - len(header)) + b"\n"
    return _MAGIC_1_0 + struct.pack("<H", len(text)) + text


class NpyWriter:
    """Writes up to `capacity` rows of `row_shape` to `path` (see the module docstring)."""

    def __init__(
        self, path: Path, capacity: int, row_shape: tuple[int, ...], dtype: npt.DTypeLike
    ) -> None:
        self.path = path
        self.capacity = capacity
        self.row_shape = tuple(row_shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._header = _header((capacity, *self.row_shape), self.dtype)
        self._sha256 = hashlib.sha256()
        self._fh = open(path, "wb")  # noqa: SIM115 - closed by finish() or abort()
        self._write(self._header)

    def append(self, block: np.ndarray) -> None:
        """Write rows [n, *row_shape] after the ones already written."""
        if block.dtype != self.dtype or block.shape[1:] != self.row_shape:
            raise ValueError(f"block {block.dtype} {block.shape} does not fit {self.path.name}")
        if self.rows + len(block) > self.capacity:
            raise ValueError(f"{self.path.name}: more than {self.capacity} rows")
        self._write(np.ascontiguousarray(block).data.cast("B"))
        self.rows += len(block)

    def finish(self) -> str:
        """Fix the header for the rows written, flush and fsync, close; the file's sha256."""
        try:
            if self.rows != self.capacity:
                header = _header((self.rows, *self.row_shape), self.dtype, len(self._header))
                self._fh.seek(0)
                self._write(header)
                self._fh.seek(0, os.SEEK_END)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(self.path)) from err
        finally:
            self.abort()
        if self.rows != self.capacity:  # the hash covered the first header: hash again
            return sha256_file(self.path)
        return self._sha256.hexdigest()

    def abort(self) -> None:
        """Close without flushing what is buffered (after a failure: the file is thrown away)."""
        if not self._fh.closed:
            try:
                self._fh.close()
            except OSError:
                pass  # e.g. the buffered bytes do not fit either

    def _write(self, data: bytes | memoryview) -> None:
        try:
            write_all(self._fh, data)
        except OSError as err:  # name the file: write() errors carry no file name
            raise OSError(err.errno, err.strerror, str(self.path)) from err
        self._sha256.update(data)

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()


def write_all(fh: io.BufferedWriter, data: bytes | memoryview) -> None:
    """`fh.write(data)`; a module function so the fault tests can make it fail."""
    fh.write(data)
