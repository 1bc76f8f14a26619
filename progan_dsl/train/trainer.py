"""The `Trainer`: G, D, G EMA and their optimizers at one point of the schedule, and the steps
that move them on.

Owns what one iteration computes (paper Appendix A, official train.py): `d_repeats` D steps,
each on a fresh global minibatch of reals (faded like the generator during a fade-in) and fakes,
then one G step and the G EMA update; growing the networks when a phase starts (weights and the
EMA copy carried over by their stable names, optimizer state reset or kept as the spec says);
and its state: it writes its own checkpoint and restores itself from one (`state.py` has the
RNG and optimizer-state functions it uses). Real images come from a *batch source*, any callable
`(resolution, global_batch, alpha) -> this rank's share` (images, or `Reals` with labels): the
`ImageLoader` in a run, synthetic images in benchmarks, so both time the same iteration. The
networks are called through their signatures (`Program.signature`), never by position.

Determinism (a resumed run is bitwise the uninterrupted one on CPU):
- all training randomness (latents, WGAN-GP mixing weights, G's labels, the augmentation's
  parameters) comes from one CPU `torch.Generator` whose state is checkpointed (`Draws`); each
  rank draws the global batch and keeps its slice, so the numbers do not depend on the number of
  processes; an adaptive augmentation's p and heuristic sums are run state (`Augmenter`);
- the schedule is read through a `Cursor`, held over `minibatch_repeats` iterations, whose
  position is part of the run state;
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

from progan_dsl.checkpoint import Checkpoint, RunState, TrainingState
from progan_dsl.compiler import Program
from progan_dsl.images import to_uint8
from progan_dsl.nn.layers import use_gradfix
from progan_dsl.spec.models import OptimizerSpec
from progan_dsl.train import distributed as distr
from progan_dsl.train.augmenter import Augmenter
from progan_dsl.train.draws import Draws
from progan_dsl.train.fast import DevicePaths, FastPaths, group_layout
from progan_dsl.train.losses import DBatch, GBatch, Nets, make_loss
from progan_dsl.train.schedule import Cursor, Phase, Schedule
from progan_dsl.train.state import load_optimizer_state, rng_state, set_rng_state

# (resolution, global batch, alpha) -> this rank's reals: an image tensor, or an object with
# `images` and `labels` (one-hot, or None) such as the loader's `Reals`
BatchSource = Callable[[int, int, float], Any]


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
        label_counts: np.ndarray | None = None,
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
        self.cursor = Cursor(self.training.minibatch_repeats)
        self.phase: Phase | None = None
        self.G: nn.Module | None = None
        self.D: nn.Module | None = None
        self.G_ema: nn.Module | None = None
        self.G_run: Callable[..., Tensor] | None = None  # G, or G compiled (first-order calls)
        self.D_run: Callable[..., Tensor] | None = None
        self.opt_G: torch.optim.Optimizer | None = None
        self.opt_D: torch.optim.Optimizer | None = None
        self.num_classes = program.num_classes
        if self.num_classes and (label_counts is None or len(label_counts) != self.num_classes):
            raise ValueError(
                f"a conditional trainer needs the counts of {self.num_classes} classes"
            )
        self.draws = Draws(
            derive_seed(seed, "train"),
            env.rank,
            env.world_size,
            self.paths.to_device,
            label_counts if self.num_classes else None,
        )
        self.pending: list[Tensor] = []  # per-iteration loss stats not yet synced to the host
        self.loss = make_loss(self.training.loss, program.spec.architecture.conditioning)
        augment = self.training.augment
        self.augment = None if augment is None else Augmenter(augment, self.draws, env, self.device)
        self.stat_names = self.loss.terms + (self.augment.terms if self.augment else ())
        self.sig_G, self.sig_D = program.signature("G"), program.signature("D")

    @property
    def images_shown(self) -> int:
        return self.cursor.images

    def seek(self, images_shown: int) -> None:
        """Move to a point of the schedule (tests and benchmarks: check or time one point
        without training up to it)."""
        self.cursor.seek(images_shown)

    @property
    def alpha(self) -> float:
        """Fade-in weight of the current group of iterations (read at the cursor's `held`)."""
        assert self.phase is not None
        return self.phase.alpha(self.cursor.held)

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

    def checkpoint(
        self,
        loader_state: dict[str, Any],
        *,
        kimg: float | None = None,
        data: str | None = None,
        run: str | None = None,
        elapsed_s: float = 0.0,
        tick_window: list[list[float]] | None = None,
    ) -> Checkpoint:
        """The complete state at this point as a `Checkpoint` (not yet written): weights of G, D
        and G EMA, both optimizers, every RNG, the loader's position and the run state."""
        assert self.phase is not None and self.G is not None and self.D is not None
        assert self.G_ema is not None and self.opt_G is not None and self.opt_D is not None
        training = TrainingState(
            opt_G=self.opt_G.state_dict(),
            opt_D=self.opt_D.state_dict(),
            rng=rng_state(self.draws.gen, self.device),
            loader=loader_state,
        )
        state = RunState(
            seed=self.seed,
            world_size=self.env.world_size,
            phase_index=self.phase.index,
            held_images=self.cursor.held,
            repeat=self.cursor.repeat,
            kimg=kimg,
            data=data,
            run=run,
            elapsed_s=elapsed_s,
            tick_window=tuple(tuple(row) for row in tick_window or ()),
            **(self.augment.state() if self.augment else {}),
        )
        return Checkpoint.from_weights(
            self.program.loaded,
            self.phase.stage,
            G=self.G.state_dict(),
            D=self.D.state_dict(),
            G_ema=self.G_ema.state_dict(),
            images_shown=self.images_shown,
            training=training,
            run_state=state,
        )

    def restore(self, ckpt: Checkpoint) -> None:
        """Put the trainer where a checkpoint left it: exactly when the file holds the training
        state; at the start of its stage's phase with fresh optimizers when it holds weights only
        (e.g. an imported network)."""
        phase = self.schedule.phase_of(ckpt.stage)
        self.G = self.D = self.G_ema = None
        self.opt_G = self.opt_D = None
        G, D, G_ema = (self.fresh(net, phase) for net in ("G", "D", "G"))
        G.load_state_dict(ckpt.G)
        G_ema.load_state_dict(ckpt.G_ema)
        if ckpt.D is not None:
            D.load_state_dict(ckpt.D)
        self.install(phase, G, D, G_ema)
        self.pending.clear()
        if ckpt.training is None or ckpt.D is None:
            self.cursor.seek(phase.start)
            return
        state = ckpt.run_state
        if state is not None:
            self.cursor.seek(ckpt.images_shown, state.held_images, state.repeat)
        else:
            self.cursor.seek(ckpt.images_shown)
        spec_opt = self.training.optimizer  # hyperparameters from this spec, kernels for here
        hyper = {
            "lr": phase.learning_rate,
            "betas": (spec_opt.beta1, spec_opt.beta2),
            "eps": spec_opt.eps,
            "fused": True if self.cuda else None,
            "foreach": None,
        }
        for opt, state in ((self.opt_G, ckpt.training.opt_G), (self.opt_D, ckpt.training.opt_D)):
            assert opt is not None
            load_optimizer_state(opt, state, ckpt.path, hyper)
        set_rng_state(ckpt.training.rng, self.draws.gen, self.device, ckpt.path)
        run_state = ckpt.run_state
        if self.augment is not None and run_state is not None and run_state.augment_p is not None:
            self.augment.restore(run_state.to_dict())

    # -- one iteration ---------------------------------------------------------------------------

    def _real_batch(self, phase: Phase) -> tuple[Tensor, Tensor | None]:
        got = self.reals(phase.resolution, phase.minibatch, self.alpha)
        images, labels = (got, None) if isinstance(got, Tensor) else (got.images, got.labels)
        if self.num_classes and labels is None:
            raise ValueError("a conditional trainer needs a batch source with labels")
        return images, labels if self.num_classes else None

    def nets(self, alpha: Tensor) -> Nets:
        """G and D at the current stage as the loss calls them (arguments bound by role)."""
        assert self.G_run is not None and self.D is not None and self.D_run is not None
        return Nets(
            G=self.paths.generator(self.G_run, self.sig_G, alpha),
            D=self.paths.critic(self.D, self.D_run, self.sig_D, alpha, self.group, self.augment),
        )

    def _d_step(self, phase: Phase, sums: dict[str, Tensor]) -> None:
        assert self.D is not None and self.opt_D is not None
        batch = phase.minibatch
        alpha = self.paths.scalar(self.alpha)
        reals, labels = self._real_batch(phase)
        z = self.draws.latents(batch, self.program.spec.architecture.latent_size)
        mix = self.draws.mix(batch)
        self.opt_D.zero_grad(set_to_none=True)
        upscale = self.final_resolution // phase.resolution
        with self.paths.autocast():
            loss, terms = self.loss.d(self.nets(alpha), DBatch(reals, labels, z, mix, upscale))
        loss.backward()
        distr.average_gradients(self.env, self.D.parameters())
        self.opt_D.step()
        if self.augment is not None:
            self.augment.step(batch)
        for key, value in {"loss_D": loss.detach(), **terms}.items():
            sums[key] = sums.get(key, 0) + value.float()

    def _g_step(self, phase: Phase) -> Tensor:
        assert self.G is not None and self.D is not None and self.opt_G is not None
        alpha = self.paths.scalar(self.alpha)
        z = self.draws.latents(phase.minibatch, self.program.spec.architecture.latent_size)
        labels = self.draws.labels(phase.minibatch)
        self.D.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        with self.paths.autocast():
            loss = self.loss.g(self.nets(alpha), GBatch(z, labels))
        loss.backward()
        self.D.requires_grad_(True)
        distr.average_gradients(self.env, self.G.parameters())
        self.opt_G.step()
        return loss.detach().float()

    def _update_ema(self) -> None:
        assert self.G is not None and self.G_ema is not None
        ema = self.training.ema
        update_ema(self.G_ema, self.G, 1.0 - ema.decay if ema.enabled else 1.0)  # off: G itself

    def iteration(self) -> None:
        """`d_repeats` D steps and one G step at the cursor's point of the schedule. G EMA
        follows each D step (official: Gs_update_op runs with D_train_op, from G before its
        step) or the G step (`ema.update`)."""
        phase = self.schedule.phase_at(self.cursor.begin())
        if phase != self.phase:
            self.enter_phase(phase)
        d_repeats = self.training.d_repeats
        per_d_step = self.training.ema.update == "d_step"
        sums: dict[str, Tensor] = {}
        for _ in range(d_repeats):
            self._d_step(phase, sums)
            if per_d_step:
                self._update_ema()
        sums["loss_G"] = self._g_step(phase) * d_repeats
        if not per_d_step:
            self._update_ema()
        self.cursor.end(d_repeats * phase.minibatch)
        row = [sums[k] / d_repeats for k in self.loss.terms]
        self.pending.append(torch.stack(row + (self.augment.stats() if self.augment else [])))

    def sync_stats(self) -> np.ndarray | None:
        """Per-iteration stats rows since the last sync, averaged over ranks, or None."""
        if not self.pending:
            return None
        stats = distr.average_tensor(self.env, torch.stack(self.pending))
        self.pending.clear()
        return stats.cpu().double().numpy()

    @torch.no_grad()
    def sample(self, z: Tensor, labels: Tensor | None = None, batch: int = 64) -> Tensor:
        """uint8 images of G EMA for the latents `z` (and one-hot `labels` of a conditional
        spec; CPU tensors), at the current position."""
        assert self.G_ema is not None
        if self.num_classes and labels is None:
            raise ValueError("a conditional generator samples with labels")
        G = self.paths.generator(self.G_ema, self.sig_G, self.paths.scalar(self.alpha))
        ys = labels.split(batch) if labels is not None else [None] * len(z.split(batch))
        out = []
        for chunk, y in zip(z.split(batch), ys, strict=True):
            with self.paths.autocast():
                images = G(chunk.to(self.device), None if y is None else y.to(self.device))
            out.append(to_uint8(images).cpu())
        return torch.cat(out)


__all__ = [
    "BatchSource",
    "FastPaths",
    "Trainer",
    "derive_seed",
    "group_layout",
]
