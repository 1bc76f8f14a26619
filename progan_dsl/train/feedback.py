"""Live feedback of a run: progress bar, image grids, loss plots and TensorBoard.

Owns how a run looks while it trains. The progress bar (tqdm, on stderr when it is a terminal)
shows phase, resolution, alpha, kimg, img/s, losses and the ETA; every tick also prints one plain
line, so logs of non-interactive runs read the same. Grids are PNGs of EMA samples from fixed
latents; plots are redrawn from the tick records of the run log. Nothing here touches a random
number generator, so feedback never changes what a run computes.
"""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from progan_dsl.fsutil import write_bytes_atomic

GRID_MIN_CELL = 64  # grid cells are at least this many pixels (small stages are upscaled)
GRID_MAX_WIDTH = 2048  # and the grid at most this wide (large stages are downscaled)


# ---- images ------------------------------------------------------------------------------------


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (the loader's mapping, inverted and rounded)."""
    return (images.float() * 127.5 + 127.5).clamp(0, 255).round().to(torch.uint8)


def grid_cell(height: int, cols: int) -> int:
    """Pixel height of one grid cell: upscaled to GRID_MIN_CELL, capped by GRID_MAX_WIDTH."""
    cell = height
    while cell < GRID_MIN_CELL:
        cell *= 2
    while cell * cols > GRID_MAX_WIDTH and cell > 1:
        cell //= 2
    return cell


def image_grid(images: torch.Tensor, rows: int, cols: int) -> np.ndarray:
    """uint8 [N, C, H, W] (N >= rows * cols) -> one uint8 image [rows*h, cols*w, C] (C 1 or 3).

    Cells are resampled by powers of two (nearest up, box average down) per `grid_cell`."""
    images = images[: rows * cols].cpu()
    n, c, h, w = images.shape
    cell = grid_cell(h, cols)
    x = images.float()
    if cell > h:
        x = F.interpolate(x, scale_factor=cell // h, mode="nearest")
    elif cell < h:
        x = F.avg_pool2d(x, h // cell)
    x = x.round().clamp(0, 255).to(torch.uint8)
    _, _, ch, cw = x.shape
    if c == 2 or c == 4:  # no alpha in grids: show the first channel(s) as grey/RGB
        x = x[:, : (1 if c == 2 else 3)]
        c = x.shape[1]
    grid = x.view(rows, cols, c, ch, cw).permute(0, 3, 1, 4, 2).reshape(rows * ch, cols * cw, c)
    return grid.numpy()


def png_bytes(array: np.ndarray) -> bytes:
    """uint8 [H, W, 1 or 3] -> PNG file contents."""
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_grid(path: Path, array: np.ndarray) -> None:
    write_bytes_atomic(path, png_bytes(array))


# ---- plots -------------------------------------------------------------------------------------


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


# ---- TensorBoard -------------------------------------------------------------------------------


class Board:
    """TensorBoard scalars and images under the run's tensorboard/ folder (rank 0 only).

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


# ---- progress ----------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    """A tqdm bar over kimg (when enabled) plus plain per-tick lines on stdout."""

    def __init__(self, total_images: int, start_images: int, *, enabled: bool | None) -> None:
        from tqdm import tqdm

        show = sys.stderr.isatty() if enabled is None else enabled
        self._bar = tqdm(
            total=total_images / 1000,
            initial=start_images / 1000,
            unit="kimg",
            disable=not show,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} kimg [{elapsed}<{remaining}{postfix}]",
        )
        self._last = start_images

    def update(self, images_shown: int, *, resolution: int, phase: str, alpha: float,
               img_per_s: float, losses: dict[str, float]) -> None:
        self._bar.update((images_shown - self._last) / 1000)
        self._last = images_shown
        parts = [f"{resolution}x{resolution} {phase}", f"alpha={alpha:.3f}", f"{img_per_s:.0f} img/s"]
        parts += [f"{k}={v:.3f}" for k, v in losses.items()]
        self._bar.set_postfix_str(", ".join(parts), refresh=False)

    def write(self, line: str) -> None:
        if self._bar.disable:
            print(line, flush=True)
        else:
            self._bar.write(line, file=sys.stdout)

    def close(self) -> None:
        self._bar.close()
