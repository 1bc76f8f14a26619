"""Augmentation of D's inputs in training (`training.augment`, `progan_dsl.train.augmenter`):
the spec (defaults, the hash of specs without it, located errors), every D evaluation of every
loss augmented with its own draw in a fixed order (paired or not), the penalty differentiated
through the transforms, p adapted as ADA adapts it, a resume inside an adjustment interval that
ends bitwise equal to the uninterrupted run, and p and the heuristic in the tick line, log.jsonl,
TensorBoard and the loss plot."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

from progan_dsl.checkpoint import Checkpoint
from progan_dsl.compiler import compile_spec
from progan_dsl.errors import UserError
from progan_dsl.paper import ADA_TARGET_SIGN_REAL
from progan_dsl.spec import load_spec_text
from progan_dsl.spec.models import ADA_BGC, AdaAugment
from progan_dsl.train import augmenter as augmenter_module
from progan_dsl.train.augment import ADA_TRANSFORMS, DIFFAUGMENT_POLICIES
from progan_dsl.train.augmenter import Augmenter
from progan_dsl.train.distributed import DistEnv
from progan_dsl.train.draws import Draws
from progan_dsl.train.fast import FastPaths
from progan_dsl.train.loop import TrainOptions, train
from progan_dsl.train.losses import Critic, DBatch, Judged, Nets, make_loss
from progan_dsl.train.schedule import Phase, Schedule
from progan_dsl.train.trainer import Trainer
from tests.conftest import TRAIN_SPEC

CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def with_augment(block: str, name: str = "tiny_aug") -> str:
    """TRAIN_SPEC with `training.augment` set to the YAML flow mapping `block`."""
    text = TRAIN_SPEC.replace("name: tiny_train", f"name: {name}")
    return text.replace("training:\n", f"training:\n  augment: {block}\n", 1)


# p starts at 0.5 and moves by 0.016 every 2 D steps of 16, up or down, whatever D says
ADAPTIVE = "{kind: ada, initial_p: 0.5, speed_kimg: 2, interval: 2, target: 0.2}"


@functools.lru_cache(maxsize=4)
def program_of(block: str):  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    return compile_spec(load_spec_text(with_augment(block)))


def make_trainer(program, fast: FastPaths, batch: int = 8) -> Trainer:  # type: ignore[no-untyped-def]
    """A trainer at the 16x16 fade-in (alpha 0.4), learning rate 0, fixed reals."""
    phase = Phase(
        index=0,
        stage=program.stage(16, "fade"),
        start=0,
        end=1000,
        length=250,
        minibatch=batch,
        learning_rate=0.0,
    )
    reals = torch.randn(batch, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    t = Trainer(program, Schedule((phase,), 1000), CPU, lambda r, b, a: reals, seed=3, fast=fast)
    t.enter_phase(phase)
    t.seek(100)
    return t


# -- the spec -------------------------------------------------------------------------------------


def test_spec_defaults_and_the_hash_of_specs_without_augmentation() -> None:
    plain = load_spec_text(TRAIN_SPEC)
    assert plain.spec.training.augment is None
    off = load_spec_text(TRAIN_SPEC.replace("training:\n", "training:\n  augment: null\n", 1))
    assert off.hash == plain.hash  # an unused new field leaves existing specs' hashes alone
    ada = load_spec_text(with_augment("{kind: ada}", name="tiny_train"))
    assert ada.hash != plain.hash
    spec = ada.spec.training.augment
    assert isinstance(spec, AdaAugment)
    assert (spec.p, spec.initial_p, spec.heuristic, spec.interval, spec.speed_kimg) == (
        None,
        0.0,
        "sign_gap",
        4,
        500.0,
    )
    assert tuple(spec.transforms) == ADA_BGC == ADA_TRANSFORMS  # the spec's names are the module's
    resolved = load_spec_text(ada.resolved_yaml())
    assert resolved.hash == ada.hash  # every default written out loads back to the same spec
    diff = load_spec_text(with_augment("{kind: diffaugment}")).spec.training.augment
    assert diff is not None and tuple(diff.policy) == DIFFAUGMENT_POLICIES  # type: ignore[union-attr]
    assert diff.describe() == "diffaugment, color, translation, cutout"
    assert spec.describe() == (
        "ada, p adaptive from 0 (sign_gap -> 0.6, every 4 D steps, 0 -> 1 in 500 kimg), "
        "transforms all 12 (bgc)"
    )
    # the target's default follows the heuristic (ADA's 0.6 for its r_t); a given one is kept
    real = load_spec_text(with_augment("{kind: ada, heuristic: sign_real}")).spec.training.augment
    assert isinstance(real, AdaAugment) and real.target == ADA_TARGET_SIGN_REAL
    given = "{kind: ada, heuristic: sign_real, target: 0.25}"
    assert load_spec_text(with_augment(given)).spec.training.augment.target == 0.25  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("block", "says"),
    [
        ("{kind: ada, p: 1.5}", "24: training.augment.p: input should be less than or equal to 1"),
        (
            "{kind: ada, transforms: [xflip, shear]}",
            "44: training.augment.transforms[1]: input should be 'xflip', 'rotate90', 'xint', "
            "'scale', 'rotate', 'aniso', 'xfrac', 'brightness', 'contrast', 'lumaflip', 'hue' or "
            "'saturation' (got 'shear')",
        ),
        ("{kind: ada, target: 1.0}", "24: training.augment.target: input should be less than 1"),
        ("{kind: cutmix}", "13: training.augment.kind: unknown kind 'cutmix' (allowed: ada, "),
        ("{kind: diffaugment, policy: []}", "32: training.augment.policy: list should have at "),
        ("{kind: ada, interval: 0}", "24: training.augment.interval: input should be greater "),
    ],
)
def test_bad_augment_values_are_located(block: str, says: str) -> None:
    text = with_augment(block)
    with pytest.raises(UserError) as err:
        load_spec_text(text, "aug.yaml")
    line = text.splitlines().index(f"  augment: {block}") + 1
    assert f"aug.yaml:{line}:{says}" in str(err.value), str(err.value)


# -- every D evaluation ---------------------------------------------------------------------------


class Recording:
    """Wraps the trainer's augmenter: records each batch it augments."""

    def __init__(self, augment: Augmenter) -> None:
        self.augment, self.calls = augment, []  # type: ignore[var-annotated]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = self.augment(images)
        self.calls.append((images.detach().clone(), images.requires_grad, out.detach().clone()))
        return out

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.augment, name)


@pytest.mark.parametrize("paired", [False, True])
def test_every_image_d_sees_is_augmented_each_call_with_its_own_draw(paired: bool) -> None:
    program = program_of("{kind: ada, p: 0.5}")
    t = make_trainer(program, FastPaths(channels_last=False, paired_critic=paired, compile=False))
    assert t.augment is not None
    spy = Recording(t.augment)
    t.augment = spy  # type: ignore[assignment]
    t.iteration()
    # D step: reals, fakes, the penalty's mixes (differentiated: requires grad); G step: fakes
    assert [needs for _, needs, _ in spy.calls] == [False, False, True, True]
    assert all(images.shape == (8, 1, 16, 16) for images, _, _ in spy.calls)
    reals = spy.calls[0][0]
    assert torch.equal(reals, t.reals(16, 8, 0.4))
    changed = [not torch.equal(images, out) for images, _, out in spy.calls]
    assert all(changed)  # p 0.5 over 12 transforms: every batch of 8 has augmented samples


def test_paired_and_two_calls_give_the_same_iteration() -> None:
    program = program_of("{kind: ada, p: 0.5}")
    rows, grads = [], []
    for paired in (False, True):
        t = make_trainer(program, FastPaths(channels_last=False, paired_critic=paired))
        t.iteration()
        rows.append(t.sync_stats())
        assert t.G is not None and t.D is not None
        grads.append(torch.cat([p.grad.flatten() for m in (t.D, t.G) for p in m.parameters()]))
    # the same draws in the same order; a joint call sums in another order (tolerance as
    # test_train_fast's paired-critic check)
    assert torch.allclose(torch.as_tensor(rows[0]), torch.as_tensor(rows[1]), rtol=1e-5, atol=1e-6)
    assert ((grads[0] - grads[1]).norm() / grads[1].norm()).item() < 1e-5


def test_the_penalty_is_the_gradient_of_d_through_the_augmentation() -> None:
    """WGAN-GP with augmentation: the penalty's norm is that of d D(T(x)) / dx at the mix, T the
    mix's own draw; and T(mix) is the mix of T(real) and T(fake) (the transforms are affine)."""
    torch.manual_seed(0)
    pipeline = augmenter_module.make_pipeline(AdaAugment(kind="ada"))
    weight = torch.randn(1, 1, 3, 3, dtype=torch.float64)

    def D(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, weight).square().mean(dim=(1, 2, 3)).unsqueeze(1)

    reals, fakes = torch.randn(4, 1, 8, 8).double(), torch.randn(4, 1, 8, 8).double()
    mix = torch.rand(4, 1, 1, 1).double()
    draws = [torch.rand(4, pipeline.draws) for _ in range(3)]
    it = iter(draws)

    class Augmented(Critic):
        def __call__(self, images, labels=None):  # type: ignore[no-untyped-def]
            return Judged(D(pipeline(images, next(it), 1.0)))

    spec = load_spec_text(TRAIN_SPEC).spec.training.loss
    _, terms = make_loss(spec).d(
        Nets(G=lambda z, y: z, D=Augmented()), DBatch(reals, None, fakes, mix)
    )
    x = torch.lerp(reals, fakes, mix).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(pipeline(x, draws[2], 1.0)).sum(), x)
    expected = (grad.flatten(1).norm(dim=1) - 1).square().mean()
    assert torch.allclose(terms["gp"].double(), expected, rtol=1e-5)
    same = pipeline(x.detach(), draws[2], 1.0)
    both = torch.lerp(pipeline(reals, draws[2], 1.0), pipeline(fakes, draws[2], 1.0), mix)
    assert torch.allclose(same, both, atol=1e-5)


# -- adapting p -----------------------------------------------------------------------------------


def test_p_follows_the_heuristic_as_ada_adjusts_it() -> None:
    spec = AdaAugment(kind="ada", interval=2, speed_kimg=1.0, target=0.5)
    draws = Draws(0, 0, 1, lambda x: x)
    a = Augmenter(spec, draws, CPU, torch.device("cpu"))
    assert a.terms == ("aug_p", "aug_r") and float(a.p) == 0.0
    high, low = torch.ones(8, 1), torch.zeros(8, 1)
    step = 8 * 2 / 1000  # images of an interval / (speed_kimg * 1000)
    for k in range(1, 4):  # reals above their fakes every time: r = 1 > 0.5, p rises
        a.observe(high, low)
        a.step(8)
        a.observe(high, low)
        a.step(8)
        assert float(a.p) == pytest.approx(k * step) and float(a.r) == 1.0
    a.observe(low, high)  # reals below their fakes, then half of them: r = -0.5 < 0.5, p falls
    a.observe(torch.cat([low[:4], high[4:]]), torch.cat([high[:4], low[4:]]))
    a.step(8)
    a.step(8)
    assert float(a.p) == pytest.approx(2 * step) and float(a.r) == -0.5
    a.observe(high, low)  # then 8 ties (sign 0): r exactly the target, p stays
    a.observe(torch.cat([low[:4], high[4:]]), torch.cat([low[:4], high[4:]]))
    a.step(8)
    a.step(8)
    assert float(a.p) == pytest.approx(2 * step) and float(a.r) == 0.5
    for _ in range(10):  # never below 0
        a.observe(low, high)
        a.step(8)
    assert float(a.p) == 0.0 and float(a.r) == -1.0
    real = AdaAugment(kind="ada", heuristic="sign_real", interval=1, speed_kimg=1.0, target=0.6)
    b = Augmenter(real, draws, CPU, torch.device("cpu"))
    b.observe(torch.tensor([[1.0], [2.0], [-1.0], [3.0]]), torch.full((4, 1), 9.0))
    b.step(4)
    assert float(b.r) == 0.5 and float(b.p) == 0.0  # r_t = E[sign D(real)], fakes unused
    fixed = Augmenter(AdaAugment(kind="ada", p=0.3), draws, CPU, torch.device("cpu"))
    fixed.observe(high, low)
    fixed.step(8)
    assert fixed.terms == ("aug_p",) and float(fixed.p) == pytest.approx(0.3)


def test_draws_of_a_rank_are_its_slice_of_the_global_draw() -> None:
    whole = Draws(9, 0, 1, lambda x: x).uniform(8, 5)
    halves = [Draws(9, rank, 2, lambda x: x).uniform(4, 5) for rank in (0, 1)]
    assert torch.equal(torch.cat(halves), whole)


def test_an_augmented_iteration_makes_no_host_syncs() -> None:
    from tests.train.test_train_fast import HostSyncs  # the detector of the fast paths' test

    t = make_trainer(program_of(ADAPTIVE), FastPaths())
    t.iteration()
    package = augmenter_module.__file__.rsplit("/train/", 1)[0]
    with HostSyncs((package, "<progan:")) as mode:
        for _ in range(4):  # two adjustments of p
            t.iteration()
    assert mode.found == []
    assert t.augment is not None and float(t.augment.p) != 0.5  # adjusted, on the device


# -- a run ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aug_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("aug_spec") / "tiny_aug.yaml"
    path.write_text(with_augment(ADAPTIVE))
    return path


def _train(spec: Path, data: Path, out: Path, **kw) -> object:  # type: ignore[no-untyped-def]
    options = dict(device="cpu", progress=False, threads=1, seed=5, quiet=True)
    return train(TrainOptions(spec=str(spec), data=str(data), outdir=str(out), **options, **kw))


def test_an_augmented_run_resumes_bitwise_inside_an_adjustment_interval(
    aug_spec: Path, train_data: Path, tmp_path: Path
) -> None:
    whole = _train(aug_spec, train_data, tmp_path / "whole")
    # 176 images = 11 iterations of 16: one D step into an interval of 2, inside a repeats group
    _train(aug_spec, train_data, tmp_path / "parts", kimg=0.176)
    (run,) = (tmp_path / "parts").iterdir()
    stopped = Checkpoint.load(run)
    state = stopped.run_state
    assert stopped.images_shown == 176 and state is not None
    assert state.augment_steps == 1 and state.augment_count == 16 and state.augment_adjusted == 1
    assert state.augment_p is not None and 0 < state.augment_p < 1 and state.augment_p != 0.5
    _train(aug_spec, train_data, tmp_path / "parts", resume=str(run), kimg=0.32)
    a = Checkpoint.load(whole.run_dir)  # type: ignore[attr-defined]
    b = Checkpoint.load(run)
    assert a.images_shown == b.images_shown == 320
    for net in ("G", "D", "G_ema"):
        for key, value in getattr(a, net).items():
            assert torch.equal(value, getattr(b, net)[key]), (net, key)
    assert a.run_state is not None and b.run_state is not None
    assert a.run_state.augment_p == b.run_state.augment_p
    assert a.run_state.augment_r == b.run_state.augment_r

    # p and the heuristic in the tick line, log.jsonl, TensorBoard and the loss plot
    ticks = [
        json.loads(line)
        for line in (whole.run_dir / "log.jsonl").read_text().splitlines()  # type: ignore[attr-defined]
        if '"tick"' in line
    ]
    ticks = [r for r in ticks if r.get("event") == "tick"]
    assert ticks and all(0 <= r["aug_p"] <= 1 and -1 <= r["aug_r"] <= 1 for r in ticks)
    text = (whole.run_dir / "log.txt").read_text()  # type: ignore[attr-defined]
    assert "  augment ada, p adaptive from 0.5 (sign_gap -> 0.2, every 2 D steps" in text
    assert " aug_p +0." in text and " aug_r " in text
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(whole.run_dir / "tensorboard"))  # type: ignore[attr-defined]
    board.Reload()
    assert {"Augment/p", "Augment/r"} <= set(board.Tags()["scalars"])
    from PIL import Image

    with Image.open(whole.run_dir / "plots" / "losses.png") as plot:  # type: ignore[attr-defined]
        assert plot.height == 8 * 90  # three panels (9 x 8 inches at 90 dpi) instead of two


# -- StyleGAN2-ADA's options ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "sets", "shown"),
    [
        (["--aug", "ada"], "training.augment={kind: ada, p: null}", "ada, p adaptive from 0 ("),
        (
            ["--aug", "fixed", "--p", "0.2"],
            "training.augment={kind: ada, p: 0.2}",
            "ada, p 0.2 fixed, transforms all 12 (bgc)",
        ),
        (
            ["--aug", "ada", "--target", "0.4", "--augpipe", "blit"],
            "training.augment={kind: ada, p: null, target: 0.4, "
            "transforms: [xflip, rotate90, xint]}",
            "ada, p adaptive from 0 (sign_gap -> 0.4, every 4 D steps, 0 -> 1 in 500 kimg), "
            "transforms xflip, rotate90, xint",
        ),
        (["--aug", "diffaugment"], "training.augment={kind: diffaugment}", "diffaugment, color"),
    ],
)
def test_stylegan_augment_options_set_the_spec(
    argv: list[str], sets: str, shown: str, capsys
) -> None:  # type: ignore[no-untyped-def]
    from progan_dsl.train.cli import main

    assert main(["specs/mnist_32.yaml", *argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"options     {' '.join(argv)}: {sets}\n" in out
    assert f"\naugment     {shown}" in out


def test_augment_options_on_a_spec_that_has_ada_and_their_errors(capsys) -> None:  # type: ignore[no-untyped-def]
    from progan_dsl.cli import train_main
    from progan_dsl.train.cli import main

    assert main(["specs/mnist_32_augment.yaml", "--p", "0.3", "--target", "0.5", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "training.augment.initial_p=0.3, training.augment.target=0.5" in out
    assert main(["specs/mnist_32_augment.yaml", "--aug", "noaug", "--dry-run"]) == 0
    assert "\naugment " not in capsys.readouterr().out
    for argv, message in [
        (["--aug", "fixed"], "--aug fixed needs --p P (the probability to hold)"),
        (["--p", "0.3"], "--p sets ADA's augmentation, and spec specs/mnist_32.yaml has none: "),
        (["--aug", "noaug", "--target", "0.1"], "--target sets ADA's augmentation; --aug noaug "),
        (["--aug", "fixed", "--p", "0.1", "--target", "0.2"], "--target steers an adaptive p"),
        (["--p", "1.5"], "argument --p: '1.5' is not a probability (0 to 1)"),
        (["--target", "-1"], "argument --target: '-1' is not between -1 and 1 (exclusive)"),
    ]:
        assert train_main(["specs/mnist_32.yaml", *argv, "--dry-run"]) == 2, argv
        assert message in capsys.readouterr().err, argv
