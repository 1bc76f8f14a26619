"""The training fast paths (`progan_dsl.train.fast`) against the plain path: the same gradient
penalty and gradients, in float32 on the CPU and within bf16 rounding under autocast (CPU here,
CUDA where marked); reals and fakes paired in one D call only where minibatch-stddev groups stay
whole; compiled D never serving the penalty's double backward; no host syncs in an iteration.

Tolerances come from the measured spread (tiny spec, 16x16 fade-in, 6 seeds, this AVX-512 CPU):
fast vs plain differ by at most 7e-8 (GP, relative) and 4.3e-7 (relative L2 of D's gradients) in
float32, 2.2e-7 and 2.8e-3 under bf16 autocast. The bounds are ~25x (fp32) and ~10x (bf16) that:
rounding on other kernels (AVX2, cuDNN) moves them, a wrong grouping or a lost term is 1e-1.
"""

from __future__ import annotations

import sys

import pytest
import torch
from torch.overrides import TorchFunctionMode

from progan_dsl.compiler import compile_spec
from progan_dsl.train import fast as fast_module
from progan_dsl.train.distributed import DistEnv
from progan_dsl.train.fast import (
    DeviceCritic,
    DevicePaths,
    FastPaths,
    group_layout,
    group_unlayout,
    pairable,
    split_pair,
)
from progan_dsl.train.losses import DBatch, Nets, make_loss
from progan_dsl.train.schedule import Phase, Schedule
from progan_dsl.train.trainer import Trainer
from tests.conftest import TINY


def d_loss(spec, critic, reals, fakes, mix):  # type: ignore[no-untyped-def]
    """The spec's D loss with the identity as G: the batch's latents are its fakes."""
    return make_loss(spec).d(Nets(G=lambda z, y: z, D=critic), DBatch(reals, None, fakes, mix))


FP32 = {"gp": 1e-5, "grad": 1e-5}
BF16 = {"gp": 1e-2, "grad": 3e-2}
GROUP = 4  # the tiny spec's minibatch_stddev group_size
STAT = {
    "loss_D": 0,
    "gp": 4,
}  # rows of Trainer.pending (wgan_gp: loss_D, loss_G, real, fake, gp, drift)


@pytest.fixture(scope="module")
def program():  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    return compile_spec(TINY)


def trainer(
    program,
    fast: FastPaths,
    *,
    batch: int = 8,
    device: str = "cpu",  # type: ignore[no-untyped-def]
    resolution: int = 16,
    kind: str = "fade",
    gradfix: bool | None = False,
) -> Trainer:
    """A Trainer at one point, learning rate 0 (Adam leaves the weights, so every gradient of an
    iteration is taken at the same weights on both paths), fixed synthetic reals."""
    stage = program.stage(resolution, kind)
    phase = Phase(
        index=0, stage=stage, start=0, end=1000, length=250, minibatch=batch, learning_rate=0.0
    )
    reals = torch.randn(
        batch, 1, resolution, resolution, generator=torch.Generator().manual_seed(5)
    ).to(device)
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device(device))
    t = Trainer(
        program,
        Schedule((phase,), 1000),
        env,
        lambda r, b, a: reals,
        seed=3,
        gradfix=gradfix,
        fast=fast,
    )
    t.enter_phase(phase)
    t.seek(100)  # alpha 0.4: both branches of the fade-in matter
    return t


def grads(t: Trainer) -> torch.Tensor:
    assert t.G is not None and t.D is not None
    return torch.cat([p.grad.float().flatten() for m in (t.D, t.G) for p in m.parameters()])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_pairable_and_split_pair_keep_the_groups_of_two_calls() -> None:
    assert [pairable(n, 4) for n in (8, 16, 4, 2, 6)] == [True, True, True, False, False]
    assert pairable(3, 1) and pairable(1, 0)
    reals, fakes = torch.arange(8.0), torch.arange(100.0, 108.0)
    joint = group_layout(torch.cat([reals, fakes]), 4)
    # layer position i*(2N/G) + k holds logical sample k*G + i: groups 0-1 reals, 2-3 fakes
    assert joint.tolist() == [0, 4, 100, 104, 1, 5, 101, 105, 2, 6, 102, 106, 3, 7, 103, 107]
    got_r, got_f = split_pair(joint[:, None], 8, 4)
    assert torch.equal(got_r[:, 0], group_layout(reals, 4))  # the order a call on reals gives
    assert torch.equal(got_f[:, 0], group_layout(fakes, 4))
    r1, f1 = split_pair(torch.arange(6.0)[:, None], 3, 1)
    assert r1[:, 0].tolist() == [0, 1, 2] and f1[:, 0].tolist() == [3, 4, 5]


def test_paired_critic_scores_equal_two_calls_and_a_naive_join_would_not(program) -> None:  # type: ignore[no-untyped-def]
    stage = program.stage(4, "stable")
    torch.manual_seed(0)
    D = program.build("D", stage)
    reals, fakes = torch.randn(8, 1, 4, 4), 3.0 + 2.0 * torch.randn(8, 1, 4, 4)
    alpha = torch.tensor(1.0)
    critic = DeviceCritic(D, D, program.signature("D"), alpha, GROUP, lambda x: x, paired=True)
    paired = [judged.scores for judged in critic.pair(reals, fakes)]
    assert critic.paired_calls == 1
    alone = [group_unlayout(D(group_layout(x, GROUP), alpha), GROUP) for x in (reals, fakes)]
    for got, want in zip(paired, alone):
        assert rel(got, want) < FP32["grad"]
    # results come back in the order of the batch as drawn: sample 0 of reals first
    assert (
        rel(paired[0][:1], group_unlayout(D(group_layout(reals, GROUP), alpha), GROUP)[:1])
        < (FP32["grad"])
    )
    alone = [D(group_layout(x, GROUP), alpha) for x in (reals, fakes)]  # laid-out order
    naive = D(group_layout(torch.cat([reals[:4], fakes[:4], reals[4:], fakes[4:]]), GROUP), alpha)
    assert rel(naive[:4], alone[0][::2]) > 1e-2  # mixed groups change the stddev feature


def test_pairing_is_refused_when_a_batch_is_smaller_than_a_group(program) -> None:  # type: ignore[no-untyped-def]
    t = trainer(
        program,
        FastPaths(paired_critic=True, channels_last=False),
        batch=2,
        resolution=4,
        kind="stable",
    )
    made: list[DeviceCritic] = []
    original = t.paths.critic

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        made.append(original(*args, **kw))
        return made[-1]

    t.paths.critic = spy  # type: ignore[method-assign]
    t.iteration()
    plain = trainer(program, FastPaths.plain(), batch=2, resolution=4, kind="stable")
    plain.iteration()
    assert made[0].paired and made[0].paired_calls == 0
    assert torch.equal(t.pending[-1], plain.pending[-1]) and torch.equal(grads(t), grads(plain))


@pytest.mark.parametrize(
    "fast",
    [
        FastPaths(channels_last=True, paired_critic=False, compile=False),
        FastPaths(channels_last=False, paired_critic=True, compile=False),
        FastPaths(channels_last=True, paired_critic=True, compile=False),
        FastPaths(
            channels_last=True, paired_critic=True, compile=True, compile_backend="aot_eager"
        ),
    ],
    ids=lambda f: f.describe(),
)
def test_fast_iteration_matches_the_plain_one(program, fast: FastPaths) -> None:  # type: ignore[no-untyped-def]
    plain, quick = trainer(program, FastPaths.plain()), trainer(program, fast)
    assert quick.fast == fast and quick.alpha == pytest.approx(0.4)
    plain.iteration()
    quick.iteration()
    p_row, q_row = plain.pending[-1], quick.pending[-1]
    assert abs(q_row[STAT["gp"]] - p_row[STAT["gp"]]) <= FP32["gp"] * abs(p_row[STAT["gp"]])
    assert rel(q_row, p_row) < FP32["gp"]
    assert rel(grads(quick), grads(plain)) < FP32["grad"]


def test_compiled_d_serves_first_order_calls_only(program) -> None:  # type: ignore[no-untyped-def]
    t = trainer(program, FastPaths(compile=True, compile_backend="aot_eager", channels_last=False))
    assert isinstance(t.D_run, torch._dynamo.eval_frame.OptimizedModule)
    assert isinstance(t.G_run, torch._dynamo.eval_frame.OptimizedModule)
    # the reason: AOTAutograd (torch.compile) refuses the double backward of the penalty
    x = torch.randn(8, 1, 16, 16, requires_grad=True)
    (g,) = torch.autograd.grad(t.D_run(x, torch.tensor(0.4)).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.square().sum().backward()
    runs: list[str] = []

    def spy(name: str, fn):  # type: ignore[no-untyped-def]
        return lambda x, a: runs.append(name) or fn(x, a)

    reals, fakes = torch.randn(8, 1, 16, 16), torch.randn(8, 1, 16, 16)
    for paired, expected in (
        (False, ["compiled", "compiled", "eager"]),
        (True, ["compiled", "eager"]),
    ):
        runs.clear()
        critic = DeviceCritic(
            spy("eager", t.D),
            spy("compiled", t.D_run),
            program.signature("D"),
            torch.tensor(0.4),
            GROUP,
            t.paths.images,
            paired,
        )
        loss, _ = d_loss(program.spec.training.loss, critic, reals, fakes, torch.rand(8, 1, 1, 1))
        loss.backward()  # the penalty's double backward runs through the eager D
        assert runs == expected


def test_compile_keeps_compiling_over_every_stable_stage(program) -> None:  # type: ignore[no-untyped-def]
    from torch._dynamo.utils import counters

    from progan_dsl.train.schedule import build_schedule

    schedule = build_schedule(program.spec)
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    t = Trainer(
        program,
        schedule,
        env,
        lambda r, b, a: torch.randn(b, 1, r, r),
        seed=0,
        fast=FastPaths(compile=True, compile_backend="aot_eager", channels_last=False),
    )
    counters.clear()
    for phase in (p for p in schedule.phases if not p.fading):  # 4, 8, 16
        t.enter_phase(phase)
        t.seek(phase.start)
        t.iteration()
    # every frame compiled: no stage fell back to eager at Dynamo's recompile limit
    assert counters["frames"]["total"] == counters["frames"]["ok"] >= 9  # G x 2, D x 1 per stage


def test_bf16_autocast_pairing_and_channels_last_within_bf16_rounding(program) -> None:  # type: ignore[no-untyped-def]
    stage = program.stage(16, "fade")
    torch.manual_seed(1)
    D, G = program.build("D", stage), program.build("G", stage)
    alpha = torch.tensor(0.4)
    reals, mix = torch.randn(8, 1, 16, 16), torch.rand(8, 1, 1, 1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fakes = G(torch.randn(8, 16), alpha)
    assert fakes.dtype == torch.bfloat16  # the pair joins bf16 fakes with float32 reals
    results = []
    for fast in (FastPaths.plain(), FastPaths(channels_last=True, paired_critic=True)):
        paths = DevicePaths(fast.resolve(torch.device("cpu")), torch.device("cpu"), False)
        module = paths.place(D)
        module.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, terms = d_loss(
                program.spec.training.loss,
                paths.critic(module, module, program.signature("D"), alpha, GROUP),
                reals,
                fakes,
                mix,
            )
        loss.backward()
        results.append((terms["gp"], torch.cat([p.grad.flatten() for p in module.parameters()])))
    (gp0, g0), (gp1, g1) = results
    assert abs(gp1 - gp0) <= BF16["gp"] * abs(gp0) and rel(g1, g0) < BF16["grad"]


class HostSyncs(TorchFunctionMode):
    """Records tensor-to-host reads (.item(), bool(), .cpu(), .numpy(), .tolist(), float())
    made directly by code in `watched` files (progan_dsl and its generated modules): each one
    waits for the GPU. torch's own internals (the CPU Adam reads its step count) are not ours."""

    READS = {
        torch.Tensor.item,
        torch.Tensor.__bool__,
        torch.Tensor.cpu,
        torch.Tensor.numpy,
        torch.Tensor.tolist,
        torch.Tensor.__float__,
        torch.Tensor.__int__,
    }

    def __init__(self, watched: tuple[str, ...]) -> None:
        super().__init__()
        self.watched, self.found = watched, []  # type: ignore[var-annotated]

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in self.READS:
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(self.watched):
                self.found.append(f"{func.__name__} at {caller}:{sys._getframe(1).f_lineno}")
        return func(*args, **(kwargs or {}))


def test_an_iteration_makes_no_host_syncs(program) -> None:  # type: ignore[no-untyped-def]
    package = fast_module.__file__.rsplit("/train/", 1)[0]
    watched = (package, "<progan:")
    for fast in (FastPaths(), FastPaths.plain()):
        t = trainer(program, fast)
        t.iteration()  # the first builds and warms up
        with HostSyncs(watched) as mode:
            for _ in range(2):
                t.iteration()
        assert mode.found == [], fast
        assert len(t.sync_stats()) == 3  # statistics reach the host here, at a sync interval

    class Leaky(Trainer):  # the detector's own check: a planted read is found
        def iteration(self) -> None:
            super().iteration()
            self.pending[-1].sum().item()

    t = trainer(program, FastPaths())
    t.__class__ = Leaky
    with HostSyncs((*watched, __file__)) as mode:
        t.iteration()
    assert len(mode.found) == 1 and "item" in mode.found[0]


def test_switches_and_per_device_defaults() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert FastPaths().resolve(cpu) == FastPaths(**fast_module.DEFAULTS["cpu"])
    assert FastPaths().resolve(cuda) == FastPaths(**fast_module.DEFAULTS["cuda"])
    assert FastPaths(compile=True).resolve(cpu).compile is True
    assert FastPaths.plain().describe() == "none"
    assert FastPaths(True, True, True, "aot_eager").describe() == (
        "channels_last, paired_critic, compile(aot_eager)"
    )
    assert DevicePaths(FastPaths.plain(), cpu, False).scalar(0.25).item() == 0.25


# -- CUDA (skipped without a GPU; run by benchmarks/gpu/check.sh) ------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize(
    "fast",
    [
        FastPaths(channels_last=True, paired_critic=True, compile=False),
        FastPaths(channels_last=True, paired_critic=True, compile=True),
    ],
    ids=lambda f: f.describe(),
)
def test_cuda_bf16_fast_iteration_matches_plain(tmp_path, fast: FastPaths) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "bf16.yaml"
    spec.write_text(TINY.read_text().replace("training:\n", "training:\n  precision: bf16\n"))
    program = compile_spec(spec)
    plain = trainer(program, FastPaths.plain(), device="cuda", gradfix=False)
    quick = trainer(program, fast, device="cuda", gradfix=True)
    assert plain.bf16 and quick.bf16
    for t in (plain, quick):
        t.iteration()
    p_row, q_row = plain.pending[-1].cpu(), quick.pending[-1].cpu()
    assert abs(q_row[STAT["gp"]] - p_row[STAT["gp"]]) <= BF16["gp"] * abs(p_row[STAT["gp"]]) + 1e-4
    assert rel(grads(quick), grads(plain)) < BF16["grad"]


@pytest.mark.cuda
@cuda
def test_cuda_iteration_makes_no_host_syncs(program) -> None:  # type: ignore[no-untyped-def]
    t = trainer(program, FastPaths(), device="cuda", gradfix=None)
    for _ in range(2):
        t.iteration()  # cuDNN autotuning and allocator warm-up happen here
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            t.iteration()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert t.sync_stats() is not None
