"""How a run looks while it trains: printed lines, progress bar, image grids, plots, TensorBoard.

Owns the tick interval and what a tick shows: one plain line (also appended, timestamped, to
the run's log.txt, so logs of non-interactive runs read the same), a grid of G EMA samples from
fixed latents, the loss plot (redrawn from the run log's tick records) and TensorBoard scalars.
The progress bar (tqdm, on stderr when it is a terminal) fits 80 columns and shows phase, alpha,
img/s and an ETA weighted by each resolution's measured cost. A tick whose throughput collapses
against the best seen at that resolution says so (on a machine busy with other work, fewer torch
threads than cores is much faster). Nothing here touches a random number generator, so feedback
never changes what a run computes. Rank 0 only.
"""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from progan_dsl.data.dataset import ImageDataset
from progan_dsl.fsutil import write_bytes_atomic
from progan_dsl.images import image_grid, write_png
from progan_dsl.train.monitor import Interval, Monitor
from progan_dsl.train.rundir import TEXT_LOG, RunDir
from progan_dsl.train.schedule import Phase, Schedule
from progan_dsl.train.trainer import Trainer, derive_seed

GRID_MIN_CELL = 64  # grid cells are at least this many pixels (small stages are upscaled)
GRID_MAX_WIDTH = 2048  # and the grid at most this wide (large stages are downscaled)
COLLAPSE = 0.25  # a tick below this fraction of the best img/s at its resolution is a collapse


def grid_cell(height: int, cols: int) -> int:
    """Pixel height of one grid cell: upscaled to GRID_MIN_CELL, capped by GRID_MAX_WIDTH."""
    cell = height
    while cell < GRID_MIN_CELL:
        cell *= 2
    while cell * cols > GRID_MAX_WIDTH and cell > 1:
        cell //= 2
    return cell


def training_grid(images: torch.Tensor, rows: int, cols: int) -> np.ndarray:
    """uint8 [N, C, H, W] -> the [H', W', C] grid a run shows (cells resampled per `grid_cell`)."""
    return image_grid(images, cols, rows, cell=grid_cell(images.shape[2], cols))


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


def plot_losses(path: Path, ticks: Sequence[dict[str, Any]], phases: Sequence[dict[str, Any]]) -> None:
    """Loss and D-score curves against kimg, phase starts marked; written atomically as PNG."""
    if not ticks:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kimg = [r["kimg"] for r in ticks]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for key, label in (("loss_D", "D loss"), ("loss_G", "G loss")):
        top.plot(kimg, [r.get(key, math.nan) for r in ticks], label=label)
    for key, label in (("real_score", "D(real)"), ("fake_score", "D(fake)")):
        bottom.plot(kimg, [r.get(key, math.nan) for r in ticks], label=label)
    for record in phases:
        for ax in (top, bottom):
            ax.axvline(record["kimg"], color="0.8", linewidth=0.8, zorder=0)
        top.annotate(f"{record['resolution']} {record['phase']}", (record["kimg"], 1.0),
                     xycoords=("data", "axes fraction"), fontsize=7, rotation=90,
                     va="top", ha="right", color="0.5")
    top.set_ylabel("loss")
    bottom.set_ylabel("mean score")
    bottom.set_xlabel("kimg")
    top.legend(loc="upper right", fontsize=8)
    bottom.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


class Board:
    """TensorBoard scalars and images under the run's tensorboard/ folder.

    `purge_step` drops events a killed run wrote after the checkpoint it resumes from."""

    def __init__(self, folder: Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, step)

    def image(self, tag: str, grid: np.ndarray, step: int) -> None:
        self._writer.add_image(tag, grid, step, dataformats="HWC")

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class Progress:
    """A tqdm bar over kimg (when enabled), 80 columns wide at most."""

    def __init__(self, total_images: int, start_images: int, *, enabled: bool | None) -> None:
        from tqdm import tqdm

        show = sys.stderr.isatty() if enabled is None else enabled
        self.total = total_images
        self._bar = tqdm(total=total_images / 1000, initial=start_images / 1000, unit="kimg",
                         disable=not show, ncols=80, leave=False,
                         bar_format="{percentage:3.0f}%|{bar:12}| {n:.1f}/{total:.1f} kimg {postfix}")
        self._last = start_images

    @property
    def active(self) -> bool:
        return not self._bar.disable

    def update(self, images_shown: int, text: str) -> None:
        shown = min(images_shown, self.total)  # never past the total (tqdm would warn and clamp)
        self._bar.update((shown - self._last) / 1000)
        self._last = shown
        self._bar.set_postfix_str(text, refresh=False)

    def write(self, line: str) -> None:
        self._bar.write(line, file=sys.stdout)

    def close(self) -> None:
        self._bar.close()


class Feedback:
    """Ticks, grids, plots, TensorBoard, progress and printed lines of one run (rank 0)."""

    def __init__(self, run: RunDir, trainer: Trainer, schedule: Schedule, *, main: bool,
                 progress: bool | None, continuing: bool, history: list[dict[str, Any]],
                 quiet: bool = False) -> None:
        training = trainer.program.spec.training
        self.run, self.trainer, self.schedule, self.main = run, trainer, schedule, main
        self.quiet = quiet
        self.interval = Interval(training.tick_kimg)
        self.rows, self.cols = training.grid.rows, training.grid.cols
        latent = trainer.program.spec.architecture.latent_size
        self.grid_z = torch.randn(self.rows * self.cols, latent,
                                  generator=torch.Generator().manual_seed(derive_seed(trainer.seed, "grid")))
        self.history = history  # the run log's records (shared with the recorder)
        ticks = [r for r in history if r.get("event") == "tick"]
        self.tick_count = int(ticks[-1]["tick"]) if ticks else 0
        self.best: dict[int, float] = {}
        self.board: Board | None = None
        self.progress: Progress | None = None
        if main:
            self.board = Board(run.tensorboard, purge_step=trainer.images_shown + 1 if continuing else None)
            self.progress = Progress(schedule.total, trainer.images_shown, enabled=progress)

    def say(self, line: str) -> None:
        """One line on stdout (above the bar) and, timestamped, in the run's log.txt."""
        if not self.main:
            return
        if not self.quiet:
            if self.progress is not None and self.progress.active:
                self.progress.write(line)
            else:
                print(line, flush=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.run.path / TEXT_LOG, "a", encoding="utf-8") as fh:
            fh.write("".join(f"{stamp}  {part}\n" for part in line.splitlines()))

    def phase(self, p: Phase) -> None:
        self.say(f"phase {p.index}: {p.resolution}x{p.resolution} {p.stage.phase}, kimg "
                 f"{p.start / 1000:g}-{p.end / 1000:g}, minibatch {p.minibatch}, lr {p.learning_rate:g}")

    def update_progress(self, monitor: Monitor) -> None:
        t = self.trainer
        if self.progress is None or t.phase is None:
            return
        eta = eta_seconds(self.schedule, t.images_shown, monitor)
        res = t.phase.resolution
        text = (f"{res}x{res} {t.phase.stage.phase} a={t.alpha:.2f} {monitor.img_per_s(res):.0f} "
                f"img/s ETA {format_duration(eta) if eta is not None else '?'}")
        self.progress.update(t.images_shown, text)

    def tick(self, means: dict[str, float], monitor: Monitor) -> dict[str, Any] | None:
        """Show a tick (grid, plot, board, line); the record to log, or None without stats."""
        t = self.trainer
        assert t.phase is not None
        if not self.main:
            return None
        res = t.phase.resolution
        ips = monitor.img_per_s(res)
        record: dict[str, Any] | None = None
        if means:
            self.tick_count += 1
            record = {"tick": self.tick_count, "resolution": res, "phase": t.phase.stage.phase,
                      "alpha": t.alpha, "minibatch": t.phase.minibatch,
                      "learning_rate": t.phase.learning_rate, "img_per_s": round(ips, 2),
                      "elapsed_s": round(monitor.elapsed, 3), **means}
        grid = training_grid(t.sample(self.grid_z), self.rows, self.cols)
        write_png(self.run.grids / f"fakes{t.images_shown:09d}.png", grid)
        write_png(self.run.grids / "latest.png", grid)
        self._board(means, ips, grid)
        if record is not None:
            ticks = [r for r in self.history if r.get("event") == "tick"]
            ticks.append({"kimg": t.images_shown / 1000, **record})
            marks = [{"kimg": r["start_kimg"], "resolution": r["resolution"], "phase": r["phase"]}
                     for r in self.history if r.get("event") == "phase"]
            plot_losses(self.run.plots / "losses.png", ticks, marks)
            losses = "  ".join(f"{k} {v:+.4f}" for k, v in means.items())
            self.say(f"tick {self.tick_count:<4} kimg {t.images_shown / 1000:9.3f}  {res}x{res} "
                     f"{t.phase.stage.phase:<6} alpha {t.alpha:.3f}  {ips:8.1f} img/s  {losses}  "
                     f"time {format_duration(monitor.elapsed)}")
            self._check_collapse(res, ips)
        return record

    def _board(self, means: dict[str, float], ips: float, grid: np.ndarray) -> None:
        t = self.trainer
        if self.board is None or t.phase is None:
            return
        step = t.images_shown
        scalars: dict[str, float] = {f"Loss/{k}": v for k, v in means.items()}
        scalars.update({"Progress/kimg": step / 1000, "Progress/alpha": t.alpha,
                        "Progress/resolution": t.phase.resolution,
                        "Progress/minibatch": t.phase.minibatch,
                        "Progress/learning_rate": t.phase.learning_rate, "Timing/img_per_s": ips})
        self.board.scalars(scalars, step)
        self.board.image("fakes", grid, step)
        self.board.flush()

    def _check_collapse(self, res: int, ips: float) -> None:
        best = self.best.get(res, 0.0)
        if best and ips < COLLAPSE * best:
            self.say(f"note: throughput fell to {ips:.1f} img/s at {res}x{res} (best {best:.1f}); "
                     f"if other work shares this machine, fewer threads help (--threads 1)")
        self.best[res] = max(best, ips)

    def metrics(self, results: dict[str, float]) -> None:
        t = self.trainer
        assert t.phase is not None
        if self.board is not None:
            self.board.scalars({f"Metrics/{k}": v for k, v in results.items()}, t.images_shown)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in results.items())
        self.say(f"metrics at {t.images_shown / 1000:g} kimg ({t.phase.resolution}x"
                 f"{t.phase.resolution}): {shown}")

    def reals(self, dataset: ImageDataset) -> None:
        """The grid of real images a new run shows once (grids/reals.png): a random subset (of a
        seed of the run) at the final resolution."""
        if not self.main:
            return
        count = min(self.rows * self.cols, dataset.num_images)
        rng = np.random.default_rng(derive_seed(self.trainer.seed, "reals"))
        index = np.sort(rng.choice(dataset.num_images, count, replace=False))
        level = dataset.images(self.trainer.program.final_stage.resolution)
        images = torch.from_numpy(np.asarray(level[index]))
        write_png(self.run.grids / "reals.png", training_grid(images, self.rows, self.cols))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        if self.board is not None:
            self.board.close()
            self.board = None
