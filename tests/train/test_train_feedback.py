"""What a run shows: the ETA weighted by each resolution's measured cost, a progress bar that
never runs past its total (no TqdmWarning) and fits 80 columns, the timestamped log.txt mirror,
timestamped log.jsonl records, and the note when throughput collapses."""

from __future__ import annotations

import io
import json
import re
import warnings
from types import SimpleNamespace

import pytest

from progan_dsl.ir import Stage
from progan_dsl.train.console import Progress, eta_seconds
from progan_dsl.train.feedback import grid_cell
from progan_dsl.train.loop import TrainResult
from progan_dsl.train.schedule import Phase, Schedule


def _phase(i: int, res: int, kind: str, start: int, end: int) -> Phase:
    return Phase(
        index=i,
        stage=Stage(res, kind),
        start=start,
        end=end,
        length=end - start,
        minibatch=4,
        learning_rate=1e-3,
    )


def test_eta_weights_each_phase_by_its_resolutions_measured_cost() -> None:
    schedule = Schedule(
        (
            _phase(0, 4, "stable", 0, 1000),
            _phase(1, 8, "fade", 1000, 2000),
            _phase(2, 8, "stable", 2000, 3000),
            _phase(3, 16, "fade", 3000, 4000),
        ),
        4000,
    )
    monitor = SimpleNamespace(images={4: 500, 8: 100}, img_per_s=lambda r: {4: 100.0, 8: 50.0}[r])
    # at 1500: 500 images of 8x8 fade + 1000 of 8x8 stable at 50 img/s, then 1000 of 16x16 at
    # the nearest measured rate (8x8) scaled by the pixel count: 50 / 4
    assert eta_seconds(schedule, 1500, monitor) == pytest.approx(1500 / 50 + 1000 / 12.5)
    assert eta_seconds(schedule, 1500, SimpleNamespace(images={}, img_per_s=lambda r: 0)) is None


def test_progress_never_passes_its_total_and_fits_80_columns(monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a TqdmWarning would fail the test
        bar = Progress(1000, 0, enabled=True)
        bar.update(600, "16x16 fade a=0.42 275 img/s ETA 3m12s")
        bar.update(1040, "16x16 stable a=1.00 275 img/s ETA 0m00s")  # the last step overshoots
        assert bar._bar.n == pytest.approx(1.0)
        bar.close()
    lines = [s for s in re.split(r"[\r\n]", out.getvalue()) if s.strip()]
    assert lines and max(len(s) for s in lines) <= 80


def test_grid_cells_are_upscaled_to_64_and_capped_by_the_width() -> None:
    assert grid_cell(4, 8) == 64 and grid_cell(1024, 8) == 256 and grid_cell(128, 2) == 128


def test_the_run_logs_carry_timestamps(reference_run: TrainResult) -> None:
    records = [
        json.loads(line) for line in (reference_run.run_dir / "log.jsonl").read_text().splitlines()
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", r["time"]) for r in records)
    text = (reference_run.run_dir / "log.txt").read_text().splitlines()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  progan-train: new run in ", text[0])
    assert any("tick 5" in line for line in text) and text[-1].split("  ", 1)[1].startswith(
        "last grid:"
    )
    assert records[0]["event"] == "start" and "verified" in records[0]["data_verified"]
