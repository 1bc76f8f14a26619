"""What a run measures about itself: loss statistics, throughput, and when to look at them.

Owns the host syncs (the trainer keeps per-iteration stats on the device; they come to the host
only at a sync, so the inner loop has no host syncs of its own), the window of stats rows since the
last tick (carried in checkpoints, so a resumed run's tick means are those of an uninterrupted
one), the non-finite check, and img/s per resolution (time spent building modules at a phase
change is not training time). Also `Interval`: "a multiple of N images lies in (before, after]",
the rule every owner (ticks, checkpoints, evaluations) uses for its own interval, so a resumed run
does them at the same points.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from progan_dsl.train.schedule import kimg_to_images
from progan_dsl.train.trainer import Trainer

SYNC_EVERY = 8  # iterations between host syncs (loss check, progress) when nothing else syncs


class Interval:
    """Every `kimg` thousand images (never when `kimg` is None)."""

    def __init__(self, kimg: float | None) -> None:
        self.every = max(kimg_to_images(kimg), 1) if kimg else None

    def due(self, before: int, after: int) -> bool:
        """True if a multiple of the interval lies in (before, after]."""
        return self.every is not None and after // self.every > before // self.every


class NonFinite(Exception):
    """A loss statistic stopped being finite."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


class Monitor:
    """Loss statistics and throughput of one invocation of a run."""

    def __init__(
        self,
        trainer: Trainer,
        window: Sequence[Sequence[float]] | None = None,
        elapsed_before: float = 0.0,
    ) -> None:
        self.trainer = trainer
        self.rows: list[np.ndarray] = []  # synced stats rows since the last tick
        if window:
            self.rows.append(np.asarray(window, dtype=np.float64))
        self.elapsed_before = elapsed_before  # training seconds of earlier invocations
        self.seconds: dict[int, float] = {}
        self.images: dict[int, int] = {}
        self.iterations = 0
        self.last_rows: np.ndarray | None = None
        self.start_segment()

    def start_segment(self) -> None:
        """Start timing anew (after building modules, evaluating, ...)."""
        self._segment_start = time.perf_counter()
        self._segment_images = self.trainer.images_shown

    def after_iteration(self) -> bool:
        """Count an iteration; True when it is time for a routine sync."""
        self.iterations += 1
        return self.iterations % SYNC_EVERY == 0

    def sync(self) -> None:
        """Wait for the device, account the segment's time, pull the stats; `NonFinite` if a
        statistic is inf or nan (every rank raises it together: the stats are rank means)."""
        t = self.trainer
        if t.device.type == "cuda":
            torch.cuda.synchronize(t.device)
        phase = t.phase
        images = t.images_shown - self._segment_images
        if phase is not None and images > 0:
            res = phase.resolution
            self.seconds[res] = (
                self.seconds.get(res, 0.0) + time.perf_counter() - self._segment_start
            )
            self.images[res] = self.images.get(res, 0) + images
        rows = t.sync_stats()
        self.start_segment()
        if rows is None:
            return
        if not np.isfinite(rows).all():
            names = t.stat_names
            raise NonFinite(
                [names[j] for j in range(rows.shape[1]) if not np.isfinite(rows[:, j]).all()]
            )
        self.rows.append(rows)
        self.last_rows = rows

    def take_means(self) -> dict[str, float]:
        """Means of the window since the last tick, by stat name (empty if none); starts a new
        one."""
        if not self.rows:
            return {}
        mean = np.concatenate(self.rows).mean(axis=0)
        self.rows = []
        return {k: float(v) for k, v in zip(self.trainer.stat_names, mean, strict=True)}

    def recent_means(self) -> dict[str, float]:
        """Means of the rows of the last sync (for the progress bar)."""
        if self.last_rows is None:
            return {}
        mean = self.last_rows.mean(axis=0)
        return {k: float(v) for k, v in zip(self.trainer.stat_names, mean, strict=True)}

    def window(self) -> list[list[float]]:
        """The unfinished tick's rows, for a checkpoint."""
        return np.concatenate(self.rows).tolist() if self.rows else []

    def clear(self) -> None:
        self.rows, self.last_rows = [], None

    def img_per_s(self, resolution: int) -> float:
        return self.images.get(resolution, 0) / max(self.seconds.get(resolution, 0.0), 1e-9)

    def speeds(self) -> dict[int, float]:
        return {res: self.img_per_s(res) for res in self.images}

    @property
    def elapsed(self) -> float:
        """Training seconds of the run so far, this invocation and earlier ones."""
        return self.elapsed_before + sum(self.seconds.values())
