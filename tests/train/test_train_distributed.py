"""A 2-process gloo run (torchrun, CPU) against a 1-process run with the same global batch.

Both draw the same global latents and real images and form the same minibatch-stddev groups;
gradients are averaged over the two halves, so the two compute the same gradients up to float
summation order. That is what is checked, where it is true on every CPU: the averaged gradients
of the first iteration agree to float rounding, and after 160 images (12 iterations through the
growth to 8x8, its fade-in included) the runs stand at the same position with the same draws.

Why not the final weights: the paper's Adam has beta1 = 0, so each step moves a weight by about
lr * g / |g| (= +-lr) whatever |g| is. A gradient element whose true value is near zero can come
out with either sign depending on the summation order (and the order differs between the 1- and
2-process runs and between AVX2 and AVX-512 kernels), and that element then moves by 2 * lr = 2e-3
the other way. The weights of the two runs therefore differ by multiples of 1e-3 on some CPUs
(2.0e-3 measured on an AVX-512 machine, 3.6e-3 here) although every gradient agrees to rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from progan_dsl.checkpoint import Checkpoint

ROOT = Path(__file__).resolve().parents[2]
RELATIVE = 1e-4  # gradient agreement, relative to the largest gradient element of the tensor
# A gradient whose terms cancel (D's output bias: +1/N per fake, -1/N per real, ...) sums O(1)
# float32 terms to a result near 0: the two processes' sums in another order differ by the
# rounding of those terms, a few float32 epsilons (2^-23 = 1.2e-7; measured 6e-8), whatever the
# result's own size. 4 epsilons of absolute slack cover it.
CANCELLING = 4 * 2.0**-23

SCRIPT = """
import sys, torch, torch.distributed as dist
from progan_dsl.train.loop import TrainOptions, train

def first_gradients(trainer):
    if trainer.images_shown == trainer.phase.minibatch and trainer.env.is_main:
        grads = {f"{net}.{k}": p.grad.detach().clone() \
for net, m in (("G", trainer.G), ("D", trainer.D))
                 for k, p in m.named_parameters() if p.grad is not None}
        torch.save(grads, sys.argv[4])

train(TrainOptions(spec=sys.argv[1], data=sys.argv[2], outdir=sys.argv[3], device="cpu",
                   progress=False, threads=1, kimg=0.16), on_iteration=first_gradients)
"""


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(
    train_spec: Path, train_data: Path, tmp_path: Path
) -> None:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = [str(train_spec), str(train_data)]
    single = subprocess.run(
        [sys.executable, str(script), *common, str(tmp_path / "one"), str(tmp_path / "one.pt")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            *common,
            str(tmp_path / "two"),
            str(tmp_path / "two.pt"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    (run,) = (tmp_path / "two").iterdir()  # rank 0 alone made a run folder
    assert launched.stdout.count("progan-train: new run") == 1  # and only rank 0 printed

    g1, g2 = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert g1.keys() == g2.keys() and len(g1) > 10
    for key in g1:
        scale = g1[key].abs().max().item()
        worst = (g1[key] - g2[key]).abs().max().item()
        assert worst <= RELATIVE * scale + CANCELLING, (
            f"{key}: {worst:.3g} (largest element {scale:.3g})"
        )

    (one_run,) = (tmp_path / "one").iterdir()
    one, two = Checkpoint.load(one_run), Checkpoint.load(run)
    assert one.images_shown == two.images_shown == 160
    assert two.run_state is not None and two.run_state.world_size == 2
    assert one.training is not None and two.training is not None
    assert one.training.loader["position"] == two.training.loader["position"]
    assert torch.equal(one.training.rng["train"], two.training.rng["train"])  # same global draws
    for net in ("G", "D", "G_ema"):
        assert getattr(one, net).keys() == getattr(two, net).keys()
