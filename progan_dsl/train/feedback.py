"""What a run shows besides text: image grids, loss plots, TensorBoard.

Owns the tick interval and the pictures of a tick: a grid of G EMA samples from fixed latents,
the loss plot (redrawn from the run log's tick records), TensorBoard scalars and images, and the
tick record the run log gets; the grid of real images a new run shows once. Printed lines and the
progress bar are `console.py`. Nothing here touches a random number generator, so feedback never
changes what a run computes. Rank 0 only.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from progan_dsl.data.dataset import ImageDataset
from progan_dsl.fsutil import write_bytes_atomic
from progan_dsl.images import image_grid, write_png
from progan_dsl.train.monitor import Interval, Monitor
from progan_dsl.train.rundir import RunDir, tick_records
from progan_dsl.train.schedule import Schedule
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


def plot_losses(
    path: Path, ticks: Sequence[dict[str, Any]], phases: Sequence[dict[str, Any]]
) -> None:
    """Loss and D-score curves against kimg, phase starts marked; written atomically as PNG."""
    if not ticks:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kimg = [r["kimg"] for r in ticks]
    augmented = any("aug_p" in r for r in ticks)  # a third panel: ADA's p and heuristic
    fig, axes = plt.subplots(
        3 if augmented else 2, 1, figsize=(9, 8 if augmented else 6), sharex=True
    )
    top, bottom = axes[0], axes[1]
    for key, label in (("loss_D", "D loss"), ("loss_G", "G loss")):
        top.plot(kimg, [r.get(key, math.nan) for r in ticks], label=label)
    for key, label in (("real_score", "D(real)"), ("fake_score", "D(fake)")):
        bottom.plot(kimg, [r.get(key, math.nan) for r in ticks], label=label)
    if augmented:
        for key, label in (("aug_p", "augment p"), ("aug_r", "heuristic r")):
            if any(key in r for r in ticks):
                axes[2].plot(kimg, [r.get(key, math.nan) for r in ticks], label=label)
        axes[2].set_ylabel("augmentation")
        axes[2].legend(loc="upper right", fontsize=8)
    for record in phases:
        for ax in axes:
            ax.axvline(record["kimg"], color="0.8", linewidth=0.8, zorder=0)
        top.annotate(
            f"{record['resolution']} {record['phase']}",
            (record["kimg"], 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            rotation=90,
            va="top",
            ha="right",
            color="0.5",
        )
    top.set_ylabel("loss")
    bottom.set_ylabel("mean score")
    axes[-1].set_xlabel("kimg")
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


def row_per_class(rows: int, cols: int, classes: int) -> torch.Tensor | None:
    """One-hot labels of a grid whose row r shows class r mod classes (official train.py
    setup_snapshot_image_grid, layout 'row_per_class'); None for an unconditional run."""
    if not classes:
        return None
    index = torch.arange(rows).remainder(classes).repeat_interleave(cols)
    return torch.nn.functional.one_hot(index, classes).float()


class Feedback:
    """Ticks, grids, plots, TensorBoard, progress and printed lines of one run (rank 0)."""

    def __init__(
        self,
        run: RunDir,
        trainer: Trainer,
        schedule: Schedule,
        *,
        main: bool,
        continuing: bool,
        history: list[dict[str, Any]],
    ) -> None:
        training = trainer.program.spec.training
        self.run, self.trainer, self.schedule, self.main = run, trainer, schedule, main
        self.interval = Interval(training.tick_kimg)
        self.rows, self.cols = training.grid.rows, training.grid.cols
        latent = trainer.program.spec.architecture.latent_size
        self.grid_z = torch.randn(
            self.rows * self.cols,
            latent,
            generator=torch.Generator().manual_seed(derive_seed(trainer.seed, "grid")),
        )
        # a conditional run draws one class per row (official row_per_class layout)
        self.grid_labels = row_per_class(self.rows, self.cols, trainer.num_classes)
        self.history = history  # the run log's records (shared with the recorder)
        ticks = tick_records(history)
        self.tick_count = int(ticks[-1]["tick"]) if ticks else 0
        self.board: Board | None = None
        if main:
            self.board = Board(
                run.tensorboard, purge_step=trainer.images_shown + 1 if continuing else None
            )

    def tick(self, means: dict[str, float], monitor: Monitor) -> dict[str, Any] | None:
        """Draw a tick (grid, plot, board); the record to log (and print), None without stats."""
        t = self.trainer
        assert t.phase is not None
        if not self.main:
            return None
        res = t.phase.resolution
        ips = monitor.img_per_s(res)
        record: dict[str, Any] | None = None
        if means:
            self.tick_count += 1
            record = {
                "tick": self.tick_count,
                "resolution": res,
                "phase": t.phase.stage.phase,
                "alpha": t.alpha,
                "minibatch": t.phase.minibatch,
                "learning_rate": t.phase.learning_rate,
                "img_per_s": round(ips, 2),
                "elapsed_s": round(monitor.elapsed, 3),
                **means,
            }
        grid = training_grid(t.sample(self.grid_z, self.grid_labels), self.rows, self.cols)
        write_png(self.run.grids / f"fakes{t.images_shown:09d}.png", grid)
        write_png(self.run.grids / "latest.png", grid)
        self._board(means, ips, grid)
        if record is not None:
            ticks = tick_records(self.history)
            ticks.append({"kimg": t.images_shown / 1000, **record})
            marks = [
                {"kimg": r["start_kimg"], "resolution": r["resolution"], "phase": r["phase"]}
                for r in self.history
                if r.get("event") == "phase"
            ]
            plot_losses(self.run.plots / "losses.png", ticks, marks)
        return record

    def _board(self, means: dict[str, float], ips: float, grid: np.ndarray) -> None:
        t = self.trainer
        if self.board is None or t.phase is None:
            return
        step = t.images_shown
        scalars: dict[str, float] = {
            f"Augment/{k.removeprefix('aug_')}" if k.startswith("aug_") else f"Loss/{k}": v
            for k, v in means.items()
        }
        scalars.update(
            {
                "Progress/kimg": step / 1000,
                "Progress/alpha": t.alpha,
                "Progress/resolution": t.phase.resolution,
                "Progress/minibatch": t.phase.minibatch,
                "Progress/learning_rate": t.phase.learning_rate,
                "Timing/img_per_s": ips,
            }
        )
        self.board.scalars(scalars, step)
        self.board.image("fakes", grid, step)
        self.board.flush()

    def metrics(self, results: dict[str, float]) -> None:
        if self.board is not None:
            self.board.scalars(
                {f"Metrics/{k}": v for k, v in results.items()}, self.trainer.images_shown
            )

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
        if self.board is not None:
            self.board.close()
            self.board = None
