"""GAN losses named by the spec's `training.loss.kind`, as per-batch means.

- `wgan_gp` (paper Appendix A, official `loss.py` D_wgangp_acgan / G_wgan_acgan):
  D: E[D(fake)] - E[D(real)] + lambda / target^2 * E[(|grad D(mix)| - target)^2]
     + drift * E[D(real)^2];   G: -E[D(fake)].
- `lsgan` (Mao et al.; the paper's Section 6.1 also trains with it):
  D: 1/2 E[(D(real) - 1)^2] + 1/2 E[D(fake)^2];   G: 1/2 E[(D(fake) - 1)^2].
- `logistic` (non-saturating, with the R1 penalty of Mescheder et al. on reals):
  D: E[softplus(D(fake))] + E[softplus(-D(real))] + gamma / 2 * E[|grad D(real)|^2];
  G: E[softplus(-D(fake))].

`D` here is any callable image batch -> scores [N, 1] (the trainer passes the discriminator with
alpha bound and its minibatch-stddev group layout applied). Every term is a mean over this
process's share of the batch, so averaging gradients over equal shares gives the global mean.
Penalties are computed in float32 even under autocast.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from progan_dsl.spec.models import LogisticLoss, LsganLoss, WganGpLoss

LossSpec = WganGpLoss | LsganLoss | LogisticLoss
Critic = Callable[[Tensor], Tensor]


def _input_grad(scores: Tensor, images: Tensor) -> Tensor:
    """d(sum of scores) / d(images), kept in the graph (the penalty is differentiated again)."""
    (grad,) = torch.autograd.grad(scores.sum(), images, create_graph=True)
    return grad.float().flatten(1)  # [N, C*H*W]


def d_loss(
    spec: LossSpec,
    D: Critic,
    reals: Tensor,  # [N, C, H, W]
    fakes: Tensor,  # [N, C, H, W], detached from G
    mix: Tensor,  # [N, 1, 1, 1] uniform in [0, 1): interpolation weights for WGAN-GP
) -> tuple[Tensor, dict[str, Tensor]]:
    """Discriminator loss and its detached terms (for logging)."""
    if isinstance(spec, WganGpLoss):
        real_scores = D(reals).float()
        fake_scores = D(fakes).float()
        # under bf16 autocast G's output is bf16 while reals are float32: mix in the reals' dtype
        fakes_like = fakes.to(reals.dtype)
        mixed = torch.lerp(reals, fakes_like, mix.to(reals.dtype)).detach().requires_grad_(True)
        norms = _input_grad(D(mixed), mixed).norm(dim=1)
        penalty = (norms - spec.gp_target).square()
        drift = real_scores.square()
        loss = (fake_scores.mean() - real_scores.mean()
                + spec.gp_lambda / spec.gp_target**2 * penalty.mean()
                + spec.drift * drift.mean())
        terms = {"gp": penalty.mean(), "drift": drift.mean()}
    elif isinstance(spec, LsganLoss):
        real_scores = D(reals).float()
        fake_scores = D(fakes).float()
        loss = 0.5 * (real_scores - 1).square().mean() + 0.5 * fake_scores.square().mean()
        terms = {}
    else:
        reals = reals.detach().requires_grad_(spec.r1_gamma > 0)
        real_scores = D(reals).float()
        fake_scores = D(fakes).float()
        loss = F.softplus(fake_scores).mean() + F.softplus(-real_scores).mean()
        terms = {}
        if spec.r1_gamma > 0:
            r1 = _input_grad(real_scores, reals).square().sum(dim=1)
            loss = loss + spec.r1_gamma / 2 * r1.mean()
            terms["r1"] = r1.mean()
    terms.update(real_score=real_scores.mean(), fake_score=fake_scores.mean())
    return loss, {k: v.detach() for k, v in terms.items()}


def g_loss(spec: LossSpec, D: Critic, fakes: Tensor) -> Tensor:
    """Generator loss on fakes that carry G's graph."""
    scores = D(fakes).float()
    if isinstance(spec, WganGpLoss):
        return -scores.mean()
    if isinstance(spec, LsganLoss):
        return 0.5 * (scores - 1).square().mean()
    return F.softplus(-scores).mean()
