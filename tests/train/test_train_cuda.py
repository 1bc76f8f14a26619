"""CUDA training: bf16 autocast, channels_last, fused Adam. Skipped without a GPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from progan_dsl.checkpoint import Checkpoint
from progan_dsl.train.loop import TrainOptions, train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_bf16_run_on_cuda(train_spec: Path, train_data: Path, tmp_path: Path) -> None:
    spec = tmp_path / "bf16.yaml"
    spec.write_text(train_spec.read_text().replace("training:\n", "training:\n  precision: bf16\n"))
    result = train(
        TrainOptions(
            spec=str(spec),
            data=str(train_data),
            outdir=str(tmp_path / "runs"),
            device="cuda",
            progress=False,
        )
    )
    assert result.images_shown == 320
    records = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    ticks = [r for r in records if r["event"] == "tick"]
    assert ticks and all(math.isfinite(r["loss_D"]) and math.isfinite(r["loss_G"]) for r in ticks)
    state = Checkpoint.load(result.run_dir)
    assert state.training is not None
    assert state.training.opt_G["param_groups"][0]["fused"] is True
    assert all(v.dtype == torch.float32 for v in state.G.values())  # bf16 only in autocast
    assert set(result.img_per_s) == {4, 8, 16}


def test_cuda_checkpoint_resumes_on_cpu(train_spec: Path, train_data: Path, tmp_path: Path) -> None:
    first = train(
        TrainOptions(
            spec=str(train_spec),
            data=str(train_data),
            outdir=str(tmp_path),
            device="cuda",
            progress=False,
            kimg=0.096,
        )
    )
    more = train(
        TrainOptions(
            spec=str(train_spec),
            data=str(train_data),
            outdir=str(tmp_path),
            device="cpu",
            progress=False,
            resume="auto",
            kimg=0.128,
        )
    )
    assert more.run_dir == first.run_dir and more.images_shown == 128
