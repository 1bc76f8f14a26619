"""What a run prints: lines on stdout (mirrored, timestamped, in the run's log.txt) and the
progress bar.

Owns the text of a run: the start lines, phase lines, tick lines, metrics lines, notes and the
summary, and the tqdm bar (on stderr when it is a terminal), which fits 80 columns, never passes
its total, and shows phase, alpha, img/s and an ETA weighted by each resolution's measured cost.
A tick whose throughput collapses against the best seen at its resolution says so (on a machine
busy with other work, fewer torch threads than cores is much faster). Rank 0 only; `quiet`
prints nothing but keeps log.txt.

A reader that goes away (`progan-train ... | head`, a closed pager or terminal) never stops a
run: a bar whose stream is closed is dropped, and once stdout is closed the lines go to log.txt
only (one note on stderr says so, if stderr is still there).
"""

from __future__ import annotations

import errno
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from progan_dsl.data.dataset import ImageDataset
from progan_dsl.train.monitor import Monitor
from progan_dsl.train.rundir import TEXT_LOG
from progan_dsl.train.schedule import Phase, Schedule
from progan_dsl.train.trainer import Trainer

COLLAPSE = 0.25  # a tick below this fraction of the best img/s at its resolution is a collapse


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def eta_seconds(schedule: Schedule, images_shown: int, monitor: Monitor) -> float | None:
    """Seconds left: each remaining phase's images at its resolution's measured img/s; a
    resolution not reached yet costs what the nearest measured one does, scaled by pixel count."""
    measured = {res: monitor.img_per_s(res) for res, n in monitor.images.items() if n > 0}
    if not measured:
        return None
    total = 0.0
    for phase in schedule.phases:
        left = phase.end - max(phase.start, images_shown)
        if left <= 0:
            continue
        res = phase.resolution
        if res in measured:
            rate = measured[res]
        else:
            near = min(measured, key=lambda r: abs(math.log2(r / res)))
            rate = measured[near] * (near / res) ** 2
        total += left / max(rate, 1e-9)
    return total


class Progress:
    """A tqdm bar over kimg (when enabled), 80 columns wide at most."""

    def __init__(self, total_images: int, start_images: int, *, enabled: bool | None) -> None:
        from tqdm import tqdm

        show = sys.stderr.isatty() if enabled is None else enabled
        self.total = total_images

        def bar(disable: bool) -> tqdm:
            return tqdm(
                total=total_images / 1000,
                initial=start_images / 1000,
                unit="kimg",
                disable=disable,
                ncols=80,
                leave=False,
                bar_format="{percentage:3.0f}%|{bar:12}| {n:.1f}/{total:.1f} kimg {postfix}",
            )

        try:
            self._bar = bar(not show)
        except OSError as err:  # its stream is closed already: no bar
            if not closed_stream(err):
                raise
            self._bar = bar(True)
        self._last = start_images

    @property
    def active(self) -> bool:
        return not self._bar.disable

    def update(self, images_shown: int, text: str) -> None:
        if not self.active:
            return
        shown = min(images_shown, self.total)  # never past the total (tqdm would warn and clamp)
        try:
            self._bar.update((shown - self._last) / 1000)
            self._bar.set_postfix_str(text, refresh=False)
        except OSError as err:
            if not closed_stream(err):
                raise
            self.drop()
        self._last = shown

    def write(self, line: str) -> None:
        """`line` on stdout above the bar (raises what the streams raise)."""
        self._bar.write(line, file=sys.stdout)

    def drop(self) -> None:
        """Stop drawing (its stream went away) without writing to it again."""
        self._bar.disable = True

    def close(self) -> None:
        try:
            self._bar.close()
        except OSError as err:
            if not closed_stream(err):
                raise
            self.drop()  # so that tqdm's own cleanup does not write again


def closed_stream(err: OSError) -> bool:
    """Whether a write failed because the reader went away (a closed pipe or pager)."""
    return isinstance(err, BrokenPipeError) or err.errno == errno.EPIPE


def silence_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so what is still buffered for a closed pipe (and
    Python's flush at exit) goes nowhere instead of raising again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class Console:
    """The lines and the bar of one run (rank 0 prints; the others stay silent)."""

    def __init__(
        self,
        run_path: Path,
        trainer: Trainer,
        schedule: Schedule,
        *,
        main: bool,
        progress: bool | None,
        quiet: bool = False,
    ) -> None:
        self.run_path, self.trainer, self.schedule = run_path, trainer, schedule
        self.main, self.quiet = main, quiet
        self.stdout_closed = False  # the reader of stdout went away: lines go to log.txt only
        self.log_path = run_path / TEXT_LOG
        self.best: dict[int, float] = {}
        self.start_images = trainer.images_shown  # where this invocation started
        self.run_seconds: float | None = None  # the run's training time at the last tick
        self.progress: Progress | None = None
        if main:
            self.progress = Progress(schedule.total, trainer.images_shown, enabled=progress)

    def say(self, line: str) -> None:
        """One line on stdout (above the bar) and, timestamped, in the run's log.txt."""
        if not self.main:
            return
        if not (self.quiet or self.stdout_closed):
            self._show(line)
        self._log(line)

    def _log(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write("".join(f"{stamp}  {part}\n" for part in line.splitlines()))

    def _show(self, line: str) -> None:
        """`line` on stdout; a closed stream (bar or stdout) is dropped, never the run."""
        if self.progress is not None and self.progress.active:
            try:
                self.progress.write(line)
                return
            except OSError as err:
                if not closed_stream(err):
                    raise
                self.progress.drop()  # stdout or the bar's stream: a plain print tells which
        try:
            print(line, flush=True)
        except OSError as err:
            if not closed_stream(err):
                raise
            self._stdout_went_away()

    def _stdout_went_away(self) -> None:
        self.stdout_closed = True
        silence_stdout()
        note = (
            "note: stdout was closed (its reader went away); training goes on, its lines go to "
            f"{self.log_path} only"
        )
        self._log(note)
        try:
            print(note, file=sys.stderr, flush=True)
        except OSError as err:
            if not closed_stream(err):
                raise

    def announce(self, *, continuing: bool, env: Any, data: Path, dataset: ImageDataset) -> None:
        """The lines a run starts with: where, what, on what (and how D's inputs are
        augmented)."""
        t, program = self.trainer, self.trainer.program
        spec, final = program.spec, program.final_stage
        how = f"resuming at {t.images_shown / 1000:g} kimg" if continuing else "new run"
        self.say(f"progan-train: {how} in {self.run_path}")
        self.say(
            f"  spec {spec.name} ({program.loaded.hash[:12]}), loss {spec.training.loss.kind}, "
            f"G {program.params('G', final):,} / D {program.params('D', final):,} "
            f"parameters at {final}"
        )
        precision = "bf16 autocast" if t.bf16 else "fp32"
        self.say(
            f"  device {env.device} x {env.world_size} process(es), {precision}, fast paths: "
            f"{t.fast.describe()}, {torch.get_num_threads()} thread(s), seed {t.seed}, data "
            f"{data} ({dataset.verified}), {self.schedule.total / 1000:g} kimg"
        )
        if spec.training.augment is not None:
            self.say(f"  augment {spec.training.augment.describe()}")

    def summary(
        self, seconds: float, img_per_s: dict[int, float], metrics: dict[str, float]
    ) -> None:
        """The lines a finished run ends with (the progress bar closed first)."""
        self.close()
        speeds = ", ".join(f"{r}x{r} {v:.1f}" for r, v in sorted(img_per_s.items()))
        self.say(f"{self.done_text(seconds)} (img/s: {speeds}); run folder {self.run_path}")
        if metrics:
            self.say("final metrics: " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        self.say(f"last grid: {self.run_path / 'grids' / 'latest.png'}")

    def done_text(self, seconds: float) -> str:
        """'done: ...': a run that started here counts one span; one that went on from a
        checkpoint says where the run stands and what this invocation did, each labelled."""
        now = self.trainer.images_shown
        if not self.start_images:
            return f"done: {now / 1000:g} kimg in {format_duration(seconds)}"
        run_time = (
            f" after {format_duration(self.run_seconds)} of training in all"
            if self.run_seconds is not None
            else ""
        )
        return (
            f"done: the run is at {now / 1000:g} kimg{run_time}; this invocation trained "
            f"{(now - self.start_images) / 1000:g} kimg (from {self.start_images / 1000:g} "
            f"kimg) in {format_duration(seconds)}"
        )

    def phase(self, p: Phase) -> None:
        self.say(
            f"phase {p.index}: {p.resolution}x{p.resolution} {p.stage.phase}, kimg "
            f"{p.start / 1000:g}-{p.end / 1000:g}, minibatch {p.minibatch}, lr {p.learning_rate:g}"
        )

    def progress_now(self, monitor: Monitor) -> None:
        t = self.trainer
        if self.progress is None or t.phase is None:
            return
        eta = eta_seconds(self.schedule, t.images_shown, monitor)
        res = t.phase.resolution
        text = (
            f"{res}x{res} {t.phase.stage.phase} a={t.alpha:.2f} {monitor.img_per_s(res):.0f} "
            f"img/s ETA {format_duration(eta) if eta is not None else '?'}"
        )
        self.progress.update(t.images_shown, text)

    def tick(self, record: dict[str, Any], means: dict[str, float]) -> None:
        """The line of a tick (its record from `Feedback.tick`), and a collapse note if due."""
        t = self.trainer
        res, ips = record["resolution"], record["img_per_s"]
        losses = "  ".join(f"{k} {v:+.4f}" for k, v in means.items())
        self.say(
            f"tick {record['tick']:<4} kimg {t.images_shown / 1000:9.3f}  {res}x{res} "
            f"{record['phase']:<6} alpha {record['alpha']:.3f}  {ips:8.1f} img/s  {losses}  "
            f"time {format_duration(record['elapsed_s'])}"
        )
        self.run_seconds = float(record["elapsed_s"])
        self._check_collapse(res, ips)

    def _check_collapse(self, res: int, ips: float) -> None:
        best = self.best.get(res, 0.0)
        if best and ips < COLLAPSE * best:
            self.say(
                f"note: throughput fell to {ips:.1f} img/s at {res}x{res} (best {best:.1f}); "
                f"if other work shares this machine, fewer threads help (--threads 1)"
            )
        self.best[res] = max(best, ips)

    def metrics(self, results: dict[str, float]) -> None:
        t = self.trainer
        assert t.phase is not None
        shown = "  ".join(f"{k} {v:.4g}" for k, v in results.items())
        self.say(
            f"metrics at {t.images_shown / 1000:g} kimg ({t.phase.resolution}x"
            f"{t.phase.resolution}): {shown}"
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None
