"""A run's life: start or resume, train to the end of the schedule, never lose the run.

Owns `train(options)`, which wires the owners together and runs the loop:
- `start` decides where the run starts (new, `--resume auto`, a checkpoint) and checks the data;
- `Trainer` holds the networks and does one iteration at a time;
- `Monitor` syncs loss statistics to the host and measures throughput;
- `RunRecorder` writes the run folder: log events, checkpoints, the rollback;
- `Feedback` draws ticks (grids, plots, TensorBoard), `Console` prints (lines, log.txt, the bar);
- `Evaluator` computes metrics.
Each keeps its own interval (a multiple of N images crossed), so a resumed run does everything at
the same points as an uninterrupted one. Ctrl-C or SIGTERM finishes the iteration, writes a
checkpoint and says how to resume; a non-finite loss rolls the run back to its newest checkpoint
and stops; a full disk stops with a message naming the file. Rank 0 alone writes; every rank runs
the same collectives in the same order.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from progan_dsl.compiler import compile_spec
from progan_dsl.data.loader import ImageDataset, ImageLoader
from progan_dsl.devices import process_threads
from progan_dsl.errors import UserError
from progan_dsl.fsutil import write_error_message
from progan_dsl.spec import LoadedSpec, load_spec
from progan_dsl.train import distributed as distr
from progan_dsl.train.console import Console
from progan_dsl.train.evaluator import Evaluator
from progan_dsl.train.fast import FastPaths
from progan_dsl.train.feedback import Feedback
from progan_dsl.train.monitor import Monitor, NonFinite
from progan_dsl.train.recorder import RunRecorder, run_info
from progan_dsl.train.schedule import Phase, Schedule, build_schedule
from progan_dsl.train.start import Start, check_batches, check_dataset, dataset_path, decide_start
from progan_dsl.train.trainer import Trainer

EXIT_DIVERGED = 3  # CLI exit status when a non-finite loss stopped the run
EXIT_SIGNAL_BASE = 128  # exit status after a signal: 128 + its number (130 Ctrl-C, 143 SIGTERM)


class TrainingDiverged(Exception):
    """A non-finite loss stopped the run; the trainer was rolled back to `checkpoint`."""

    def __init__(self, message: str, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


class TrainingInterrupted(Exception):
    """A signal stopped the run after a checkpoint was written."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = EXIT_SIGNAL_BASE + signum


@dataclass
class TrainOptions:
    """What `progan-train` was asked to do (CLI flags, or a library call)."""

    spec: str | Path | LoadedSpec
    data: str | Path | None = None  # dataset folder; default: the spec's training.dataset.path
    outdir: str | Path = "runs"
    kimg: float | None = None  # total length override
    resume: str | None = None  # None (new run), "auto", or a checkpoint file / run folder
    device: str | None = None  # "cpu", "cuda", "cuda:1" or None (CUDA when available)
    seed: int | None = None  # default 0 for a new run; a resumed run keeps its own
    workers: int = 1  # loader prefetch threads
    threads: int | None = None  # CPU compute threads; None: the cores the load leaves free
    progress: bool | None = None  # progress bar; None: when stderr is a terminal
    quiet: bool = False  # print nothing but errors (the run's log.txt still gets every line)
    gradfix: bool | None = None  # convs through gradfix; None: on CUDA only
    fast: FastPaths | None = None  # fast-path switches (None each: the device's default)
    command: list[str] = field(default_factory=list)  # for run.json


@dataclass
class TrainResult:
    """What a `train` call did (rank 0's view)."""

    run_dir: Path
    images_shown: int
    seconds: float  # wall time of this invocation
    img_per_s: dict[int, float]  # mean training throughput per resolution (this invocation)
    metrics: dict[str, float]  # the last evaluation
    checkpoint: Path | None  # the final checkpoint
    already_done: bool = False

    @classmethod
    def of(cls, run: _Run, wall_start: float, *, already_done: bool = False) -> TrainResult:
        return cls(
            run_dir=run.recorder.run.path,
            images_shown=run.trainer.images_shown,
            seconds=time.perf_counter() - wall_start,
            img_per_s=run.monitor.speeds(),
            metrics=run.metrics,
            checkpoint=run.recorder.last_checkpoint or run.recorder.run.latest_checkpoint(),
            already_done=already_done,
        )


IterationHook = Callable[[Trainer], None]


class StopSignals:
    """While active, SIGINT and SIGTERM ask the loop to stop after the current iteration (a
    second SIGINT stops at once). Only in the main thread; elsewhere signals keep their default."""

    HANDLED = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def agreed(self, env: distr.DistEnv, routine: bool) -> bool:
        """Whether to stop now: at once in one process; with several, when any rank got a
        signal, checked at routine syncs only (one small collective) so all stop together."""
        if not env.enabled:
            return self.received is not None
        if not routine:
            return False
        flag = torch.tensor([1.0 if self.received is not None else 0.0], device=env.device)
        return bool(distr.average_tensor(env, flag).item() > 0)

    def __enter__(self) -> StopSignals:
        try:
            self._previous = {s: signal.signal(s, self._handle) for s in self.HANDLED}
        except ValueError:  # not the main thread
            self._previous = {}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def train(options: TrainOptions, *, on_iteration: IterationHook | None = None) -> TrainResult:
    """Run (or continue) training as `options` say; see the module docstring."""
    env = distr.init_distributed(options.device)
    threads_before = torch.get_num_threads()
    # devices.py owns the thread policy; torchrun gives each rank its share itself
    threads = (
        options.threads
        if env.enabled
        else process_threads(options.threads, env.device, 1, launched=False)
    )
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(options, env, on_iteration)
    finally:
        torch.set_num_threads(threads_before)
        distr.shutdown(env)


def _train(
    options: TrainOptions, env: distr.DistEnv, on_iteration: IterationHook | None
) -> TrainResult:
    wall_start = time.perf_counter()
    loaded = options.spec if isinstance(options.spec, LoadedSpec) else load_spec(options.spec)
    start = decide_start(options.resume, options.outdir, loaded, env)
    state = start.checkpoint.run_state if start.checkpoint else None
    kimg = options.kimg if options.kimg is not None else (state.kimg if state else None)
    seed = (state.seed if state else 0) if start.checkpoint else (options.seed or 0)
    program = compile_spec(loaded)
    schedule = build_schedule(program.spec, kimg)
    check_batches(program, env.world_size)
    data = dataset_path(options.data, program, state.data if start.run and state else None)
    dataset = ImageDataset(data)
    check_dataset(dataset, program, schedule)
    loader = ImageLoader(
        dataset,
        seed=seed,
        mirror=program.spec.training.dataset.mirror,
        rank=env.rank,
        world_size=env.world_size,
        device=env.device,
        workers=options.workers,
    )
    trainer = Trainer(
        program,
        schedule,
        env,
        loader.next_reals,
        seed,
        gradfix=options.gradfix,
        fast=options.fast,
        label_counts=dataset.class_counts if program.num_classes else None,
    )
    _restore(trainer, loader, start, schedule)
    info = run_info(
        program,
        seed=seed,
        data=data,
        kimg=kimg,
        env=env,
        command=options.command,
        started_from=str(start.checkpoint.path) if start.checkpoint else None,
    )
    recorder = RunRecorder.open(
        outdir=options.outdir, env=env, program=program, start=start, info=info
    )
    continuing = start.run is not None
    run = _Run(
        options,
        env,
        trainer,
        schedule,
        loader,
        dataset,
        recorder,
        Monitor(
            trainer,
            state.tick_window if continuing and state else None,
            state.elapsed_s if continuing and state else 0.0,
        ),
        kimg=kimg,
        data=data,
        notes=(*start.notes, *recorder.notes),
    )
    try:
        with loader, StopSignals() as stop:
            return run.go(stop, on_iteration, wall_start)
    except (OSError, RuntimeError, MemoryError) as err:  # torch.save wraps OSError in RuntimeError
        where = f"a file of the run folder {run.recorder.run.path}"
        message = write_error_message(err, where, f"resume with: {run.resume_command()}")
        if message is not None:
            raise UserError(message) from None
        if is_out_of_memory(err):
            t = run.trainer
            raise OutOfMemory(
                err, t.phase, t.images_shown, t.device, run.recorder.run.path
            ) from err
        raise
    finally:
        run.close()


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, the CPU allocator's "can't allocate memory", a MemoryError."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


class OutOfMemory(Exception):
    """Training ran out of memory: the allocator's error and where the run was (the CLI says
    what would fit)."""

    def __init__(
        self,
        cause: BaseException,
        phase: Phase | None,
        images_shown: int,
        device: torch.device,
        run_path: Path,
    ) -> None:
        super().__init__(str(cause))
        self.cause, self.phase, self.images_shown = cause, phase, images_shown
        self.device, self.run_path = device, run_path


def diverged(bad: list[str], where: str, back: Path | None, images_shown: int) -> TrainingDiverged:
    """What a run that stopped on a non-finite loss says (rolled back to `back`, if any)."""
    if back is None:
        return TrainingDiverged(
            f"non-finite {', '.join(bad)} at {where}; there is no checkpoint to roll back to", None
        )
    return TrainingDiverged(
        f"non-finite {', '.join(bad)} at {where}: the phase is stopped and the run rolled back to "
        f"{back.name} ({images_shown / 1000:g} kimg); the run folder is intact. To go on, change "
        f"what diverged (e.g. a lower learning rate) and resume with --resume {back} and the "
        f"edited spec",
        back,
    )


def resume_command(spec: str, data: str | Path | None, run: Path) -> str:
    """The command that continues this run."""
    return f"progan-train {spec}{f' --data {data}' if data is not None else ''} --resume {run}"


def _restore(trainer: Trainer, loader: ImageLoader, start: Start, schedule: Schedule) -> None:
    ckpt = start.checkpoint
    if ckpt is None:
        trainer.enter_phase(schedule.phase_at(0))
        return
    trainer.restore(ckpt)
    if ckpt.training is not None:
        try:
            loader.load_state_dict(ckpt.training.loader)
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(
                f"{ckpt.path}: its data loader state does not fit dataset "
                f"{loader.dataset.path}: {err}"
            ) from None


class _Run:
    """One invocation of a run: the owners, and the loop that calls them."""

    def __init__(
        self,
        options: TrainOptions,
        env: distr.DistEnv,
        trainer: Trainer,
        schedule: Schedule,
        loader: ImageLoader,
        dataset: ImageDataset,
        recorder: RunRecorder,
        monitor: Monitor,
        *,
        kimg: float | None,
        data: Path,
        notes: tuple[str, ...],
    ) -> None:
        self.options, self.env, self.trainer, self.schedule = options, env, trainer, schedule
        self.loader, self.dataset, self.recorder, self.monitor = loader, dataset, recorder, monitor
        self.kimg, self.data = kimg, data
        history, main = recorder.records, env.is_main
        continuing = recorder.continuing
        self.feedback = Feedback(
            recorder.run, trainer, schedule, main=main, history=history, continuing=continuing
        )
        self.console = Console(
            recorder.run.path,
            trainer,
            schedule,
            main=main,
            progress=options.progress,
            quiet=options.quiet,
        )
        self.evaluator = Evaluator(trainer, dataset)
        self.metrics: dict[str, float] = {}
        for note in notes:
            self.console.say(f"note: {note}")

    def go(
        self, stop: StopSignals, on_iteration: IterationHook | None, wall_start: float
    ) -> TrainResult:
        t = self.trainer
        self._announce()
        if self.schedule.done(t.images_shown):
            self.console.say(
                f"run {self.recorder.run.name} is already complete at "
                f"{t.images_shown / 1000:g} kimg (pass a larger --kimg to train on)"
            )
            return TrainResult.of(self, wall_start, already_done=True)
        if self.recorder.continuing:
            self._event("resume", world_size=self.env.world_size, device=self.env.device.type)
        else:
            self._begin()
        while not self.schedule.done(t.images_shown):
            phase = self.schedule.phase_at(t.cursor.point)
            if phase != t.phase:
                t.enter_phase(phase)
                self._phase_event()
                self.monitor.start_segment()  # building modules is not training time
            before = t.images_shown
            t.iteration()
            self._after(before, stop)
            if on_iteration is not None:
                on_iteration(t)
        return self._finish(wall_start)

    def _after(self, before: int, stop: StopSignals) -> None:
        """The owners whose interval the iteration crossed, after one host sync."""
        t, after = self.trainer, self.trainer.images_shown
        done = self.schedule.done(after)
        tick = self.feedback.interval.due(before, after) or done
        snap = self.recorder.interval.due(before, after) or done
        evaluate = bool(self.evaluator.names) and (
            self.evaluator.interval.due(before, after) or done
        )
        phase_ends = self.schedule.phase_at(t.cursor.point) != t.phase
        routine = self.monitor.after_iteration()
        stopping = stop.agreed(self.env, routine)
        if not (tick or snap or evaluate or phase_ends or routine or stopping):
            return
        try:
            self.monitor.sync()
        except NonFinite as bad:
            self._diverged(bad.names)
        self.console.progress_now(self.monitor)
        if tick:
            self._tick()
        if evaluate:
            self._evaluate()
        if stopping:
            self._interrupted(stop.received or signal.SIGINT)
        if snap:
            self._checkpoint()
        self.monitor.start_segment()

    # -- pieces ----------------------------------------------------------------------------------

    def _event(self, name: str, **fields: Any) -> None:
        self.recorder.event(name, self.trainer.images_shown, **fields)

    def _announce(self) -> None:
        self.console.announce(
            continuing=self.recorder.continuing, env=self.env, data=self.data, dataset=self.dataset
        )

    def _begin(self) -> None:
        """A new run: its start record, the grid of reals, the first phase, tick and checkpoint."""
        self._event(
            "start",
            world_size=self.env.world_size,
            device=self.env.device.type,
            data_verified=self.dataset.verified,
        )
        self.feedback.reals(self.dataset)
        self._phase_event()
        self.feedback.tick({}, self.monitor)
        self._checkpoint()

    def _phase_event(self) -> None:
        assert self.trainer.phase is not None
        self.recorder.phase(self.trainer.phase, self.trainer.images_shown)
        self.console.phase(self.trainer.phase)

    def _tick(self) -> None:
        means = self.monitor.take_means()
        record = self.feedback.tick(means, self.monitor)
        if record is not None:
            self.console.tick(record, means)
            self._event("tick", **record)

    def _evaluate(self) -> None:
        if self.env.is_main:
            results, error = self.evaluator.run_safely()
            if error is not None:
                self._event("metrics_failed", error=error)
                self.console.say(
                    f"metrics failed at {self.trainer.images_shown / 1000:g} kimg: {error}"
                )
            else:
                self.metrics = results
                self._event("metrics", resolution=self.evaluator.resolution, **results)
                self.feedback.metrics(results)
                self.console.metrics(results)
        distr.barrier(self.env)

    def _checkpoint(self) -> None:
        self.recorder.checkpoint(
            self.trainer,
            self.loader.state_dict(),
            self.monitor,
            kimg=self.kimg,
            data=str(self.data),
        )

    def resume_command(self) -> str:
        return resume_command(
            self.trainer.program.loaded.path, self.options.data, self.recorder.run.path
        )

    def _interrupted(self, signum: int) -> None:
        """Log the signal, write a checkpoint (the resume point), stop."""
        name = signal.Signals(signum).name
        self._event("interrupted", signal=name)
        self._checkpoint()
        raise TrainingInterrupted(
            f"{name}: stopped at {self.trainer.images_shown / 1000:g} kimg after writing "
            f"{self.recorder.last_checkpoint}; resume with: {self.resume_command()}",
            signum,
        )

    def _diverged(self, bad: list[str]) -> None:
        """Roll back to the newest checkpoint, log it, and stop."""
        t = self.trainer
        at_kimg = t.images_shown / 1000
        where = f"{at_kimg:g} kimg in phase {t.phase.stage if t.phase else '?'}"
        back = self.recorder.rollback(t, self.loader.load_state_dict)
        if back is not None:
            self.monitor.clear()
            self._event("nonfinite", losses=bad, at_kimg=at_kimg, rolled_back_to=back.name)
        raise diverged(bad, where, back, t.images_shown)

    def _finish(self, wall_start: float) -> TrainResult:
        result = TrainResult.of(self, wall_start)
        self._event(
            "done",
            elapsed_s=self.monitor.elapsed,
            img_per_s={str(k): v for k, v in result.img_per_s.items()},
            **self.metrics,
        )
        self.console.summary(result.seconds, result.img_per_s, self.metrics)
        return result

    def close(self) -> None:
        self.console.close()
        self.feedback.close()
        self.recorder.close()


__all__ = [
    "EXIT_DIVERGED",
    "TrainOptions",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "train",
]
