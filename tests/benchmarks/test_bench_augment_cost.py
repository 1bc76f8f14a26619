"""The augmentation-cost benchmark's quick form on the tiny spec: each arm's trainer is what its
name says (augmented or not), the table's costs are its own times' ratios, the JSON holds them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_augment_cost as bench
from tests.conftest import TINY


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("augment_cost") / "cost.json"
    argv = ["--spec", str(TINY), "--points", "4:4,8:4", "--quick", "--threads", "1"]
    return bench.run([*argv, "--json", str(out)]), out


def test_every_arm_is_timed_at_every_point_and_augments_as_named(result) -> None:
    res, _ = result
    assert [(r["resolution"], r["batch"]) for r in res["rows"]] == [(4, 4), (8, 4)]
    for row in res["rows"]:
        assert row["none_augmented"] is False
        assert row["ada_augmented"] is True and row["diffaugment_augmented"] is True
        assert all(row[f"{arm}_ms"] > 0 for arm in bench.ARMS)
        assert row["cost_ada"] == pytest.approx(row["ada_ms"] / row["none_ms"] - 1.0)
        assert row["cost_diff"] == pytest.approx(row["diffaugment_ms"] / row["none_ms"] - 1.0)
    assert res["timing"] == "process CPU time" and res["threads"]["threads"] == 1


def test_results_are_written_as_json(result) -> None:
    res, out = result
    written = json.loads(out.read_text())
    assert written["rows"] == json.loads(json.dumps(res["rows"]))
    assert written["config"]["repeats"] == 3 and written["config"]["points"] == "4:4,8:4"
