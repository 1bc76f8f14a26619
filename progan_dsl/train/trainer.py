"""The `Trainer`: G, D, G EMA and their optimizers at one point of the schedule, and the steps
that move them on.

Owns what one iteration computes (paper Appendix A, official train.py): `d_repeats` D steps,
each on a fresh global minibatch of reals (faded like the generator during a fade-in) and fakes,
then one G step and the G EMA update; growing the networks when a phase starts (weights and the
EMA copy carried over by their stable names, optimizer state reset or kept as the spec says);
and its state (what a checkpoint holds of it is `state.py`). Real images come from a *batch
source*, any callable
`(resolution, global_batch, alpha) -> this rank's share`: the `ImageLoader` in a run, synthetic
images in benchmarks, so both time the same iteration.

Determinism (a resumed run is bitwise the uninterrupted one on CPU):
- all training randomness (latents, WGAN-GP mixing weights) comes from one CPU `torch.Generator`
  whose state is checkpointed; each rank draws the global batch and keeps its slice, so the numbers
  do not depend on the number of processes;
- a stage's fresh modules are initialised from a seed derived from (seed, phase, network), not
  from the global RNG.

Minibatch-stddev groups are contiguous runs of `group_size` samples of the global batch (the D
input is laid out so that the layer's `n % (N / G)` grouping picks them), and each rank holds
whole groups: groups never span ranks, and a multi-process run computes what the one-process run
with the same global batch computes.

CUDA: bf16 autocast when the spec asks for it, fused Adam, gradfix convs (unless
`gradfix=False`). CPU: fp32, stock convs. The fast paths (`fast=FastPaths(...)`: channels_last, D
on reals and fakes in one call, torch.compile; see `progan_dsl.train.fast`) are switches with
per-device defaults, and the inner loop makes no host syncs: statistics stay on the device until
`sync_stats`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from progan_dsl.checkpoint import Checkpoint
from progan_dsl.compiler import Program
from progan_dsl.images import to_uint8
from progan_dsl.nn.layers import use_gradfix
from progan_dsl.spec.models import OptimizerSpec
from progan_dsl.train import distributed as distr
from progan_dsl.train.fast import DevicePaths, FastPaths, group_layout
from progan_dsl.train.losses import Batch, d_loss, g_loss, stat_names
from progan_dsl.train.schedule import Phase, Schedule
from progan_dsl.train.state import checkpoint_of, restore

BatchSource = Callable[[int, int, float], Tensor]  # (resolution, global batch, alpha) -> reals


def derive_seed(seed: int, *words: str | int) -> int:
    """A 63-bit seed for one purpose (module init of a phase, grid latents, ...) of a run seed."""
    entropy = [seed] + [
        w if isinstance(w, int) else int.from_bytes(w.encode(), "little") for w in words
    ]
    return int(np.random.SeedSequence(entropy).generate_state(2, np.uint64)[0] >> np.uint64(1))


def adam(module: nn.Module, lr: float, spec: OptimizerSpec, fused: bool) -> torch.optim.Optimizer:
    """The spec's Adam over `module` (fused kernels on CUDA)."""
    return torch.optim.Adam(
        module.parameters(),
        lr=lr,
        betas=(spec.beta1, spec.beta2),
        eps=spec.eps,
        fused=True if fused else None,
    )


def carry_optimizer_state(
    new_opt: torch.optim.Optimizer, new: nn.Module, old_opt: torch.optim.Optimizer, old: nn.Module
) -> None:
    """Keep Adam's moments for parameters that survive growth (matched by name)."""
    old_params = dict(old.named_parameters())
    for name, param in new.named_parameters():
        old_param = old_params.get(name)
        if old_param is None or old_param.shape != param.shape:
            continue
        state = old_opt.state.get(old_param)
        if state:
            new_opt.state[param] = {k: v.clone() for k, v in state.items()}


@torch.no_grad()
def update_ema(ema: nn.Module, module: nn.Module, weight: float) -> None:
    """ema <- lerp(ema, module, weight) for parameters; buffers copied."""
    for p_ema, p in zip(ema.parameters(), module.parameters(), strict=True):
        p_ema.lerp_(p, weight)
    for b_ema, b in zip(ema.buffers(), module.buffers(), strict=True):
        b_ema.copy_(b)


class Trainer:
    """The networks, optimizers and position of one run, and the steps that advance it."""

    def __init__(
        self,
        program: Program,
        schedule: Schedule,
        env: distr.DistEnv,
        reals: BatchSource,
        seed: int,
        *,
        gradfix: bool | None = None,
        fast: FastPaths | None = None,
    ) -> None:
        self.program = program
        self.training = program.spec.training
        self.schedule = schedule
        self.env = env
        self.device = env.device
        self.reals = reals
        self.seed = seed
        self.gradfix = gradfix  # None: the layer runtime's device default (on for CUDA)
        self.cuda = self.device.type == "cuda"
        self.bf16 = self.cuda and self.training.precision == "bf16"
        self.fast = (fast or FastPaths()).resolve(self.device)  # the switches in force
        self.paths = DevicePaths(self.fast, self.device, self.bf16)
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # shapes are fixed within a phase
        self.group = program.spec.architecture.mbstd_group_size or 1
        self.final_resolution = program.final_stage.resolution
        self.images_shown = 0
        self.phase: Phase | None = None
        self.G: nn.Module | None = None
        self.D: nn.Module | None = None
        self.G_ema: nn.Module | None = None
        self.G_run: Callable[..., Tensor] | None = None  # G, or G compiled (first-order calls)
        self.D_run: Callable[..., Tensor] | None = None
        self.opt_G: torch.optim.Optimizer | None = None
        self.opt_D: torch.optim.Optimizer | None = None
        self.gen = torch.Generator().manual_seed(derive_seed(seed, "train"))
        self.pending: list[Tensor] = []  # per-iteration loss stats not yet synced to the host
        self.stat_names = stat_names(self.training.loss)

    @property
    def alpha(self) -> float:
        """Fade-in weight at the current position (the schedule's, a pure function of it)."""
        assert self.phase is not None
        return self.phase.alpha(self.images_shown)

    # -- modules ---------------------------------------------------------------------------------

    def fresh(self, net: str, phase: Phase) -> nn.Module:
        """A new module of the phase's stage, initialised from a seed of (run seed, phase, net)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, "init", net, phase.index))
            return use_gradfix(self.program.build(net, phase.stage), self.gradfix)

    def install(self, phase: Phase, G: nn.Module, D: nn.Module, G_ema: nn.Module) -> None:
        G, D, G_ema = (self.paths.place(m) for m in (G, D, G_ema))
        G_ema.requires_grad_(False).eval()
        for module in (G, D, G_ema):
            distr.broadcast_module(self.env, module)
        opt_G, opt_D = (
            adam(m, phase.learning_rate, self.training.optimizer, self.cuda) for m in (G, D)
        )
        if not self.training.optimizer.reset_per_phase and self.opt_G is not None:
            assert self.G is not None and self.D is not None and self.opt_D is not None
            carry_optimizer_state(opt_G, G, self.opt_G, self.G)
            carry_optimizer_state(opt_D, D, self.opt_D, self.D)
        self.G, self.D, self.G_ema, self.opt_G, self.opt_D = G, D, G_ema, opt_G, opt_D
        self.G_run, self.D_run = self.paths.runners(G, D)
        self.phase = phase

    def enter_phase(self, phase: Phase) -> None:
        """Build the phase's modules, carrying weights (and the EMA copy) over from the last
        phase."""
        G, D = self.fresh("G", phase), self.fresh("D", phase)
        G_ema = copy.deepcopy(G)  # a new block's EMA starts at its initial weights
        if self.G is not None and self.D is not None and self.G_ema is not None:
            G.load_state_dict(self.G.state_dict(), strict=False)  # new block: missing keys
            D.load_state_dict(self.D.state_dict(), strict=False)
            G_ema.load_state_dict(self.G_ema.state_dict(), strict=False)
        self.install(phase, G, D, G_ema)

    # -- state -----------------------------------------------------------------------------------

    def checkpoint(self, loader_state: dict[str, Any], extra: dict[str, Any]) -> Checkpoint:
        """The complete state at this point as a `Checkpoint` (not yet written; `state.py`)."""
        return checkpoint_of(self, loader_state, extra)

    def restore(self, ckpt: Checkpoint) -> None:
        """Put the trainer where a checkpoint left it (`state.restore`)."""
        restore(self, ckpt)

    # -- one iteration ---------------------------------------------------------------------------

    def _share(self, batch: Tensor) -> Tensor:
        """This rank's contiguous slice of a globally drawn tensor, on the device (no sync)."""
        n = batch.shape[0] // self.env.world_size
        return self.paths.to_device(batch[self.env.rank * n : (self.env.rank + 1) * n])

    def _latents(self, batch: int) -> Tensor:
        size = self.program.spec.architecture.latent_size
        return self._share(torch.randn(batch, size, generator=self.gen))

    def _d_step(self, phase: Phase, sums: dict[str, Tensor]) -> None:
        assert self.G_run is not None and self.D is not None and self.D_run is not None
        assert self.opt_D is not None
        batch = phase.minibatch
        alpha = self.paths.scalar(self.alpha)
        reals = self.reals(phase.resolution, batch, self.alpha)
        z = self._latents(batch)
        mix = self._share(torch.rand(batch, 1, 1, 1, generator=self.gen))
        with torch.no_grad(), self.paths.autocast():
            fakes = self.G_run(z, alpha)
        self.opt_D.zero_grad(set_to_none=True)
        upscale = self.final_resolution // phase.resolution
        with self.paths.autocast():
            critic = self.paths.critic(self.D, self.D_run, alpha, self.group, (reals, fakes))
            loss, terms = d_loss(self.training.loss, critic, Batch(reals, fakes, mix, upscale))
        loss.backward()
        distr.average_gradients(self.env, self.D.parameters())
        self.opt_D.step()
        self.images_shown += batch
        for key, value in {"loss_D": loss.detach(), **terms}.items():
            sums[key] = sums.get(key, 0) + value.float()

    def _g_step(self, phase: Phase) -> Tensor:
        assert self.G is not None and self.G_run is not None and self.D is not None
        assert self.D_run is not None and self.opt_G is not None
        alpha = self.paths.scalar(self.alpha)
        z = self._latents(phase.minibatch)
        self.D.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        with self.paths.autocast():
            critic = self.paths.critic(self.D, self.D_run, alpha, self.group)
            loss = g_loss(self.training.loss, critic, self.G_run(z, alpha))
        loss.backward()
        self.D.requires_grad_(True)
        distr.average_gradients(self.env, self.G.parameters())
        self.opt_G.step()
        return loss.detach().float()

    def iteration(self) -> None:
        """`d_repeats` D steps and one G step at the current position."""
        phase = self.schedule.phase_at(self.images_shown)
        if phase != self.phase:
            self.enter_phase(phase)
        repeats = self.training.d_repeats
        sums: dict[str, Tensor] = {}
        for _ in range(repeats):
            self._d_step(phase, sums)
        sums["loss_G"] = self._g_step(phase) * repeats
        assert self.G is not None and self.G_ema is not None
        ema = self.training.ema
        update_ema(self.G_ema, self.G, 1.0 - ema.decay if ema.enabled else 1.0)  # off: G itself
        self.pending.append(torch.stack([sums[k] for k in self.stat_names]) / repeats)

    def sync_stats(self) -> np.ndarray | None:
        """Per-iteration stats rows since the last sync, averaged over ranks, or None."""
        if not self.pending:
            return None
        stats = distr.average_tensor(self.env, torch.stack(self.pending))
        self.pending.clear()
        return stats.cpu().double().numpy()

    @torch.no_grad()
    def sample(self, z: Tensor, batch: int = 64) -> Tensor:
        """uint8 images of G EMA for the latents `z` (CPU tensor), at the current position."""
        assert self.G_ema is not None
        alpha = self.paths.scalar(self.alpha)
        out = []
        for chunk in z.split(batch):
            with self.paths.autocast():
                images = self.G_ema(chunk.to(self.device), alpha)
            out.append(to_uint8(images).cpu())
        return torch.cat(out)


__all__ = [
    "BatchSource",
    "FastPaths",
    "Trainer",
    "derive_seed",
    "group_layout",
]
