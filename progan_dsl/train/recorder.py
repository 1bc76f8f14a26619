"""The run's record on disk: the run folder, its log, its checkpoints.

Owns opening the run folder (a new numbered one with the spec, resolved spec, graph dump and
run.json; or the continued one, cut back to the checkpoint it resumes from: later checkpoints and
log records move to `abandoned/`), the OS lock held on it while training, the JSONL events,
writing checkpoints on the snapshot interval (keeping the newest few), and the rollback to the
newest checkpoint when a loss stops being finite. Rank 0 alone writes; every rank learns the
folder and meets the others at the same barriers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from progan_dsl.checkpoint import Checkpoint, checkpoint_name, list_checkpoints
from progan_dsl.compiler import Program
from progan_dsl.ir.dump import dump
from progan_dsl.train import distributed as distr
from progan_dsl.train.monitor import Interval, Monitor
from progan_dsl.train.rundir import RunDir, RunLock, create_run
from progan_dsl.train.schedule import Phase
from progan_dsl.train.start import Start
from progan_dsl.train.trainer import Trainer


class RunRecorder:
    """The run folder of one invocation (rank 0 writes; the others only take part in barriers)."""

    def __init__(
        self,
        run: RunDir,
        env: distr.DistEnv,
        program: Program,
        *,
        continuing: bool,
        lock: RunLock | None,
    ) -> None:
        self.run, self.env, self.program = run, env, program
        self.continuing = continuing  # in an existing run folder, from its checkpoint
        self.main = env.is_main
        self._lock = lock
        snapshot = program.spec.training.snapshot
        self.interval = Interval(snapshot.every_kimg)
        self.keep = snapshot.keep
        self.records = run.log.records() if self.main else []
        self.last_checkpoint: Path | None = None
        self.notes: list[str] = []  # what opening the folder did that the user should hear

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        *,
        outdir: str | Path,
        env: distr.DistEnv,
        program: Program,
        start: Start,
        info: dict[str, Any],
    ) -> RunRecorder:
        """Continue `start.run` from its checkpoint, or create the next numbered run folder."""
        path: str | None = None
        lock: RunLock | None = None
        notes: list[str] = []
        if env.is_main:
            if start.run is not None:
                run = RunDir(start.run)
                lock = run.lock().acquire()
                notes = _cut_back(run, start)
            else:
                loaded = program.loaded
                files = {
                    "spec.yaml": loaded.standalone_text(),
                    "spec.resolved.yaml": loaded.resolved_yaml(),
                    "graph.txt": dump(program.graphs),
                }
                run = create_run(outdir, program.spec.name, files, info)
                lock = run.lock().acquire()
            path = str(run.path)
        path = distr.broadcast_object(env, path)
        assert path is not None
        recorder = cls(
            RunDir(Path(path)), env, program, continuing=start.run is not None, lock=lock
        )
        recorder.notes = notes
        return recorder

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- writing -------------------------------------------------------------------------------

    def event(self, name: str, images_shown: int, **fields: Any) -> None:
        if self.main:
            record = {
                "event": name,
                "images_shown": images_shown,
                "kimg": images_shown / 1000,
                **fields,
            }
            self.run.log.append(record)
            self.records.append(record)

    def phase(self, p: Phase, images_shown: int) -> None:
        """The record of a phase starting (what plots mark)."""
        self.event(
            "phase",
            images_shown,
            start_kimg=p.start / 1000,
            index=p.index,
            resolution=p.resolution,
            phase=p.stage.phase,
            minibatch=p.minibatch,
            learning_rate=p.learning_rate,
        )

    def checkpoint(
        self,
        trainer: Trainer,
        loader_state: dict[str, Any],
        monitor: Monitor,
        *,
        kimg: float | None,
        data: str,
    ) -> None:
        """Write the complete state (rank 0), keep the newest `keep`, log it; all ranks wait."""
        if self.main:
            ckpt = trainer.checkpoint(
                loader_state,
                kimg=kimg,
                data=data,
                run=self.run.name,
                elapsed_s=monitor.elapsed,
                tick_window=monitor.window(),  # stats of the unfinished tick: same log on resume
            ).save(self.run.checkpoints / checkpoint_name(trainer.images_shown))
            assert ckpt.path is not None
            for old in list_checkpoints(self.run.checkpoints)[: -self.keep]:
                old.unlink(missing_ok=True)
            self.last_checkpoint = ckpt.path
            self.event(
                "checkpoint", trainer.images_shown, path=str(ckpt.path.relative_to(self.run.path))
            )
        distr.barrier(self.env)

    def rollback(self, trainer: Trainer, restore_loader: Any) -> Path | None:
        """Put the trainer (and, through `restore_loader`, the data) back to the newest intact
        checkpoint; None when there is none. Every rank reads the same file."""
        name: str | None = None
        if self.main:
            found = list_checkpoints(self.run.checkpoints)
            name = found[-1].name if found else None
        name = distr.broadcast_object(self.env, name)
        if name is None:
            return None
        ckpt = Checkpoint.read(self.run.checkpoints / name)
        trainer.restore(ckpt)
        assert ckpt.training is not None
        restore_loader(ckpt.training.loader)
        return self.run.checkpoints / name


def _cut_back(run: RunDir, start: Start) -> list[str]:
    """Make a continued run folder read as if it had stopped at the resume point."""
    assert start.checkpoint is not None
    ckpt = start.checkpoint
    run.remove_stale_temporaries()
    _, dropped = run.log.truncate_at_checkpoint(ckpt.name, ckpt.images_shown)
    moved = run.abandon_after(ckpt.images_shown, dropped)
    if moved is None:
        return []
    return [
        f"resuming {ckpt.name}: its later checkpoints and log records moved to "
        f"{moved.relative_to(run.path)}/"
    ]


def run_info(
    program: Program,
    *,
    seed: int,
    data: Path,
    kimg: float | None,
    env: distr.DistEnv,
    command: list[str],
    started_from: str | None,
) -> dict[str, Any]:
    """What run.json says about a new run."""
    return {
        "spec": program.spec.name,
        "spec_hash": program.loaded.hash,
        "spec_path": str(program.loaded.path),
        "seed": seed,
        "data": str(data),
        "kimg": kimg,
        "world_size": env.world_size,
        "device": env.device.type,
        "torch": torch.__version__,
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "started_from": started_from,
    }


__all__ = ["RunRecorder", "run_info"]
