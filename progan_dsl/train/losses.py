"""GAN losses named by the spec's `training.loss.kind`, as per-batch means, and their registry.

- `wgan_gp` (paper Appendix A; official loss.py D_wgangp_acgan / G_wgan_acgan):
  D: E[D(fake)] - E[D(real)] + lambda / target^2 * E[(|grad| - target)^2] + drift * E[D(real)^2];
  G: -E[D(fake)]. `grad` is the gradient of D at random mixes of reals and fakes. By default
  (`gp_gradient: full_resolution`) it is taken, as in the official code, with respect to the
  mixed image nearest-upscaled to the final resolution: the official networks always run at full
  size and see lower levels upscaled. Upscaling by f copies each pixel f^2 times and D's first
  step averages them back, so that gradient is the native one spread over f^2 pixels, each / f^2:
  its norm is |grad_native| / f. It is computed that way (exactly, without running D at full
  size). `gp_gradient: native` penalises |grad_native| itself (target 1 at every resolution).
- `lsgan` (Mao et al.; the paper's Section 6.1 also trains with it):
  D: 1/2 E[(D(real) - 1)^2] + 1/2 E[D(fake)^2];   G: 1/2 E[(D(fake) - 1)^2].
- `logistic` (non-saturating, with the R1 penalty of Mescheder et al. on reals):
  D: E[softplus(D(fake))] + E[softplus(-D(real))] + gamma / 2 * E[|grad D(real)|^2];
  G: E[softplus(-D(fake))].

`D` here is any callable image batch -> scores [N, 1] (the trainer passes the discriminator with
alpha bound and its minibatch-stddev group layout applied). Every term is a mean over this
process's share of the batch, so averaging gradients over equal shares gives the global mean.
Penalties are computed in float32 even under autocast. Each loss declares the terms it logs
(`LOSSES[kind].terms(spec)`), so logs, plots and progress never list them by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from progan_dsl.spec.models import LogisticLoss, LsganLoss, WganGpLoss

LossSpec = WganGpLoss | LsganLoss | LogisticLoss
Critic = Callable[[Tensor], Tensor]
Terms = dict[str, Tensor]
COMMON_TERMS = ("loss_D", "loss_G", "real_score", "fake_score")


@dataclass(frozen=True)
class Batch:
    """What one D step sees."""

    reals: Tensor  # [N, C, H, W]
    fakes: Tensor  # [N, C, H, W], detached from G
    mix: Tensor  # [N, 1, 1, 1] uniform in [0, 1): WGAN-GP interpolation weights
    upscale: int = 1  # final resolution / current resolution (for gp_gradient: full_resolution)


def _input_grad(scores: Tensor, images: Tensor) -> Tensor:
    """d(sum of scores) / d(images), kept in the graph (the penalty is differentiated again)."""
    (grad,) = torch.autograd.grad(scores.sum(), images, create_graph=True)
    return grad.float().flatten(1)  # [N, C*H*W]


def gradient_norm_scale(spec: WganGpLoss, upscale: int) -> float:
    """Factor from the native gradient norm to the one the penalty measures (see above)."""
    return 1.0 / upscale if spec.gp_gradient == "full_resolution" else 1.0


def _wgan_gp_d(spec: WganGpLoss, D: Critic, b: Batch) -> tuple[Tensor, Terms]:
    real_scores = D(b.reals).float()
    fake_scores = D(b.fakes).float()
    # under bf16 autocast G's output is bf16 while reals are float32: mix in the reals' dtype
    fakes = b.fakes.to(b.reals.dtype)
    mixed = torch.lerp(b.reals, fakes, b.mix.to(b.reals.dtype)).detach().requires_grad_(True)
    norms = _input_grad(D(mixed), mixed).norm(dim=1) * gradient_norm_scale(spec, b.upscale)
    penalty = (norms - spec.gp_target).square()
    drift = real_scores.square()
    loss = (
        fake_scores.mean()
        - real_scores.mean()
        + spec.gp_lambda / spec.gp_target**2 * penalty.mean()
        + spec.drift * drift.mean()
    )
    return loss, {
        "real_score": real_scores.mean(),
        "fake_score": fake_scores.mean(),
        "gp": penalty.mean(),
        "drift": drift.mean(),
    }


def _lsgan_d(spec: LsganLoss, D: Critic, b: Batch) -> tuple[Tensor, Terms]:
    real_scores = D(b.reals).float()
    fake_scores = D(b.fakes).float()
    loss = 0.5 * (real_scores - 1).square().mean() + 0.5 * fake_scores.square().mean()
    return loss, {"real_score": real_scores.mean(), "fake_score": fake_scores.mean()}


def _logistic_d(spec: LogisticLoss, D: Critic, b: Batch) -> tuple[Tensor, Terms]:
    reals = b.reals.detach().requires_grad_(spec.r1_gamma > 0)
    real_scores = D(reals).float()
    fake_scores = D(b.fakes).float()
    loss = F.softplus(fake_scores).mean() + F.softplus(-real_scores).mean()
    terms = {"real_score": real_scores.mean(), "fake_score": fake_scores.mean()}
    if spec.r1_gamma > 0:
        r1 = _input_grad(real_scores, reals).square().sum(dim=1)
        loss = loss + spec.r1_gamma / 2 * r1.mean()
        terms["r1"] = r1.mean()
    return loss, terms


@dataclass(frozen=True)
class LossKind:
    """A registered loss: the D loss with its logged terms, the G loss, and the term names."""

    d: Callable[..., tuple[Tensor, Terms]]
    g: Callable[[Tensor], Tensor]  # scores of fakes -> G loss
    extra_terms: Callable[..., tuple[str, ...]]  # spec -> names of the penalties it logs


LOSSES: dict[str, LossKind] = {
    "wgan_gp": LossKind(_wgan_gp_d, lambda s: -s.mean(), lambda spec: ("gp", "drift")),
    "lsgan": LossKind(_lsgan_d, lambda s: 0.5 * (s - 1).square().mean(), lambda spec: ()),
    "logistic": LossKind(
        _logistic_d,
        lambda s: F.softplus(-s).mean(),
        lambda spec: ("r1",) if spec.r1_gamma > 0 else (),
    ),
}


def stat_names(spec: LossSpec) -> tuple[str, ...]:
    """What one iteration logs, in order: the losses, mean scores, then the loss's penalties."""
    return COMMON_TERMS + LOSSES[spec.kind].extra_terms(spec)


def d_loss(spec: LossSpec, D: Critic, batch: Batch) -> tuple[Tensor, Terms]:
    """Discriminator loss and its detached terms (for logging)."""
    loss, terms = LOSSES[spec.kind].d(spec, D, batch)
    return loss, {k: v.detach() for k, v in terms.items()}


def g_loss(spec: LossSpec, D: Critic, fakes: Tensor) -> Tensor:
    """Generator loss on fakes that carry G's graph."""
    return LOSSES[spec.kind].g(D(fakes).float())


__all__ = ["LOSSES", "Batch", "LossKind", "d_loss", "g_loss", "gradient_norm_scale", "stat_names"]
