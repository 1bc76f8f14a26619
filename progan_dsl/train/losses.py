"""GAN losses named by the spec's `training.loss.kind`: objects over G, D and a labelled batch.

A `Loss` owns the forward passes of one D step (`Loss.d`) and one G step (`Loss.g`): it draws
the fakes from G itself, asks D about reals, fakes and whatever its penalties need, and returns
the loss (a per-batch mean) with the terms it logs, which it declares (`Loss.terms`), so logs,
plots and progress never list them by hand. It sees the networks only through `Nets`: G as
`(latents, labels) -> images` and D as a `Critic`, `(images, labels) -> Judged` (the score and,
for an auxiliary-classifier D, the class logits). Reals and fakes are judged together through
`Critic.pair`, which the device's critic may serve with one batched call: the pairing is a call,
not a guess from tensor identity.

- `wgan_gp` (paper Appendix A; official loss.py D_wgangp_acgan / G_wgan_acgan):
  D: E[D(fake)] - E[D(real)] + lambda / target^2 * E[(|grad| - target)^2] + drift * E[D(real)^2];
  G: -E[D(fake)]. `grad` is the gradient of D's score at random mixes of reals and fakes. By
  default (`gp_gradient: full_resolution`) it is taken, as in the official code, with respect to
  the mixed image nearest-upscaled to the final resolution: the official networks always run at
  full size and see lower levels upscaled. Upscaling by f copies each pixel f^2 times and D's
  first step averages them back, so that gradient is the native one spread over f^2 pixels, each
  / f^2: its norm is |grad_native| / f. It is computed that way (exactly, without running D at
  full size). `gp_gradient: native` penalises |grad_native| itself.
- `lsgan` (Mao et al.; the paper's Section 6.1 also trains with it):
  D: 1/2 E[(D(real) - 1)^2] + 1/2 E[D(fake)^2];   G: 1/2 E[(D(fake) - 1)^2].
- `logistic` (non-saturating, with the R1 penalty of Mescheder et al. on reals):
  D: E[softplus(D(fake))] + E[softplus(-D(real))] + gamma / 2 * E[|grad D(real)|^2];
  G: E[softplus(-D(fake))].

With `training.augment`, the critic augments every batch it judges (reals, fakes, the
penalties' inputs, G's fakes), each call with its own draw, and a loss tells it what D said about
a D step's reals and fakes (`Critic.observe`, ADA's heuristic). The penalties differentiate
through the augmentation: WGAN-GP's gradient is that of D(T(x)) at the mix x, R1's at the real
(as ADA's R1); the transforms are affine in the pixels, so an augmented mix is the same mix of
the real and fake augmented with that draw.

Class-conditional specs (official `label_size > 0`): the D step's fakes are drawn with the reals'
labels, and the G step's labels are drawn from the dataset's label distribution (the trainer
supplies both in the batch). Where D gives class logits (`conditioning.discriminator: acgan`),
every loss adds the official AC-GAN terms, softmax cross-entropy against the one-hot labels
weighted by `conditioning.weight`: D: (CE(real logits) + CE(fake logits)) * weight; G:
CE(fake logits) * weight. Penalties (the gradient penalty, R1) are taken on the scores only.

Every term is a mean over this process's share of the batch, so averaging gradients over equal
shares gives the global mean. Penalties are computed in float32 even under autocast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from progan_dsl.spec.models import Conditioning, LogisticLoss, LsganLoss, WganGpLoss

LossSpec = WganGpLoss | LsganLoss | LogisticLoss
Terms = dict[str, Tensor]
COMMON_TERMS = ("loss_D", "loss_G", "real_score", "fake_score")
CLASS_TERMS = ("class_real", "class_fake")  # the AC-GAN cross-entropies of a D step


@dataclass(frozen=True)
class Judged:
    """What D says about a batch: scores [N, 1] (float32), class logits [N, K] or None."""

    scores: Tensor
    class_logits: Tensor | None = None


class Critic:
    """D as a loss calls it. `__call__` judges one batch; `pair` judges reals and fakes, by
    default with two calls (a device critic may serve it with one). Wrap a plain scoring
    function `images -> scores` with `Critic(fn)` (tests, benchmarks)."""

    def __init__(self, score: Callable[[Tensor], Tensor] | None = None) -> None:
        self._score = score

    def __call__(self, images: Tensor, labels: Tensor | None = None) -> Judged:
        assert self._score is not None, "a Critic needs a scoring function or an override"
        return Judged(self._score(images).float())

    def pair(
        self, reals: Tensor, fakes: Tensor, labels: Tensor | None = None
    ) -> tuple[Judged, Judged]:
        return self(reals, labels), self(fakes, labels)

    def observe(self, real: Judged, fake: Judged) -> None:
        """What D said about a D step's reals and fakes (an adaptive augmentation's heuristic
        reads it; nothing by default)."""


Generator = Callable[[Tensor, Tensor | None], Tensor]  # (latents, labels) -> images


@dataclass(frozen=True)
class Nets:
    """The networks a loss may call, at the current stage and alpha."""

    G: Generator
    D: Critic


@dataclass(frozen=True)
class DBatch:
    """What one D step sees: this process's share of a labelled minibatch."""

    reals: Tensor  # [N, C, H, W]
    labels: Tensor | None  # one-hot [N, K] of the reals (conditional specs), else None
    latents: Tensor  # [N, latent_size]: the fakes are G(latents, labels)
    mix: Tensor  # [N, 1, 1, 1] uniform in [0, 1): WGAN-GP interpolation weights
    upscale: int = 1  # final resolution / current resolution (for gp_gradient: full_resolution)


@dataclass(frozen=True)
class GBatch:
    """What one G step sees."""

    latents: Tensor  # [N, latent_size]
    labels: Tensor | None  # one-hot [N, K] drawn from the dataset's labels, else None


def _input_grad(scores: Tensor, images: Tensor) -> Tensor:
    """d(sum of scores) / d(images), kept in the graph (the penalty is differentiated again)."""
    (grad,) = torch.autograd.grad(scores.sum(), images, create_graph=True)
    return grad.float().flatten(1)  # [N, C*H*W]


def gradient_norm_scale(spec: WganGpLoss, upscale: int) -> float:
    """Factor from the native gradient norm to the one the penalty measures (see above)."""
    return 1.0 / upscale if spec.gp_gradient == "full_resolution" else 1.0


def class_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Softmax cross-entropy per sample against one-hot labels (official
    tf.nn.softmax_cross_entropy_with_logits_v2), in float32."""
    return -(labels.float() * F.log_softmax(logits.float(), dim=1)).sum(dim=1)


class Loss(ABC):
    """A loss of the spec: `d` and `g` over `Nets` and a batch; `terms` it logs. Each kind
    says its D loss (`_d`, on reals and the fakes drawn for it) and its G loss on the scores of
    fakes (`_g`); the shared steps add the class terms of an auxiliary-classifier D."""

    def __init__(self, spec: LossSpec, conditioning: Conditioning | None = None) -> None:
        self.spec = spec
        self.class_weight = (
            conditioning.weight
            if conditioning is not None and conditioning.discriminator == "acgan"
            else None
        )

    # -- what each loss says --------------------------------------------------------------------
    def _penalty_terms(self) -> tuple[str, ...]:
        return ()

    @abstractmethod
    def _d(self, nets: Nets, b: DBatch, fakes: Tensor) -> tuple[Tensor, Terms, Judged, Judged]:
        """(loss, penalty terms, D on reals, D on fakes)."""

    @abstractmethod
    def _g(self, scores: Tensor) -> Tensor:
        """The G loss on the scores of fakes."""

    # -- the shared steps -----------------------------------------------------------------------
    @property
    def terms(self) -> tuple[str, ...]:
        """What one iteration logs, in order: the losses, mean scores, the penalties, then the
        class terms of a conditional D."""
        extra = CLASS_TERMS if self.class_weight is not None else ()
        return COMMON_TERMS + self._penalty_terms() + extra

    def d(self, nets: Nets, b: DBatch) -> tuple[Tensor, Terms]:
        """The D loss of one step and its detached terms (for logging)."""
        with torch.no_grad():
            fakes = nets.G(b.latents, b.labels)  # the reals' labels (official D_wgangp_acgan)
        loss, terms, real, fake = self._d(nets, b, fakes)
        nets.D.observe(real, fake)
        terms = {"real_score": real.scores.mean(), "fake_score": fake.scores.mean(), **terms}
        if self.class_weight is not None:
            assert b.labels is not None and real.class_logits is not None
            assert fake.class_logits is not None
            ce_real = class_cross_entropy(real.class_logits, b.labels)
            ce_fake = class_cross_entropy(fake.class_logits, b.labels)
            loss = loss + (ce_real + ce_fake).mean() * self.class_weight
            terms |= {"class_real": ce_real.mean(), "class_fake": ce_fake.mean()}
        return loss, {k: v.detach() for k, v in terms.items()}

    def g(self, nets: Nets, b: GBatch) -> Tensor:
        """The G loss of one step (fakes carry G's graph)."""
        judged = nets.D(nets.G(b.latents, b.labels), b.labels)
        loss = self._g(judged.scores.float())
        if self.class_weight is not None:
            assert b.labels is not None and judged.class_logits is not None
            ce = class_cross_entropy(judged.class_logits, b.labels)
            loss = loss + ce.mean() * self.class_weight
        return loss


class WganGp(Loss):
    spec: WganGpLoss

    def _penalty_terms(self) -> tuple[str, ...]:
        return ("gp", "drift")

    def _d(self, nets: Nets, b: DBatch, fakes: Tensor) -> tuple[Tensor, Terms, Judged, Judged]:
        spec = self.spec
        real, fake = nets.D.pair(b.reals, fakes, b.labels)
        # under bf16 autocast G's output is bf16 while reals are float32: mix in the reals' dtype
        mixed = torch.lerp(b.reals, fakes.to(b.reals.dtype), b.mix.to(b.reals.dtype))
        mixed = mixed.detach().requires_grad_(True)
        scores = nets.D(mixed, b.labels).scores  # the penalty on the scores only
        norms = _input_grad(scores, mixed).norm(dim=1) * gradient_norm_scale(spec, b.upscale)
        penalty = (norms - spec.gp_target).square()
        drift = real.scores.square()
        loss = (
            fake.scores.mean()
            - real.scores.mean()
            + spec.gp_lambda / spec.gp_target**2 * penalty.mean()
            + spec.drift * drift.mean()
        )
        return loss, {"gp": penalty.mean(), "drift": drift.mean()}, real, fake

    def _g(self, scores: Tensor) -> Tensor:
        return -scores.mean()


class Lsgan(Loss):
    spec: LsganLoss

    def _d(self, nets: Nets, b: DBatch, fakes: Tensor) -> tuple[Tensor, Terms, Judged, Judged]:
        real, fake = nets.D.pair(b.reals, fakes, b.labels)
        loss = 0.5 * (real.scores - 1).square().mean() + 0.5 * fake.scores.square().mean()
        return loss, {}, real, fake

    def _g(self, scores: Tensor) -> Tensor:
        return 0.5 * (scores - 1).square().mean()


class Logistic(Loss):
    spec: LogisticLoss

    def _penalty_terms(self) -> tuple[str, ...]:
        return ("r1",) if self.spec.r1_gamma > 0 else ()

    def _d(self, nets: Nets, b: DBatch, fakes: Tensor) -> tuple[Tensor, Terms, Judged, Judged]:
        spec = self.spec
        reals = b.reals.detach().requires_grad_(spec.r1_gamma > 0)
        real = nets.D(reals, b.labels)  # its own call: R1 differentiates it twice
        fake = nets.D(fakes, b.labels)
        loss = F.softplus(fake.scores).mean() + F.softplus(-real.scores).mean()
        terms: Terms = {}
        if spec.r1_gamma > 0:
            r1 = _input_grad(real.scores, reals).square().sum(dim=1)
            loss = loss + spec.r1_gamma / 2 * r1.mean()
            terms["r1"] = r1.mean()
        return loss, terms, real, fake

    def _g(self, scores: Tensor) -> Tensor:
        return F.softplus(-scores).mean()


LOSSES: dict[str, type[Loss]] = {"wgan_gp": WganGp, "lsgan": Lsgan, "logistic": Logistic}


def make_loss(spec: LossSpec, conditioning: Conditioning | None = None) -> Loss:
    """The loss object of the spec's `training.loss` (and `architecture.conditioning`)."""
    return LOSSES[spec.kind](spec, conditioning)


def stat_names(spec: LossSpec, conditioning: Conditioning | None = None) -> tuple[str, ...]:
    """What one iteration logs, in order (`Loss.terms`)."""
    return make_loss(spec, conditioning).terms


__all__ = [
    "CLASS_TERMS",
    "LOSSES",
    "Critic",
    "DBatch",
    "GBatch",
    "Judged",
    "Loss",
    "Nets",
    "class_cross_entropy",
    "gradient_norm_scale",
    "make_loss",
    "stat_names",
]
