"""progan-metrics with generator sources: --network with a checkpoint, a run folder or an .onnx
file draws the images from a generator (seeded), so the three agree with each other and with the
sampler."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from progan_dsl.checkpoint import Checkpoint
from progan_dsl.cli import metrics_main
from progan_dsl.compiler import compile_spec
from progan_dsl.data import CreateOptions, create_dataset
from progan_dsl.export import export_onnx
from progan_dsl.generate import open_sampler
from tests.conftest import TINY


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("metric_sources")
    rng = np.random.default_rng(0)
    np.save(root / "real.npy", rng.integers(0, 256, (32, 16, 16), dtype=np.uint8))
    create_dataset(
        CreateOptions(source=str(root / "real.npy"), out=root / "ds", resolution=16, progress=False)
    )
    program = compile_spec(TINY)
    stage = program.final_stage
    torch.manual_seed(0)
    G = program.build("G", stage).eval()
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = (
        Checkpoint.from_weights(program.loaded, stage, G=G.state_dict(), images_shown=1000)
        .save(run / "checkpoints")
        .path
    )
    onnx = export_onnx(
        program, stage, G, root / "g.onnx", precision="fp32", batch="dynamic", metadata={}
    )
    return {"data": root / "ds", "checkpoint": ckpt, "run": run, "onnx": onnx, "root": root}


@pytest.mark.parametrize("flag", ["checkpoint", "run", "onnx"])
def test_generator_sources(sources: dict[str, Path], flag: str) -> None:
    report = sources["root"] / f"{flag}.json"
    argv = [
        "--data",
        str(sources["data"]),
        "--network",
        str(sources[flag]),
        "--metrics",
        "swd",
        "--num",
        "16",
        "--seed",
        "3",
        "--json",
        str(report),
    ]
    assert metrics_main(argv) == 0
    data = json.loads(report.read_text())
    assert data["num_fake"] == 16 and data["resolution"] == 16
    assert data["fake"] == f"network {sources[flag]}"
    from progan_dsl.metrics import evaluate
    from progan_dsl.metrics.cli import load_real_images

    fake = torch.from_numpy(open_sampler(sources["checkpoint"], device="cpu").sample_uint8(16, 3))
    real = load_real_images(sources["data"], 16, 16)
    expected = evaluate(["swd"], real, fake, seed=3)["swd_avg"]
    # onnxruntime and torch agree to within one uint8 level, so SWD agrees closely
    assert data["metrics"]["swd_avg"] == pytest.approx(expected, rel=0.05)


def test_two_sources_are_refused(
    sources: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rc = metrics_main(
        [
            "--data",
            str(sources["data"]),
            "--network",
            str(sources["onnx"]),
            "--fake",
            str(sources["root"]),
        ]
    )
    assert rc == 2
    assert "not allowed with argument" in capsys.readouterr().err
