"""Metric results of `progan-metrics` appended to a training run's log.

Owns finding the run folder a generator came from (a run folder, or a checkpoint inside one)
and appending one record to its `log.jsonl`, the log `progan-train` keeps (one JSON object per
line: start, phase, tick, checkpoint, metrics, ...; see `progan_dsl.train.rundir`). Metrics do
not import training, so the folder layout (`LOG_NAME`, `RUN_INFO`, `RUN_PATTERN`) is restated
here; it must agree with `progan_dsl.train.rundir`, which a test checks.

A record is appended the way the trainer appends its own: one `write` on an `O_APPEND`
descriptor, so it lands whole next to a trainer writing at the same time, and a kill leaves
the line whole or absent. A short write (a full disk) is cut back off and reported, so the log
never holds half a line that the next record would be glued to.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from progan_dsl.errors import UserError
from progan_dsl.fsutil import WRITE_ERRORS

LOG_NAME = "log.jsonl"
RUN_INFO = "run.json"
RUN_PATTERN = re.compile(r"^(\d{5})-(.+)$")
EVENT = "metrics"  # the event name of the trainer's own metric records
SOURCE = "progan-metrics"


def run_folder_of(path: str | Path) -> Path | None:
    """The run folder of a generator source: the folder itself, or the run holding a
    checkpoint (`RUN/checkpoints/x.pt`); None for anything else (.onnx, loose checkpoints)."""
    path = Path(path)
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / RUN_INFO).is_file() and RUN_PATTERN.match(candidate.name):
            return candidate
    return None


def metrics_record(
    results: dict[str, float], *, images_shown: int, **fields: Any
) -> dict[str, Any]:
    """A log record in the trainer's shape: event, images_shown, kimg, then `fields` and the
    results."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "event": EVENT,
        "source": SOURCE,
        "images_shown": images_shown,
        "kimg": images_shown / 1000,
        **fields,
        **results,
    }


def append_record(run: Path, record: dict[str, Any]) -> Path:
    """Append `record` as one line to `run/log.jsonl`; return the log's path."""
    path = run / LOG_NAME
    line = (json.dumps(record, allow_nan=True) + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as err:
        raise UserError(f"{path}: cannot append the results ({err.strerror})") from None
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, line)  # one system call: the line lands whole or not at all
        except OSError as err:
            reason = WRITE_ERRORS.get(err.errno or 0, err.strerror)
            raise UserError(f"{reason} while appending to {path}; the log is unchanged") from None
        if written != len(line):  # a short write: take the part back off
            os.ftruncate(fd, size)
            raise UserError(f"disk full while appending to {path}; the log is unchanged")
    finally:
        os.close(fd)
    return path


__all__ = ["LOG_NAME", "RUN_INFO", "append_record", "metrics_record", "run_folder_of"]
