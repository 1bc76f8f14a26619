"""`Augmenter`: the spec's `training.augment` in a run: the pipeline every image D sees goes
through, its probability p, and (ADA) the overfitting heuristic p is steered by.

Owns p and the heuristic's accumulators as run state (a checkpoint keeps them, so a resumed run
is bitwise the uninterrupted one), drawing each call's random numbers from the run's `Draws`
(the global minibatch's draws, this rank's slice: the result does not depend on the number of
processes), and the adjustment of p. The transforms themselves are `progan_dsl.train.augment`'s.

Adaptive p (ADA, Karras et al. 2020, Section 3): every `interval` D steps, the heuristic r over
those steps' images is compared with `target`, and p moves by sign(r - target) * (images of the
interval) / (speed_kimg * 1000), clamped to [0, 1]. Everything stays on the device (p is a
device scalar the pipeline reads): no host sync in the training loop; the accumulators are
averaged over processes at each adjustment.

Heuristics (D's results as the losses judged them, reals and fakes of a D step):
- `sign_real`: ADA's r_t = E[sign(D(real))], made for the logistic loss, whose scores are logits
  with 0 as the decision boundary;
- `sign_gap`: E[sign(D(real_i) - D(fake_i))], reals and fakes paired by their index in the
  minibatch (2 P(D(real) > D(fake)) - 1). WGAN-GP scores have no meaningful zero (only
  differences enter the loss, and the drift term pulls the reals' mean to 0 whatever D has
  learnt), so the fakes' scores stand in for the boundary.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from progan_dsl.spec.models import AdaAugment, Augment, DiffAugmentSpec
from progan_dsl.train import distributed as distr
from progan_dsl.train.augment import (
    ADA_TRANSFORMS,
    AdaPipeline,
    DiffAugmentPipeline,
    Pipeline,
)
from progan_dsl.train.draws import Draws


def make_pipeline(spec: AdaAugment | DiffAugmentSpec) -> Pipeline:
    """The pipeline of a spec's `training.augment` (ADA's transforms in ADA's order)."""
    if isinstance(spec, AdaAugment):
        return AdaPipeline([t for t in ADA_TRANSFORMS if t in spec.transforms])
    return DiffAugmentPipeline(list(dict.fromkeys(spec.policy)))


class Augmenter:
    """The augmentation of one trainer: `__call__` augments a batch D is about to see,
    `observe` takes D's results on a D step's reals and fakes, `step` ends a D step."""

    def __init__(
        self, spec: Augment, draws: Draws, env: distr.DistEnv, device: torch.device
    ) -> None:
        self.spec, self.draws, self.env = spec, draws, env
        self.pipeline = make_pipeline(spec)
        ada = spec if isinstance(spec, AdaAugment) else None
        self.adaptive = ada is not None and ada.p is None
        self.has_p = ada is not None
        p0 = 1.0 if ada is None else (ada.initial_p if ada.p is None else ada.p)
        self.p = torch.full((), p0, dtype=torch.float32, device=device)
        self.signs = torch.zeros((), dtype=torch.float32, device=device)  # sum over the interval
        self.count = torch.zeros((), dtype=torch.float32, device=device)  # samples observed
        self.r = torch.zeros((), dtype=torch.float32, device=device)  # last completed interval
        self.steps = 0  # D steps since the last adjustment
        self.adjusted = False  # an interval has completed (self.r holds its heuristic)

    @property
    def terms(self) -> tuple[str, ...]:
        """What each iteration logs: p (ADA) and the heuristic (adaptive ADA)."""
        if self.adaptive:
            return ("aug_p", "aug_r")
        return ("aug_p",) if self.has_p else ()

    def stats(self) -> list[Tensor]:
        """This iteration's values of `terms` (device scalars): p, and the heuristic of the last
        completed interval (before the first one, the running estimate)."""
        if not self.adaptive:
            return [self.p.clone()] if self.has_p else []
        r = self.r if self.adjusted else self.signs / self.count.clamp(min=1.0)
        return [self.p.clone(), r.clone()]

    def __call__(self, images: Tensor) -> Tensor:
        """`images` (this rank's share of a batch) as D sees them."""
        u = self.draws.uniform(images.shape[0], self.pipeline.draws)
        return self.pipeline(images, u, self.p)

    @torch.no_grad()
    def observe(self, real: Tensor, fake: Tensor) -> None:
        """D's scores [N, 1] of a D step's reals and fakes (drawn order)."""
        if not self.adaptive:
            return
        assert isinstance(self.spec, AdaAugment)
        if self.spec.heuristic == "sign_gap":
            signs = torch.sign(real.float() - fake.float())
        else:
            signs = torch.sign(real.float())
        self.signs += signs.sum()
        self.count += signs.numel()

    @torch.no_grad()
    def step(self, global_batch: int) -> None:
        """A D step of `global_batch` images ended: adjust p every `interval` steps."""
        if not self.adaptive:
            return
        spec = self.spec
        assert isinstance(spec, AdaAugment)
        self.steps += 1
        if self.steps < spec.interval:
            return
        totals = distr.average_tensor(self.env, torch.stack([self.signs, self.count]))
        r = totals[0] / totals[1].clamp(min=1.0)
        rate = global_batch * spec.interval / (spec.speed_kimg * 1000.0)
        self.p.copy_((self.p + torch.sign(r - spec.target) * rate).clamp(0.0, 1.0))
        self.r.copy_(r)
        self.signs.zero_()
        self.count.zero_()
        self.steps = 0
        self.adjusted = True

    # -- run state -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """p and the accumulators, as numbers (the checkpoint's run state)."""
        return {
            "augment_p": float(self.p),
            "augment_signs": float(self.signs),
            "augment_count": float(self.count),
            "augment_r": float(self.r),
            "augment_steps": self.steps,
            "augment_adjusted": int(self.adjusted),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Back to what `state` recorded (float32 values round-trip exactly through floats)."""
        self.p.fill_(state["augment_p"])
        self.signs.fill_(state["augment_signs"])
        self.count.fill_(state["augment_count"])
        self.r.fill_(state["augment_r"])
        self.steps = int(state["augment_steps"])
        self.adjusted = bool(state["augment_adjusted"])


__all__ = ["Augmenter", "make_pipeline"]
