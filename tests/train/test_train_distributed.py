"""A 2-process gloo run (torchrun, CPU) against a 1-process run with the same global batch.

Both draw the same global latents and real images and form the same minibatch-stddev groups;
gradients are averaged over the two halves, so the runs differ only by float summation order.
Documented tolerance: after the whole tiny schedule (28 iterations through two growths), every
weight of G, D and G EMA agrees to 1e-4 absolute (weights are O(1); measured: 3e-6), and the
loader stands at the same position.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from progan_dsl.train.checkpoint import load_checkpoint
from progan_dsl.train.loop import TrainOptions, train

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(train_spec: Path, train_data: Path,
                                              tmp_path: Path) -> None:
    single = train(TrainOptions(spec=str(train_spec), data=str(train_data),
                                outdir=str(tmp_path / "one"), device="cpu", progress=False,
                                threads=1))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "progan_dsl.train", str(train_spec), "--data", str(train_data),
         "--outdir", str(tmp_path / "two"), "--device", "cpu", "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    (run,) = (tmp_path / "two").iterdir()  # rank 0 alone made a run folder
    assert launched.stdout.count("progan-train: new run") == 1  # and only rank 0 printed

    one, two = load_checkpoint(single.run_dir), load_checkpoint(run)
    assert one["images_shown"] == two["images_shown"] == 320
    assert two["extra"]["world_size"] == 2
    assert one["loader"]["position"] == two["loader"]["position"]
    worst = 0.0
    for net in ("G", "D", "G_ema"):
        assert one[net].keys() == two[net].keys()
        for key in one[net]:
            worst = max(worst, (one[net][key] - two[net][key]).abs().max().item())
    assert worst <= TOLERANCE, f"largest weight difference {worst:.3g}"
    assert torch.equal(one["rng"]["train"], two["rng"]["train"])  # the same global draws
