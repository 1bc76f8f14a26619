"""Loss values against a linear critic D(x) = <w, x>, whose input gradient is w for every sample,
so every term is computable by hand; and the minibatch-stddev group layout.

The loss objects draw their fakes from G: here G is the identity, so a batch's latents are the
fakes it is judged on."""

from __future__ import annotations

import math

import pytest
import torch

from progan_dsl.nn.layers import MinibatchStddev
from progan_dsl.spec.models import Conditioning, LogisticLoss, LsganLoss, WganGpLoss
from progan_dsl.train.losses import LOSSES, Critic, DBatch, GBatch, Nets, make_loss, stat_names
from progan_dsl.train.trainer import group_layout


def Batch(reals, fakes, mix, upscale=1):  # type: ignore[no-untyped-def]
    """An unlabelled D batch whose fakes, under the identity G, are `fakes`."""
    return DBatch(reals, None, fakes, mix, upscale)


def _nets(critic):  # type: ignore[no-untyped-def]
    return Nets(G=lambda z, labels: z, D=Critic(critic))


def d_loss(spec, critic, batch):  # type: ignore[no-untyped-def]
    return make_loss(spec).d(_nets(critic), batch)


def g_loss(spec, critic, fakes):  # type: ignore[no-untyped-def]
    return make_loss(spec).g(_nets(critic), GBatch(fakes, None))


# reals score 3 and 4, fakes 0 and 7 under w = (3, 4), |w| = 5
W = torch.tensor([3.0, 4.0])
REALS = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 1, 1, 2)
FAKES = torch.tensor([[0.0, 0.0], [1.0, 1.0]]).view(2, 1, 1, 2)
MIX = torch.tensor([0.25, 0.75]).view(2, 1, 1, 1)
BATCH = Batch(REALS, FAKES, MIX)


def critic(w: torch.Tensor):
    return lambda x: (x.flatten(1) * w).sum(dim=1, keepdim=True)


def test_wgan_gp_value_and_gradient() -> None:
    w = W.clone().requires_grad_(True)
    loss, terms = d_loss(WganGpLoss(kind="wgan_gp"), critic(w), BATCH)
    # E[D(fake)] - E[D(real)] = 3.5 - 3.5; GP 10 * (5 - 1)^2; drift 0.001 * (9 + 16) / 2
    assert loss.item() == pytest.approx(0.0 + 160.0 + 0.0125)
    assert terms["gp"].item() == pytest.approx(16.0)
    assert terms["drift"].item() == pytest.approx(12.5)
    assert terms["real_score"].item() == pytest.approx(3.5)
    loss.backward()
    # d/dw: mean(fakes) - mean(reals) = 0; GP 20 (|w| - 1) w / |w| = 16 w; drift 0.001 (3 e1 + 4 e2)
    assert w.grad.tolist() == pytest.approx([48.003, 64.004])
    assert g_loss(WganGpLoss(kind="wgan_gp"), critic(W), FAKES).item() == pytest.approx(-3.5)


def test_wgan_gp_target_and_weights() -> None:
    spec = WganGpLoss(kind="wgan_gp", gp_lambda=2.0, gp_target=5.0, drift=0.0)
    loss, terms = d_loss(spec, critic(W), BATCH)
    assert terms["gp"].item() == 0.0 and loss.item() == pytest.approx(0.0)


def test_lsgan_values() -> None:
    loss, _ = d_loss(LsganLoss(kind="lsgan"), critic(W), BATCH)
    assert loss.item() == pytest.approx(0.5 * (4 + 9) / 2 + 0.5 * (0 + 49) / 2)
    assert g_loss(LsganLoss(kind="lsgan"), critic(W), FAKES).item() == pytest.approx(
        0.5 * (1 + 36) / 2
    )


def test_logistic_r1_values() -> None:
    def softplus(v: float) -> float:
        return math.log1p(math.exp(v))

    loss, terms = d_loss(LogisticLoss(kind="logistic", r1_gamma=10.0), critic(W), BATCH)
    expected = (softplus(0) + softplus(7)) / 2 + (softplus(-3) + softplus(-4)) / 2 + 5.0 * 25.0
    assert loss.item() == pytest.approx(expected)
    assert terms["r1"].item() == pytest.approx(25.0)
    assert g_loss(LogisticLoss(kind="logistic"), critic(W), FAKES).item() == pytest.approx(
        (softplus(-0.0) + softplus(-7.0)) / 2
    )


def _group_stat(x: torch.Tensor, group: int) -> torch.Tensor:
    """The minibatch-stddev value each sample (in drawn order) gets after `group_layout`."""
    out = MinibatchStddev(group)(group_layout(x, group))[:, -1, 0, 0]
    order = group_layout(torch.arange(x.shape[0]), group)  # drawn index at each layer position
    stat = torch.empty_like(out)
    stat[order] = out
    return stat


def test_group_layout_makes_groups_contiguous_and_rank_independent() -> None:
    x = torch.randn(16, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    full = _group_stat(x, 4)
    # groups are [0..3], [4..7], ...: one value per run of 4, different between runs
    runs = full.view(4, 4)
    assert torch.equal(runs, runs[:, :1].expand(4, 4))
    assert len(set(runs[:, 0].tolist())) == 4
    # two ranks with contiguous halves compute exactly the same groups
    halves = torch.cat([_group_stat(x[:8], 4), _group_stat(x[8:], 4)])
    assert torch.allclose(full, halves, rtol=0, atol=1e-6)
    # the layout is a permutation, and the identity when there is one group
    assert sorted(group_layout(torch.arange(16), 4).tolist()) == list(range(16))
    assert torch.equal(group_layout(torch.arange(4), 4), torch.arange(4))


def test_wgan_gp_under_bf16_autocast_with_bf16_fakes():
    """On CUDA the generator runs under bf16 autocast, so fakes arrive as bf16 while reals are
    float32; the penalty's interpolation must still work (checked here with CPU autocast)."""
    import torch

    from progan_dsl.spec.models import WganGpLoss

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def critic(x):
        return conv(x).flatten(1).mean(dim=1, keepdim=True)

    reals = torch.randn(4, 1, 8, 8)
    fakes = torch.randn(4, 1, 8, 8).bfloat16()
    mix = torch.rand(4, 1, 1, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, terms = d_loss(WganGpLoss(kind="wgan_gp"), critic, Batch(reals, fakes, mix))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(terms["gp"])
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


@pytest.mark.parametrize(
    ("upscale", "expected_gp"), [(1, 16.0), (2, 2.25), (4, 0.0625), (8, 0.140625)]
)
def test_wgan_gp_full_resolution_gradient_by_hand(upscale: int, expected_gp: float) -> None:
    """Official default: the gradient w.r.t. the image nearest-upscaled to the final size has
    norm |w| / f = 5 / f for the linear critic; 'native' keeps |w| = 5 at every resolution."""
    spec = WganGpLoss(kind="wgan_gp")
    loss, terms = d_loss(spec, critic(W), Batch(REALS, FAKES, MIX, upscale))
    assert terms["gp"].item() == pytest.approx(expected_gp)  # (5 / f - 1)^2
    assert loss.item() == pytest.approx(10.0 * expected_gp + 0.0125)
    native = WganGpLoss(kind="wgan_gp", gp_gradient="native")
    _, terms = d_loss(native, critic(W), Batch(REALS, FAKES, MIX, upscale))
    assert terms["gp"].item() == pytest.approx(16.0)


@pytest.mark.parametrize("upscale", [2, 4])
def test_wgan_gp_matches_a_critic_run_at_full_resolution(upscale: int) -> None:
    """Independent computation of the official semantics: mix reals and fakes upscaled to the
    full size, run D behind the 2x2-average chain its fromRGB applies (avg_pool by f), take the
    gradient with respect to the full-resolution mix."""
    gen = torch.Generator().manual_seed(3)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))

    def native(x: torch.Tensor) -> torch.Tensor:  # a nonlinear critic at the current resolution
        return torch.nn.functional.leaky_relu(conv(x), 0.2).square().mean(dim=(1, 2, 3))[:, None]

    reals, fakes = torch.randn(4, 3, 8, 8, generator=gen), torch.randn(4, 3, 8, 8, generator=gen)
    mix = torch.rand(4, 1, 1, 1, generator=gen)
    spec = WganGpLoss(kind="wgan_gp")
    loss, terms = d_loss(spec, native, Batch(reals, fakes, mix, upscale))

    up = lambda x: torch.nn.functional.interpolate(x, scale_factor=upscale, mode="nearest")  # noqa: E731
    full_mix = torch.lerp(up(reals), up(fakes), mix).requires_grad_(True)
    scores = native(torch.nn.functional.avg_pool2d(full_mix, upscale))
    (grad,) = torch.autograd.grad(scores.sum(), full_mix)
    penalty = (grad.flatten(1).norm(dim=1) - 1.0).square().mean()
    real_scores = native(torch.nn.functional.avg_pool2d(up(reals), upscale))
    fake_scores = native(torch.nn.functional.avg_pool2d(up(fakes), upscale))
    expected = (
        fake_scores.mean()
        - real_scores.mean()
        + 10.0 * penalty
        + 0.001 * real_scores.square().mean()
    )
    assert terms["gp"].item() == pytest.approx(penalty.item(), rel=1e-4)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_each_loss_declares_the_terms_it_logs() -> None:
    assert stat_names(WganGpLoss(kind="wgan_gp")) == (
        "loss_D",
        "loss_G",
        "real_score",
        "fake_score",
        "gp",
        "drift",
    )
    assert stat_names(LsganLoss(kind="lsgan")) == ("loss_D", "loss_G", "real_score", "fake_score")
    assert stat_names(LogisticLoss(kind="logistic", r1_gamma=0.0))[-1] == "fake_score"
    assert stat_names(LogisticLoss(kind="logistic"))[-1] == "r1"
    for spec in (
        WganGpLoss(kind="wgan_gp"),
        LsganLoss(kind="lsgan"),
        LogisticLoss(kind="logistic"),
    ):
        _, terms = d_loss(spec, critic(W), BATCH)
        assert set(stat_names(spec)) == {"loss_D", "loss_G", *terms}
    assert set(LOSSES) == {"wgan_gp", "lsgan", "logistic"}
    cond = Conditioning(classes=3)
    assert stat_names(WganGpLoss(kind="wgan_gp"), cond)[-2:] == ("class_real", "class_fake")
    projection = Conditioning(classes=3, discriminator="projection")
    assert stat_names(WganGpLoss(kind="wgan_gp"), projection) == stat_names(
        WganGpLoss(kind="wgan_gp")
    )


def test_the_trainer_penalises_the_full_resolution_gradient_at_every_phase() -> None:
    """Wiring: each D step hands the loss final / current resolution (16x16 spec: 4, 2, 1), so
    the official full-resolution penalty applies through the whole schedule."""
    from progan_dsl.compiler import compile_spec
    from progan_dsl.train.distributed import DistEnv
    from progan_dsl.train.schedule import build_schedule
    from progan_dsl.train.trainer import Trainer
    from tests.conftest import TINY

    seen: dict[tuple[int, str], set[int]] = {}

    program = compile_spec(TINY)
    schedule = build_schedule(program.spec, 0.5)
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    reals = {}

    def source(res: int, batch: int, alpha: float) -> torch.Tensor:
        return reals.setdefault((res, batch), torch.zeros(batch, 1, res, res))

    t = Trainer(program, schedule, env, source, seed=0)
    real_d = t.loss.d

    def spy(nets, batch):  # type: ignore[no-untyped-def]
        seen.setdefault(stage_now[0], set()).add(batch.upscale)
        return real_d(nets, batch)

    t.loss.d = spy  # type: ignore[method-assign]
    stage_now = [(0, "")]
    for phase in schedule.phases:
        t.seek(phase.start)
        stage_now[0] = (phase.resolution, phase.stage.phase)
        t.iteration()
    assert seen == {
        (4, "stable"): {4},
        (8, "fade"): {2},
        (8, "stable"): {2},
        (16, "fade"): {1},
        (16, "stable"): {1},
    }
