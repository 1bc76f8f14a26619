"""Safe writes: a reader, a failure, a full disk or a kill never sees or leaves a partial result,
and nothing a command did not write is removed.

Files: `write_atomic_with` writes a temporary sibling (same folder, so the rename is atomic),
fsyncs it and renames it over the final name. `open_regular` opens only regular files (a named
pipe, socket or device would block or never end).

Output folders: `plan_output_dir` decides what may happen at a target folder (create it, fill an
empty one, or with `force` replace an earlier output of the same kind, recognised by the marker
file `MARKER_NAME` that lists every file written; anything else is refused), and `staged_dir`
builds the folder as a hidden sibling and publishes it in one step. `replace_dir` publishes a
folder built elsewhere in the same parent.

Kill safety of a folder publication (target `DIR` in `PARENT`, process id `P`):

1. `PARENT/.DIR.txn-P.json` (the journal: target, temp and aside names, whether `DIR` is replaced,
   which file marks the temp folder complete) is written, fsynced and held under an OS lock
   (`flock`) by the writing process until the end; nothing else happens before it is on disk.
2. The new folder is built in `PARENT/.DIR.tmp-P`; its completion file is written last.
3. Replacing: `DIR` -> `.DIR.old-P`, then `.DIR.tmp-P` -> `DIR`, then `.DIR.old-P` is deleted.
   New: `.DIR.tmp-P` -> `DIR` (onto a missing path or an empty folder).
4. The journal is removed.

At every instant either the old or the new complete folder is at `DIR`, or a journal whose lock
is free (its process died) says how to get there: `recover_interrupted(DIR)` (run before every
publication to `DIR`, and by readers that find `DIR` missing) rolls forward when the temp folder
is complete (it moves the new folder into place and deletes the old one) and back otherwise (it
deletes the incomplete temp folder and puts the old folder back if it was moved aside). A locked
journal belongs to a live process and is left alone. Nothing outside the journal's own names is
ever deleted, and a complete new folder that cannot be published is kept under a visible name.

Write errors the user can fix (disk full, quota, read-only mount, permissions) become a
`UserError` with `translate_write_errors` / `write_error_reason`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import stat
import sys
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from progan_dsl.errors import UserError

MARKER_NAME = ".progan-output.json"  # in every folder written through a plan with a kind
DERIVED_NAMES = ("__pycache__",)  # made by Python from our files: removable with them
JOURNAL_VERSION = 1

# Steps of a folder publication, in order; `fault_point` is called with each name.
FAULT_POINTS = ("journal", "complete", "moved-aside", "published", "removing-old")


def fault_point(name: str) -> None:
    """No-op hook called at each step in `FAULT_POINTS`; the fault tests replace it (in a child
    process) with one that SIGKILLs the process at a chosen step."""


# ---- files ------------------------------------------------------------------------------------


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Replace `path` by `data` (temporary file, fsync, rename)."""
    return write_atomic_with(path, lambda tmp: _write_synced(tmp, data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_atomic_with(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` on a temporary sibling that keeps the suffix (so writers that look at
    it, like Pillow's, pick the right format), then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        _name_the_file(err, path, tmp)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _name_the_file(err: BaseException, path: Path, tmp: Path) -> None:
    """A write error names the file it was meant for: not the temporary sibling, and not
    nothing (a write to an open file object names none)."""
    found = write_error_reason(err)
    if found is not None and found[1].filename in (None, "", str(tmp)):
        found[1].filename = str(path)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (so renames inside it survive a crash)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class NotRegularFileError(OSError):
    """A path that is a named pipe, socket, device or folder where a regular file is needed."""


def file_kind(mode: int) -> str:
    """'regular file', 'named pipe', 'socket', ... for an `st_mode`."""
    for test, name in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "named pipe"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISLNK, "symbolic link"),
    ):
        if test(mode):
            return name
    return "special file"


def open_regular(path: str | Path) -> BinaryIO:
    """Open a regular file for reading (symlinks followed); `NotRegularFileError` for anything
    else. Checked before opening (a named pipe would block `open`) and again on the open
    descriptor (opened non-blocking, so a pipe swapped in meanwhile cannot block either)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(
            errno.EINVAL, f"is a {file_kind(mode)}, not a regular file", str(path)
        )
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(
                errno.EINVAL, f"is a {file_kind(mode)}, not a regular file", str(path)
            )
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file `path`; OSError if it is not one or is over `limit` bytes."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise OSError(errno.EFBIG, f"is {size} bytes, more than the {limit} allowed", str(path))
        return fh.read(limit + 1)


# ---- write errors the user can fix ------------------------------------------------------------

WRITE_ERRORS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def write_error_reason(err: BaseException) -> tuple[str, OSError] | None:
    """('disk full', the OSError) if `err` or an exception it was raised from or during is an
    OSError in `WRITE_ERRORS` (torch.save to a file object raises the OSError with a RuntimeError
    as context); None otherwise."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in WRITE_ERRORS:
            return WRITE_ERRORS[current.errno], current
        current = current.__cause__ or current.__context__
    return None


def write_error_message(err: BaseException, what: str | Path, then: str = "") -> str | None:
    """ "disk full while writing X; nothing older was touched; THEN", or None if `err` is not a
    user-fixable write error (see `write_error_reason`). X is the OSError's file name, else
    `what`. Only claim "nothing older was touched" where the writer guarantees it (atomic
    writers: temporary files are removed before the error reaches the user)."""
    found = write_error_reason(err)
    if found is None:
        return None
    reason, os_err = found
    where = os_err.filename if os_err.filename else what
    return f"{reason} while writing {where}; nothing older was touched" + (
        f"; {then}" if then else ""
    )


@contextmanager
def translate_write_errors(what: str | Path, then: str = "") -> Iterator[None]:
    """Turn a user-fixable write error raised inside the block into a `UserError` worded by
    `write_error_message`; other exceptions pass through unchanged."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:
        message = write_error_message(err, what, then)
        if message is None:
            raise
        raise UserError(message) from err


# ---- output folders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputDir:
    """What a publication to `path` may do (made by `plan_output_dir`, or by a caller that has
    its own rules, like `progan-dataset create`)."""

    path: Path  # the target folder (a symlink at the target is followed)
    replace: bool  # an earlier output is there and is replaced when the new one is complete
    kind: str | None = None  # written into MARKER_NAME; None: the caller marks completion itself


def target_path(out: str | Path) -> Path:
    """Absolute target path; a symlink at the target is followed (the folder it points to is
    what gets written), a dangling one is an error."""
    path = Path(os.path.abspath(Path(out).expanduser()))
    if path.is_symlink():
        if not path.exists():
            raise UserError(
                f"{out} is a symbolic link to {os.readlink(path)}, which does not exist"
            )
        path = Path(os.path.realpath(path))
    return path


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of an earlier output in `folder` ({"kind", "files", ...}), or None."""
    try:
        data = json.loads(read_regular(folder / MARKER_NAME, 64 << 20))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        return None
    files = data.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return data


def foreign_entries(
    folder: Path, owned: Collection[str] | Callable[[str], bool], derived: Collection[str] = ()
) -> list[str]:
    """Relative paths (POSIX) under `folder` that are not `owned` (a set of relative file paths,
    or a predicate on them) and not inside a `derived` folder name; symlinks and special files
    count as foreign unless owned. Empty folders are ignored (removing them loses nothing)."""
    is_owned = owned if callable(owned) else set(owned).__contains__
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        rel = Path(dirpath).relative_to(folder)
        for name in sorted(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):  # walk does not descend into links
                found.append((rel / name).as_posix())
        dirnames[:] = sorted(d for d in dirnames if d not in derived)
        found += [
            (rel / f).as_posix() for f in sorted(filenames) if not is_owned((rel / f).as_posix())
        ]
    return sorted(found)


def plan_output_dir(out: str | Path, *, kind: str, force: bool, flag: str = "--force") -> OutputDir:
    """The rule every command that writes a folder follows: a missing or empty folder is
    written; a non-empty one only with `force`, and only if it holds an earlier output of the
    same `kind` (its marker) and nothing that output did not write (Python's `__pycache__`
    aside). A file at the target, or at a folder above it, is an error. UserErrors say which.
    Interrupted earlier publications to the target are recovered first."""
    path = target_path(out)
    _check_ancestors(path, out)
    recover_interrupted(path)  # first: a killed earlier run may have left the target aside
    if not path.exists():
        return OutputDir(path, replace=False, kind=kind)
    if not path.is_dir():
        raise UserError(f"{out} is a file, not a folder; give a folder path (nothing was written)")
    if not any(path.iterdir()):
        return OutputDir(path, replace=False, kind=kind)
    marker = read_marker(path)
    if marker is None or marker["kind"] != kind:
        found = "" if marker is None else f" (it holds {marker['kind']} output)"
        raise UserError(
            f"{out} is not empty and is not an earlier {kind} output{found}; refusing to touch "
            "it: choose a new or empty folder (nothing was written)"
        )
    if not force:
        raise UserError(f"{out} holds an earlier {kind} output; pass {flag} to replace it")
    foreign = foreign_entries(path, {*marker["files"], MARKER_NAME}, DERIVED_NAMES)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise UserError(
            f"{out} holds files that {kind} did not write ({shown}); move them out or choose "
            "another folder (nothing was written)"
        )
    return OutputDir(path, replace=True, kind=kind)


def _check_ancestors(path: Path, shown: str | Path) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{shown}: {parent} is a file, so no folder can be made under it")
            return


@contextmanager
def staged_dir(plan: OutputDir, *, complete_file: str | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside `plan.path`; when the block ends normally, write
    the marker (if `plan.kind`) and publish the folder at `plan.path` (module docstring). Without
    a kind, `complete_file` (written last by the block, e.g. a manifest) marks the folder
    complete. An exception removes the temporary folder; the target is untouched."""
    target = plan.path
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted(target)
    complete = MARKER_NAME if plan.kind else complete_file
    names = _names(target.name, str(os.getpid()))
    journal = _Journal.begin(
        target, new=names.new, old=names.old, replace=plan.replace, complete=complete
    )
    tmp, old = target.parent / names.new, target.parent / names.old
    try:
        tmp.mkdir()
    except BaseException as err:  # never delete a folder this run did not make
        journal.finish()
        if isinstance(err, FileExistsError):
            raise UserError(f"{tmp} exists, left by an earlier run; move it away") from None
        raise
    try:
        yield tmp
        if plan.kind:
            _write_marker(tmp, plan.kind)
        fault_point("complete")
        _publish(tmp, target, old, plan.replace)
    except BaseException:
        if old.exists():  # the old folder could not be put back: leave the journal for recovery
            journal.release()
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        journal.finish()
        raise
    journal.finish()


def replace_dir(tmp: Path, out: Path) -> None:
    """Publish the finished folder `tmp` (a sibling of `out`) at `out`, replacing an existing
    `out` only now; kill-safe through a journal like `staged_dir`."""
    out = target_path(out)
    recover_interrupted(out)
    replace = out.exists()
    old = f".{out.name}.old-{os.getpid()}"
    journal = _Journal.begin(out, new=tmp.name, old=old, replace=replace, complete=None)
    try:
        _publish(tmp, out, out.parent / old, replace)
    except BaseException:
        if (out.parent / old).exists():
            journal.release()
            raise
        journal.finish()
        raise
    journal.finish()


def recover_interrupted(out: str | Path) -> list[str]:
    """Finish or undo every publication to `out` whose process died (module docstring); return
    (and print to stderr) what was done. Journals held by live processes are left alone. A
    recovery that fails (read-only disk, permissions) keeps its journal and raises UserError:
    writers must not go on over a half-replaced target; readers may catch it."""
    target = Path(os.path.abspath(out))
    done: list[str] = []
    if not target.parent.is_dir():
        return done
    prefix = f".{target.name}.txn-"
    try:
        entries = sorted(os.listdir(target.parent))
    except OSError:
        return done
    failed = None
    for entry in entries:
        if entry.startswith(prefix) and entry.endswith(".json"):
            journal = _Journal.take_over(target.parent / entry)
            if journal is None:
                continue
            try:
                done += journal.recover(target)
            except OSError as err:
                journal.release()
                failed = f"cannot finish the interrupted publication {journal.path}: {err}"
    for line in done:
        print(line, file=sys.stderr)
    if failed:
        raise UserError(f"{failed}; fix that and run the command again")
    return done


@dataclass(frozen=True)
class _Names:
    new: str
    old: str


def _names(target: str, token: str) -> _Names:
    return _Names(new=f".{target}.tmp-{token}", old=f".{target}.old-{token}")


def _write_marker(folder: Path, kind: str) -> None:
    import progan_dsl

    files = sorted(
        (Path(dirpath).relative_to(folder) / f).as_posix()
        for dirpath, _, filenames in os.walk(folder)
        for f in filenames
    )
    marker = {
        "kind": kind,
        "tool": f"progan-dsl {progan_dsl.__version__}",
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
    _write_synced(folder / MARKER_NAME, (json.dumps(marker, indent=2) + "\n").encode())
    fsync_dir(folder)


def _publish(new: Path, out: Path, old: Path, replace: bool) -> None:
    """Steps 3 of the module docstring (the journal is on disk and locked)."""
    if replace:
        os.rename(out, old)
        fault_point("moved-aside")
        try:
            os.rename(new, out)
        except OSError:
            os.rename(old, out)  # put the previous folder back
            raise
    else:
        try:
            os.rename(new, out)  # onto a missing path or an empty folder
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise UserError(
                    f"{out} appeared while it was being written (another run?): "
                    f"{err.strerror}; nothing was replaced"
                ) from None
            raise
    fsync_dir(out.parent)
    fault_point("published")
    if replace:
        _remove_tree(old)


def _remove_tree(path: Path) -> None:
    """Delete the replaced folder, top-level entry by entry (a kill in between leaves a partly
    deleted folder, which recovery finishes). What cannot be deleted is reported, not raised:
    the new output is already in place."""
    try:
        for i, entry in enumerate(sorted(path.iterdir())):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            if i == 0:
                fault_point("removing-old")
        path.rmdir()
    except OSError as err:
        print(
            f"warning: could not delete {path} (the replaced version): {err}; delete it by hand",
            file=sys.stderr,
        )


class _Journal:
    """The locked record of one publication (step 1 of the module docstring)."""

    def __init__(self, path: Path, fd: int, data: dict[str, Any] | None) -> None:
        self.path, self.fd, self.data = path, fd, data

    @classmethod
    def begin(
        cls, target: Path, *, new: str, old: str, replace: bool, complete: str | None
    ) -> _Journal:
        path = target.parent / f".{target.name}.txn-{os.getpid()}.json"
        data = {
            "version": JOURNAL_VERSION,
            "target": target.name,
            "new": new,
            "old": old,
            "replace": replace,
            "complete_file": complete,
            "pid": os.getpid(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            raise UserError(
                f"{path} exists: another process with this id is writing "
                f"{target}; wait for it or remove the file"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, (json.dumps(data) + "\n").encode())
            os.fsync(fd)
            fsync_dir(target.parent)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        fault_point("journal")
        return cls(path, fd, data)

    @classmethod
    def take_over(cls, path: Path) -> _Journal | None:
        """The journal at `path` if its process is gone (its lock is free), else None."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != os.stat(path).st_ino:  # finished and replaced meanwhile
                raise BlockingIOError
        except OSError:
            os.close(fd)
            return None
        try:
            data = json.loads(os.read(fd, 1 << 16))
            if not isinstance(data, dict):
                raise ValueError
        except (ValueError, RecursionError):
            data = None
        return cls(path, fd, data)

    def recover(self, target: Path) -> list[str]:
        """Roll the dead publication forward or back; remove the journal."""
        where = target.parent
        data = self.data
        if data is None:  # killed while writing the journal: nothing else had happened yet
            self.finish()
            return [f"removed {self.path.name}, an unfinished journal of an interrupted run"]
        names = [data.get("new"), data.get("old")]
        prefix = f".{target.name}."
        if data.get("target") != target.name or not all(
            isinstance(n, str) and n.startswith(prefix) and "/" not in n for n in names
        ):
            self.release()
            return [f"warning: {self.path} does not describe {target}; left alone"]
        new, old = where / str(names[0]), where / str(names[1])
        complete_file = data.get("complete_file")
        complete = new.is_dir() and (complete_file is None or (new / complete_file).is_file())
        done = []
        if complete and data.get("replace") and target.exists() and old.exists():
            self.release()
            return [
                f"warning: {target}, {old.name} and {new.name} all exist; an interrupted "
                f"replacement ({self.path.name}) cannot tell which to keep: left alone"
            ]
        if complete:
            if data.get("replace") and target.exists():
                os.rename(target, old)
            try:
                os.rename(new, target)
                done.append(
                    f"finished an interrupted replacement of {target} (the new "
                    "version was complete)"
                )
            except OSError:  # something else is at the target now: keep ours, visibly
                kept = where / f"{target.name}.interrupted-{data.get('pid')}"
                os.rename(new, kept)
                done.append(
                    f"kept {kept}: complete output of an interrupted run that could not "
                    f"be moved to {target}, which exists; rename or delete it"
                )
            fsync_dir(where)
        elif new.exists():
            shutil.rmtree(new, ignore_errors=True)
            done.append(f"removed {new}, left incomplete by an interrupted run")
        if old.exists():
            if target.exists():
                shutil.rmtree(old, ignore_errors=True)
                done.append(f"removed {old}, the replaced version")
            else:
                os.rename(old, target)
                fsync_dir(where)
                done.append(f"restored {target} from {old.name} (an interrupted replacement)")
        self.finish()
        return done

    def finish(self) -> None:
        """Remove the journal (the publication is complete or fully undone)."""
        self.path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        """Drop the lock, keeping the journal for a later recovery."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
