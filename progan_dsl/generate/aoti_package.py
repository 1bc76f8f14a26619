"""Loading AOTInductor `.pt2` packages (`progan-export --aoti`) without surprises on disk.

Owns `load_aoti` and the checks that come before it. A package is a zip archive holding a
compiled shared library: loading it runs that code, as loading any shared library does, so a
package must come from a trusted source; nothing here can make a foreign one safe. What is
checked is what the archive would do to the file system while it is unpacked:

- every member name stays inside the unpacking folder: no absolute names, no `..` components,
  no symbolic links (zip `external_attr` mode bits), no more than `MAX_MEMBERS` members and no
  more than `MAX_UNPACKED_BYTES` unpacked; all of it before anything is unpacked or loaded;
- the metadata (`GeneratorMeta`) is read from the archive and checked before any code loads
  (`packaged_metadata`), where the package stores it as a JSON member;
- torch's loader unpacks into `$TMPDIR/aotinductor_XXXXXX` and leaves that folder behind when
  the load fails. `load_aoti` points TMPDIR at a private folder of its own for the load, removes
  it when the load fails, and otherwise when the loaded model is released (or at exit).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import weakref
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from progan_dsl.errors import UserError

# Bounds on an archive before it is unpacked. The paper's 1024x1024 G compiled for a CPU is one
# shared library, its weights (~92 MB fp32) and a few small files: 16 GiB is > 100x that.
MAX_MEMBERS = 10_000
MAX_UNPACKED_BYTES = 16 * 2**30
MAX_METADATA_BYTES = 16 * 2**20  # the metadata holds the spec's YAML: kilobytes
MODEL_FOLDER = "data/aotinductor/"  # where a package keeps its compiled models
METADATA_SUFFIX = "_metadata.json"
TEMP_PREFIX = "progan-aoti-"
TRUST_NOTE = (
    "a .pt2 package is compiled code that runs when it is loaded: use only packages from a "
    "trusted source, as you would a shared library"
)
_ENV_LOCK = threading.Lock()  # TMPDIR is process-wide: one load at a time changes it


def check_archive(path: Path) -> None:
    """Refuse a package whose members would land outside the unpacking folder (absolute names,
    `..`, symbolic links) or that unpacks to too much; raises a `UserError` naming the member."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise UserError(f"{path}: not an AOTInductor package (not a readable zip: {err})") from None
    if len(members) > MAX_MEMBERS:
        raise UserError(f"{path}: {len(members):,} archive members; at most {MAX_MEMBERS:,}")
    total = 0
    for info in members:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "\0" in name:
            raise UserError(f"{path}: archive member {name!r} has an absolute path; refused")
        if ".." in parts:
            raise UserError(
                f"{path}: archive member {name!r} climbs out of the unpacking folder; refused"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UserError(f"{path}: archive member {name!r} is a symbolic link; refused")
        total += info.file_size
    if total > MAX_UNPACKED_BYTES:
        raise UserError(
            f"{path}: unpacks to {total / 2**30:.1f} GiB; "
            f"at most {MAX_UNPACKED_BYTES / 2**30:g} GiB"
        )


def packaged_metadata(path: Path) -> dict[str, str] | None:
    """The metadata stored in a package's `*_metadata.json` (where this torch's AOTInductor
    writes `aot_inductor.metadata`), read from the archive without loading any code; None when
    the archive has no such file. Call `check_archive` first."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename
            if not (MODEL_FOLDER in name and name.endswith(METADATA_SUFFIX)):
                continue
            if info.file_size > MAX_METADATA_BYTES:
                raise UserError(f"{path}: {name} is {info.file_size:,} bytes; not metadata")
            try:
                data = json.loads(archive.read(info))
            except (ValueError, zipfile.BadZipFile, OSError) as err:
                raise UserError(f"{path}: {name} is not readable JSON ({err})") from None
            if isinstance(data, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in data.items()
            ):
                return data
            raise UserError(f"{path}: {name} is not a table of strings")
    return None


def load_aoti(path: str | Path) -> tuple[Any, dict[str, str]]:
    """An AOTInductor package loaded: its callable and its metadata (ours and the compiler's
    `AOTI_*` keys). It must have been built for this machine's device, and it runs code when
    loaded (`TRUST_NOTE`)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such AOTInductor package")
    check_archive(path)
    tempfile.gettempdir()  # fix Python's own temporary folder before TMPDIR changes below
    unpack = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    try:
        with _ENV_LOCK:
            before = os.environ.get("TMPDIR")
            os.environ["TMPDIR"] = str(unpack)  # torch unpacks into $TMPDIR/aotinductor_*
            chatter = logging.getLogger("torch._inductor.package.package")
            level = chatter.level
            chatter.setLevel(logging.ERROR)  # its "outdated pt2 file" guess before a retry
            try:
                loaded = torch._inductor.aoti_load_package(str(path))
            finally:
                chatter.setLevel(level)
                if before is None:
                    del os.environ["TMPDIR"]
                else:
                    os.environ["TMPDIR"] = before
        metadata = dict(loaded.get_metadata())
    except Exception as err:  # noqa: BLE001 - any failure to load is the file's or machine's
        shutil.rmtree(unpack, ignore_errors=True)
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise UserError(
            f"{path}: cannot load this AOTInductor package here ({type(err).__name__}: {first})"
        ) from None
    except BaseException:
        shutil.rmtree(unpack, ignore_errors=True)
        raise
    weakref.finalize(loaded, shutil.rmtree, str(unpack), True)
    return loaded, metadata


__all__ = [
    "MAX_MEMBERS",
    "MAX_UNPACKED_BYTES",
    "TRUST_NOTE",
    "check_archive",
    "load_aoti",
    "packaged_metadata",
]
