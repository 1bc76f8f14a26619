"""Run folders: numbering, what a run folder holds, finding a run to resume, crash-safe files.

A run folder `OUTDIR/NNNNN-<spec name>/` holds
    run.json             run id, spec hash, seed, data, command line (written once)
    spec.yaml            the spec text as given
    spec.resolved.yaml   the validated spec with every default filled in
    graph.txt            the IR dump of every stage (G and D)
    log.jsonl            one JSON record per line: start, phase, tick, checkpoint, metrics, ...
    checkpoints/         checkpoint-<images shown>.pt (see `progan_dsl.checkpoint`), newest few kept
    abandoned/           checkpoints and log records past an older checkpoint a run was resumed
                         from (moved, never deleted: the run's future is the resumed one)
    log.txt              the lines the run printed, with timestamps
    grids/               reals.png, fakes<images shown>.png per tick, latest.png
    plots/losses.png     loss and score curves, redrawn every tick
    tensorboard/         TensorBoard scalars and image grids

Every file is written so that a kill at any instant leaves it whole: whole files go through a
temporary file, fsync and rename; the log is appended one line per `write` system call on an
O_APPEND descriptor, so a line is either all there or not there. A training process holds an OS
lock on `RUN/.lock` (flock, on the real folder: links to it share the lock) while it runs, so a
second trainer on the same folder stops with a clear message instead of doubling the log.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from progan_dsl.checkpoint import PATTERN as CHECKPOINT_PATTERN
from progan_dsl.checkpoint import list_checkpoints
from progan_dsl.errors import UserError
from progan_dsl.fsutil import write_text_atomic

RUN_PATTERN = re.compile(r"^(\d{5})-(.+)$")
RUN_INFO = "run.json"
LOG_NAME = "log.jsonl"
TEXT_LOG = "log.txt"
LOCK_NAME = ".lock"
TEMP_PATTERN = re.compile(r"^\..+\.tmp-\d+(\.[A-Za-z0-9]+)?$")  # fsutil and checkpoint temporaries


@dataclass(frozen=True)
class RunDir:
    """One numbered run folder and the paths inside it."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def number(self) -> int:
        match = RUN_PATTERN.match(self.path.name)
        return int(match.group(1)) if match else -1

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def grids(self) -> Path:
        return self.path / "grids"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def log(self) -> RunLog:
        return RunLog(self.path / LOG_NAME)

    def info(self) -> dict[str, Any]:
        """run.json, or {} if it is missing or unreadable."""
        try:
            data = json.loads((self.path / RUN_INFO).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def latest_checkpoint(self) -> Path | None:
        found = list_checkpoints(self.checkpoints)
        return found[-1] if found else None

    @property
    def abandoned(self) -> Path:
        return self.path / "abandoned"

    def lock(self) -> RunLock:
        """Hold the run folder for this process (raises `UserError` if another one holds it).
        The lock is the real folder's, however the folder was named (a symlink, `..`)."""
        return RunLock(self.path.resolve() / LOCK_NAME)

    def abandon_after(self, images_shown: int, dropped_log: list[dict[str, Any]]) -> Path | None:
        """Move checkpoints newer than `images_shown` (and the log records past it) into
        `abandoned/<time>/`: resuming an older checkpoint makes them another future. Without
        later checkpoints nothing moves (records past the last checkpoint of a killed run are
        recomputed identically by the resumed run)."""
        later = [p for p in list_checkpoints(self.checkpoints) if _shown(p) > images_shown]
        if not later:  # only the torn tail of a killed run: it is recomputed identically
            return None
        target = self.abandoned / time.strftime("%Y%m%d-%H%M%S")
        while target.exists():
            target = target.with_name(target.name + "x")
        target.mkdir(parents=True)
        if dropped_log:
            text = "".join(json.dumps(r) + "\n" for r in dropped_log)
            write_text_atomic(target / LOG_NAME, text)
        for path in later:
            shutil.move(str(path), str(target / path.name))
        return target

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary files a killed process left behind (never a finished file)."""
        removed = []
        for folder in (self.path, self.checkpoints, self.grids, self.plots):
            if not folder.is_dir():
                continue
            for item in folder.iterdir():
                if item.is_file() and TEMP_PATTERN.match(item.name):
                    item.unlink(missing_ok=True)
                    removed.append(item)
        return removed


def _shown(checkpoint: Path) -> int:
    """The images shown that a listed checkpoint's name says."""
    match = CHECKPOINT_PATTERN.match(checkpoint.name)
    return int(match.group(1)) if match else -1


def list_runs(outdir: str | Path) -> list[RunDir]:
    """Numbered run folders in `outdir`, oldest (lowest number) first."""
    outdir = Path(outdir)
    if not outdir.is_dir():
        return []
    runs = [RunDir(p) for p in outdir.iterdir() if p.is_dir() and RUN_PATTERN.match(p.name)]
    return sorted(runs, key=lambda r: r.number)


def newest_run_of_spec(outdir: str | Path, spec_hash: str) -> RunDir | None:
    """The highest-numbered run of the spec with this hash that has a checkpoint."""
    for run in reversed(list_runs(outdir)):
        if run.info().get("spec_hash") == spec_hash and run.latest_checkpoint() is not None:
            return run
    return None


def run_of_checkpoint(path: Path) -> RunDir | None:
    """The run folder a checkpoint file (or a run folder itself) belongs to, if any."""
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / RUN_INFO).is_file() and RUN_PATTERN.match(candidate.name):
            return RunDir(candidate)
    return None


def create_run(
    outdir: str | Path, spec_name: str, files: dict[str, str], info: dict[str, Any]
) -> RunDir:
    """Make the next numbered folder `NNNNN-<spec_name>` and write `files` and run.json into it."""
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--outdir {outdir}: cannot create it ({err.strerror})") from None
    number = max((r.number for r in list_runs(outdir)), default=-1) + 1
    while True:  # another process may take a number at the same moment: take the next one
        path = outdir / f"{number:05d}-{spec_name}"
        try:
            path.mkdir()
            break
        except FileExistsError:
            number += 1
    run = RunDir(path)
    for name, text in files.items():
        write_text_atomic(path / name, text)
    write_text_atomic(path / RUN_INFO, json.dumps({"run": run.name, **info}, indent=2) + "\n")
    return run


class RunLock:
    """An exclusive flock on a run folder's lock file, held while a trainer works in it; the OS
    drops it when the process ends, however it ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"{self.path.parent}: the run folder is in use by another "
                f"progan-train ({holder}); wait for it to finish or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class RunLog:
    """The run's JSONL log: append-only records, readable after any kill."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        """Append one record, stamped with the local time (ISO 8601, seconds)."""
        stamped = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}
        line = (json.dumps(stamped, sort_keys=False, allow_nan=True) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one system call: the line lands whole or not at all
        finally:
            os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        """All complete records (a torn or unreadable line is skipped)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def truncate_at_checkpoint(
        self, checkpoint_name: str, images_shown: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Cut the log back to a resume point: everything up to the record of writing the
        checkpoint (or, without one, the records up to `images_shown`); return (kept, dropped)."""
        records = self.records()
        cut = None
        for i, record in enumerate(records):
            if (
                record.get("event") == "checkpoint"
                and Path(str(record.get("path"))).name == checkpoint_name
            ):
                cut = i + 1
        if cut is None:
            cut = next(
                (i for i, r in enumerate(records) if _images(r) > images_shown), len(records)
            )
        kept, dropped = records[:cut], records[cut:]
        if dropped:
            write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        return kept, dropped


def _images(record: dict[str, Any]) -> int:
    value = record.get("images_shown", 0)
    return value if isinstance(value, int) else 0


def tick_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("event") == "tick"]
