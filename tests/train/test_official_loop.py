"""The official loop's bookkeeping (train.py): the schedule read once per minibatch_repeats
minibatches, and G EMA updated with every D step from G before its step."""

from __future__ import annotations

import copy

import torch

from progan_dsl.compiler import compile_spec
from progan_dsl.train.distributed import DistEnv
from progan_dsl.train.schedule import build_schedule
from progan_dsl.train.trainer import Trainer
from tests.conftest import TINY

ENV = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def _trainer(*overrides: str) -> Trainer:
    program = compile_spec(TINY, overrides=list(overrides))
    return Trainer(
        program,
        build_schedule(program.spec),
        ENV,
        lambda r, b, a: torch.randn(b, 1, r, r, generator=torch.Generator().manual_seed(b + r)),
        seed=3,
    )


def test_the_schedule_is_read_once_per_group_of_minibatch_repeats() -> None:
    t = _trainer("training.schedule.fade_kimg=0.256", "training.schedule.total_kimg=1")
    assert t.training.minibatch_repeats == 4
    fade = next(p for p in t.schedule.phases if p.fading)
    t.seek(fade.start - 2 * fade.minibatch)  # two iterations before the fade-in starts
    seen = []
    for _ in range(12):
        t.iteration()
        seen.append((t.phase.stage.phase, t.cursor.held, t.alpha))  # type: ignore[union-attr]
    # a group of 4 is read where it starts: it straddles the phase boundary in the old phase
    assert [s[0] for s in seen] == ["stable"] * 4 + ["fade"] * 8
    helds = [s[1] for s in seen]
    assert helds == [helds[0]] * 4 + [helds[4]] * 4 + [helds[8]] * 4
    assert helds[4] - helds[0] == helds[8] - helds[4] == 4 * fade.minibatch
    alphas = [s[2] for s in seen[4:]]
    assert alphas == [fade.alpha(helds[4])] * 4 + [fade.alpha(helds[8])] * 4
    assert 0 < alphas[0] < alphas[4] < 1


def test_every_iteration_reads_it_with_minibatch_repeats_1() -> None:
    t = _trainer("training.minibatch_repeats=1")
    fade = next(p for p in t.schedule.phases if p.fading)
    t.seek(fade.start)
    t.iteration()
    t.iteration()
    assert t.cursor.held == fade.start + fade.minibatch


def _ema_after_one_iteration(update: str, d_repeats: int) -> tuple[dict, dict, dict]:
    t = _trainer(f"training.ema.update={update}", f"training.d_repeats={d_repeats}")
    t.enter_phase(t.schedule.phase_at(0))
    assert t.G is not None and t.G_ema is not None
    with torch.no_grad():  # an EMA that differs from G, so each update shows
        for p in t.G_ema.parameters():
            p.add_(1.0)
    before = copy.deepcopy(t.G.state_dict()), copy.deepcopy(t.G_ema.state_dict())
    t.iteration()
    return before[0], before[1], t.G_ema.state_dict()


def test_ema_follows_every_d_step_from_g_before_its_step() -> None:
    """Official: Gs_update_op runs with each D_train_op, so with D_repeats 2 the EMA takes two
    steps towards G as it was before this iteration's G step."""
    g, ema, after = _ema_after_one_iteration("d_step", 2)
    w = 1.0 - 0.999  # the spec's default decay
    for name, value in after.items():
        once = torch.lerp(ema[name], g[name], w)
        assert torch.allclose(value, torch.lerp(once, g[name], w), atol=1e-6), name


def test_ema_after_the_g_step_when_asked() -> None:
    g, ema, after = _ema_after_one_iteration("g_step", 1)
    moved = [
        name
        for name in after
        if not torch.allclose(after[name], torch.lerp(ema[name], g[name], 0.001))
    ]
    assert moved  # it followed G after its step, not G before it
