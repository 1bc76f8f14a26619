"""Shrinking a `.npy` file along axis 0 in place.

`create` allocates each level for every image it means to use before it knows how many will
decode; when some are skipped the files are cut to the rows actually written. NumPy pads `.npy`
headers so axis 0 can grow without moving the data, so this is normally a header rewrite plus a
truncate; if the new header would not fit, the file is rewritten.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np


def shrink_rows(path: Path, rows: int) -> None:
    """Keep only the first `rows` entries along axis 0 of the C-ordered `.npy` at `path`."""
    array = np.load(path, mmap_mode="r")
    if array.shape[0] == rows:
        return
    if array.shape[0] < rows or not array.flags.c_contiguous:
        raise ValueError(f"cannot shrink {path} {array.shape} to {rows} rows")
    offset, shape, dtype = array.offset, (rows, *array.shape[1:]), array.dtype
    del array
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header,
        {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape},
    )
    data_bytes = int(np.prod(shape)) * dtype.itemsize
    if header.tell() == offset:
        with open(path, "r+b") as fh:
            fh.write(header.getvalue())
            fh.truncate(offset + data_bytes)
        return
    tmp = path.with_name(path.name + ".shrink")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        dst.write(header.getvalue())
        src.seek(offset)
        remaining = data_bytes
        while remaining:
            chunk = src.read(min(remaining, 1 << 24))
            dst.write(chunk)
            remaining -= len(chunk)
    os.replace(tmp, path)
