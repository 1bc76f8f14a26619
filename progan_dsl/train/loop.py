"""A run's life: start or resume, train to the end of the schedule, never lose the run.

Owns `train(options)`, which wires the owners together and runs the loop:
- `start` decides where the run starts (new, `--resume auto`, a checkpoint) and checks the data;
- `Trainer` holds the networks and does one iteration at a time;
- `Monitor` syncs loss statistics to the host and measures throughput;
- `RunRecorder` writes the run folder: log events, checkpoints, the rollback;
- `Feedback` shows ticks (lines, grids, plots, TensorBoard, progress);
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
from progan_dsl.devices import default_threads
from progan_dsl.errors import UserError
from progan_dsl.fsutil import write_error_message
from progan_dsl.spec import LoadedSpec, load_spec
from progan_dsl.train import distributed as distr
from progan_dsl.train.evaluator import Evaluator
from progan_dsl.train.fast import FastPaths
from progan_dsl.train.feedback import Feedback, format_duration
from progan_dsl.train.monitor import Monitor, NonFinite
from progan_dsl.train.recorder import RunRecorder, run_info
from progan_dsl.train.schedule import Schedule, build_schedule
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
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    elif env.device.type == "cpu" and not env.enabled:  # torchrun gives each rank its share
        torch.set_num_threads(default_threads())
    try:
        return _train(options, env, on_iteration)
    finally:
        torch.set_num_threads(threads_before)
        distr.shutdown(env)


def _train(options: TrainOptions, env: distr.DistEnv, on_iteration: IterationHook | None) -> TrainResult:
    wall_start = time.perf_counter()
    loaded = options.spec if isinstance(options.spec, LoadedSpec) else load_spec(options.spec)
    start = decide_start(options.resume, options.outdir, loaded, env)
    extra = dict(start.checkpoint.extra) if start.checkpoint else {}
    kimg = options.kimg if options.kimg is not None else extra.get("kimg")
    seed = int(extra.get("seed", 0)) if start.checkpoint else (options.seed or 0)
    program = compile_spec(loaded)
    schedule = build_schedule(program.spec, kimg)
    check_batches(program, env.world_size)
    data = dataset_path(options.data, program, extra.get("data") if start.run else None)
    dataset = ImageDataset(data)
    check_dataset(dataset, program, schedule)
    loader = ImageLoader(dataset, seed=seed, mirror=program.spec.training.dataset.mirror,
                         rank=env.rank, world_size=env.world_size, device=env.device,
                         workers=options.workers)
    trainer = Trainer(program, schedule, env, loader.next_batch, seed, gradfix=options.gradfix,
                      fast=options.fast)
    _restore(trainer, loader, start, schedule)
    info = run_info(program, seed=seed, data=data, kimg=kimg, env=env, command=options.command,
                    started_from=str(start.checkpoint.path) if start.checkpoint else None)
    recorder = RunRecorder.open(outdir=options.outdir, env=env, program=program, start=start,
                                info=info)
    continuing = start.run is not None
    run = _Run(options, env, trainer, schedule, loader, dataset, recorder,
               Monitor(trainer, extra.get("tick_window") if continuing else None,
                       float(extra.get("elapsed_s", 0.0)) if continuing else 0.0),
               seed=seed, kimg=kimg, data=data, start=start)
    try:
        with loader, StopSignals() as stop:
            return run.go(stop, on_iteration, wall_start)
    except (OSError, RuntimeError) as err:  # torch.save wraps the OSError in a RuntimeError
        message = write_error_message(err, "a run file", f"resume with: {run.resume_command()}")
        if message is None:
            raise
        raise UserError(message) from None
    finally:
        run.close()


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
            raise UserError(f"{ckpt.path}: its data loader state does not fit dataset "
                            f"{loader.dataset.path}: {err}") from None


class _Run:
    """One invocation of a run: the owners, and the loop that calls them."""

    def __init__(self, options: TrainOptions, env: distr.DistEnv, trainer: Trainer,
                 schedule: Schedule, loader: ImageLoader, dataset: ImageDataset,
                 recorder: RunRecorder, monitor: Monitor, *, seed: int, kimg: float | None,
                 data: Path, start: Start) -> None:
        self.options, self.env, self.trainer, self.schedule = options, env, trainer, schedule
        self.loader, self.dataset, self.recorder, self.monitor = loader, dataset, recorder, monitor
        self.seed, self.kimg, self.data = seed, kimg, data
        self.feedback = Feedback(recorder.run, trainer, schedule, main=env.is_main,
                                 progress=options.progress, continuing=recorder.continuing,
                                 history=recorder.records, quiet=options.quiet)
        self.evaluator = Evaluator(trainer, dataset)
        self.metrics: dict[str, float] = {}
        for note in (*start.notes, *recorder.notes):
            self.feedback.say(f"note: {note}")

    def go(self, stop: StopSignals, on_iteration: IterationHook | None, wall_start: float) -> TrainResult:
        t = self.trainer
        self._announce()
        if self.schedule.done(t.images_shown):
            self.feedback.say(f"run {self.recorder.run.name} is already complete at "
                              f"{t.images_shown / 1000:g} kimg (pass a larger --kimg to train on)")
            return self._result(wall_start, already_done=True)
        if self.recorder.continuing:
            self._event("resume", world_size=self.env.world_size, device=self.env.device.type)
        else:
            self._begin()
        while not self.schedule.done(t.images_shown):
            phase = self.schedule.phase_at(t.images_shown)
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
        evaluate = self.evaluator.interval.due(before, after) or done
        phase_ends = self.schedule.phase_at(after) != t.phase
        routine = self.monitor.after_iteration()
        stopping = self._stop_requested(stop, routine)
        if not (tick or snap or evaluate or phase_ends or routine or stopping):
            return
        try:
            self.monitor.sync()
        except NonFinite as bad:
            self._diverged(bad.names)
        self.feedback.update_progress(self.monitor)
        if tick:
            self._tick()
        if evaluate:
            self._evaluate()
        if stopping:
            self._interrupted(stop.received or signal.SIGINT)
        if snap:
            self._checkpoint()
        self.monitor.start_segment()

    def _stop_requested(self, stop: StopSignals, routine: bool) -> bool:
        if not self.env.enabled:
            return stop.received is not None
        if not routine:  # ranks agree at routine syncs only (one small collective)
            return False
        flag = torch.tensor([1.0 if stop.received is not None else 0.0], device=self.env.device)
        return bool(distr.average_tensor(self.env, flag).item() > 0)

    # -- pieces ----------------------------------------------------------------------------------

    def _event(self, name: str, **fields: Any) -> None:
        self.recorder.event(name, self.trainer.images_shown, **fields)

    def _announce(self) -> None:
        t, program = self.trainer, self.trainer.program
        spec, final = program.spec, program.final_stage
        how = f"resuming at {t.images_shown / 1000:g} kimg" if self.recorder.continuing else "new run"
        self.feedback.say(f"progan-train: {how} in {self.recorder.run.path}")
        self.feedback.say(f"  spec {spec.name} ({program.loaded.hash[:12]}), loss "
                          f"{spec.training.loss.kind}, G {program.params('G', final):,} / D "
                          f"{program.params('D', final):,} parameters at {final}")
        precision = "bf16 autocast" if t.bf16 else "fp32"
        self.feedback.say(f"  device {self.env.device} x {self.env.world_size} process(es), "
                          f"{precision}, fast paths: {t.fast.describe()}, "
                          f"{torch.get_num_threads()} thread(s), seed {self.seed}, "
                          f"data {self.data} ({self.dataset.verified}), "
                          f"{self.schedule.total / 1000:g} kimg")

    def _begin(self) -> None:
        """A new run: its start record, the grid of reals, the first phase, tick and checkpoint."""
        self._event("start", world_size=self.env.world_size, device=self.env.device.type,
                    data_verified=self.dataset.verified)
        self.feedback.reals(self.dataset)
        self._phase_event()
        self.feedback.tick({}, self.monitor)
        self._checkpoint()

    def _phase_event(self) -> None:
        p = self.trainer.phase
        assert p is not None
        self._event("phase", start_kimg=p.start / 1000, index=p.index, resolution=p.resolution,
                    phase=p.stage.phase, minibatch=p.minibatch, learning_rate=p.learning_rate)
        self.feedback.phase(p)

    def _tick(self) -> None:
        record = self.feedback.tick(self.monitor.take_means(), self.monitor)
        if record is not None:
            self._event("tick", **record)

    def _evaluate(self) -> None:
        if self.env.is_main:
            try:
                results = self.evaluator.run()
            except Exception as err:  # noqa: BLE001 - a failing metric must not lose the run
                self._event("metrics_failed", error=f"{type(err).__name__}: {err}")
                self.feedback.say(f"metrics failed at {self.trainer.images_shown / 1000:g} kimg: "
                                  f"{type(err).__name__}: {err}")
            else:
                self.metrics = results
                self._event("metrics", resolution=self.trainer.phase.resolution if self.trainer.phase else None, **results)
                self.feedback.metrics(results)
        distr.barrier(self.env)

    def _checkpoint(self) -> None:
        self.recorder.checkpoint(self.trainer, self.loader.state_dict(), self.monitor,
                                 {"kimg": self.kimg, "data": str(self.data)})

    def resume_command(self) -> str:
        return resume_command(self.trainer.program.loaded.path, self.options.data,
                              self.recorder.run.path)

    def _interrupted(self, signum: int) -> None:
        """Log the signal, write a checkpoint (the resume point), stop."""
        name = signal.Signals(signum).name
        self._event("interrupted", signal=name)
        self._checkpoint()
        raise TrainingInterrupted(
            f"{name}: stopped at {self.trainer.images_shown / 1000:g} kimg after writing "
            f"{self.recorder.last_checkpoint}; resume with: {self.resume_command()}", signum)

    def _diverged(self, bad: list[str]) -> None:
        """Roll back to the newest checkpoint, log it, and stop."""
        t = self.trainer
        at_kimg = t.images_shown / 1000
        where = f"{at_kimg:g} kimg in phase {t.phase.stage if t.phase else '?'}"
        back = self.recorder.rollback(t, self.loader.load_state_dict)
        if back is None:
            raise TrainingDiverged(f"non-finite {', '.join(bad)} at {where}; there is no "
                                   f"checkpoint to roll back to", None)
        self.monitor.clear()
        self._event("nonfinite", losses=bad, at_kimg=at_kimg, rolled_back_to=back.name)
        raise TrainingDiverged(
            f"non-finite {', '.join(bad)} at {where}: the phase is stopped and the run rolled "
            f"back to {back.name} ({t.images_shown / 1000:g} kimg); the run folder is intact. "
            f"To go on, change what diverged (e.g. a lower learning rate) and resume with "
            f"--resume {back} and the edited spec", back)

    def _finish(self, wall_start: float) -> TrainResult:
        result = self._result(wall_start)
        self._event("done", elapsed_s=self.monitor.elapsed,
                    img_per_s={str(k): v for k, v in result.img_per_s.items()}, **self.metrics)
        self.feedback.close()  # the bar goes before the summary
        speeds = ", ".join(f"{r}x{r} {v:.1f}" for r, v in sorted(result.img_per_s.items()))
        self.feedback.say(f"done: {self.trainer.images_shown / 1000:g} kimg in "
                          f"{format_duration(result.seconds)} (img/s: {speeds}); run folder "
                          f"{self.recorder.run.path}")
        if self.metrics:
            shown = "  ".join(f"{k} {v:.4g}" for k, v in self.metrics.items())
            self.feedback.say(f"final metrics: {shown}")
        self.feedback.say(f"last grid: {self.recorder.run.grids / 'latest.png'}")
        return result

    def _result(self, wall_start: float, *, already_done: bool = False) -> TrainResult:
        return TrainResult(
            run_dir=self.recorder.run.path,
            images_shown=self.trainer.images_shown,
            seconds=time.perf_counter() - wall_start,
            img_per_s=self.monitor.speeds(),
            metrics=self.metrics,
            checkpoint=self.recorder.last_checkpoint or self.recorder.run.latest_checkpoint(),
            already_done=already_done,
        )

    def close(self) -> None:
        self.feedback.close()
        self.recorder.close()


__all__ = ["EXIT_DIVERGED", "TrainOptions", "TrainResult", "Trainer", "TrainingDiverged",
           "TrainingInterrupted", "train"]
