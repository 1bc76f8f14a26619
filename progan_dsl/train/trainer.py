"""The `Trainer`: G, D, G EMA and their optimizers at one point of the schedule, and the steps
that move them on.

Owns what one iteration computes (paper Appendix A, official train.py): `d_repeats` D steps,
each on a fresh global minibatch of reals (faded like the generator during a fade-in) and fakes,
then one G step and the G EMA update; growing the networks when a phase starts (weights and the
EMA copy carried over by their stable names, optimizer state reset or kept as the spec says);
and the complete state a checkpoint holds.

Determinism (a resumed run is bitwise the uninterrupted one on CPU):
- all training randomness (latents, WGAN-GP mixing weights) comes from one CPU `torch.Generator`
  whose state is checkpointed; each rank draws the global batch and keeps its slice, so the numbers
  do not depend on the number of processes;
- a stage's fresh modules are initialised from a seed derived from (seed, phase, network), not
  from the global RNG;
- the real images come from the resumable `ImageLoader`.

Minibatch-stddev groups are contiguous runs of `group_size` samples of the global batch (the D
input is laid out so that the layer's `n % (N / G)` grouping picks them), and each rank holds
whole groups: groups never span ranks, and a multi-process run computes what the one-process run
with the same global batch computes.

CUDA: bf16 autocast when the spec asks for it, channels_last modules and inputs, fused Adam.
CPU: fp32.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from progan_dsl.compiler import Program
from progan_dsl.data.loader import ImageLoader
from progan_dsl.errors import UserError
from progan_dsl.ir import Stage
from progan_dsl.spec.models import WganGpLoss
from progan_dsl.train import distributed as distr
from progan_dsl.train.feedback import to_uint8
from progan_dsl.train.losses import d_loss, g_loss
from progan_dsl.train.schedule import Phase, Schedule


def derive_seed(seed: int, *words: str | int) -> int:
    """A 63-bit seed for one purpose (module init of a phase, grid latents, ...) of a run seed."""
    entropy = [seed] + [w if isinstance(w, int) else int.from_bytes(w.encode(), "little")
                        for w in words]
    return int(np.random.SeedSequence(entropy).generate_state(2, np.uint64)[0] >> np.uint64(1))


def group_layout(x: Tensor, group_size: int) -> Tensor:
    """Reorder a batch so that minibatch-stddev groups are contiguous runs of `group_size` samples.

    The layer groups sample n with n % (N / G); this puts logical sample k*G + i at i*(N/G) + k,
    so group k is samples [k*G, (k+1)*G) of the batch as drawn."""
    n = x.shape[0]
    g = min(group_size, n)
    if g <= 1 or n % g:
        return x
    return x.reshape(n // g, g, *x.shape[1:]).transpose(0, 1).reshape(x.shape)


def mbstd_group_size(program: Program) -> int | None:
    """Group size of D's minibatch-stddev layer (None if D has none)."""
    for layer in program.spec.architecture.discriminator.last_block:
        if getattr(layer, "kind", None) == "minibatch_stddev":
            return int(layer.group_size)  # type: ignore[attr-defined]
    return None


def _numpy_rng_state() -> dict[str, Any]:
    state: Any = np.random.get_state(legacy=True)  # ('MT19937', keys, pos, has_gauss, cached)
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_numpy_rng_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached"]))


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


# ---- the trainer -------------------------------------------------------------------------------


class Trainer:
    """The networks, optimizers and position of one run, and the steps that advance it."""

    def __init__(
        self,
        program: Program,
        schedule: Schedule,
        env: distr.DistEnv,
        loader: ImageLoader,
        seed: int,
    ) -> None:
        self.program = program
        self.spec = program.spec
        self.training = program.spec.training
        self.schedule = schedule
        self.env = env
        self.device = env.device
        self.loader = loader
        self.seed = seed
        self.cuda = self.device.type == "cuda"
        self.bf16 = self.cuda and self.training.precision == "bf16"
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # shapes are fixed within a phase
        self.group = mbstd_group_size(program) or 1
        self.images_shown = 0
        self.phase: Phase | None = None
        self.G: nn.Module | None = None
        self.D: nn.Module | None = None
        self.G_ema: nn.Module | None = None
        self.opt_G: torch.optim.Optimizer | None = None
        self.opt_D: torch.optim.Optimizer | None = None
        self.gen = torch.Generator().manual_seed(derive_seed(seed, "train"))
        self.pending: list[Tensor] = []  # per-iteration loss stats not yet synced to the host
        self.stat_names = self._stat_names()

    # -- modules ---------------------------------------------------------------------------------

    def _fresh(self, net: str, phase: Phase) -> nn.Module:
        """A new module of the phase's stage, initialised from a seed of (run seed, phase, net)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, "init", net, phase.index))
            return self.program.build(net, phase.stage)

    def _place(self, module: nn.Module) -> nn.Module:
        if self.cuda:
            return module.to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        return module.to(self.device)

    def _optimizer(self, module: nn.Module, lr: float) -> torch.optim.Optimizer:
        opt = self.training.optimizer
        return torch.optim.Adam(module.parameters(), lr=lr, betas=(opt.beta1, opt.beta2),
                                eps=opt.eps, fused=True if self.cuda else None)

    @staticmethod
    def _carry_optimizer_state(new_opt: torch.optim.Optimizer, new: nn.Module,
                               old_opt: torch.optim.Optimizer, old: nn.Module) -> None:
        """Keep Adam's moments for parameters that survive growth (matched by name)."""
        old_params = dict(old.named_parameters())
        for name, param in new.named_parameters():
            old_param = old_params.get(name)
            if old_param is None or old_param.shape != param.shape:
                continue
            state = old_opt.state.get(old_param)
            if state:
                new_opt.state[param] = {k: v.clone() for k, v in state.items()}

    def enter_phase(self, phase: Phase) -> None:
        """Build the phase's modules, carrying weights (and the EMA copy) over from the last phase."""
        G, D = self._fresh("G", phase), self._fresh("D", phase)
        if self.G is None or self.D is None or self.G_ema is None:
            G_ema = copy.deepcopy(G)
        else:
            G.load_state_dict(self.G.state_dict(), strict=False)  # new block: missing keys
            D.load_state_dict(self.D.state_dict(), strict=False)
            G_ema = copy.deepcopy(G)  # the new block's EMA starts at its initial weights
            G_ema.load_state_dict(self.G_ema.state_dict(), strict=False)
        G, D, G_ema = self._place(G), self._place(D), self._place(G_ema)
        G_ema.requires_grad_(False).eval()
        distr.broadcast_module(self.env, G)
        distr.broadcast_module(self.env, D)
        distr.broadcast_module(self.env, G_ema)
        opt_G = self._optimizer(G, phase.learning_rate)
        opt_D = self._optimizer(D, phase.learning_rate)
        if not self.training.optimizer.reset_per_phase and self.opt_G is not None:
            assert self.G is not None and self.D is not None and self.opt_D is not None
            self._carry_optimizer_state(opt_G, G, self.opt_G, self.G)
            self._carry_optimizer_state(opt_D, D, self.opt_D, self.D)
        self.G, self.D, self.G_ema, self.opt_G, self.opt_D = G, D, G_ema, opt_G, opt_D
        self.phase = phase

    # -- state -----------------------------------------------------------------------------------

    def state(self, extra: dict[str, Any]) -> dict[str, Any]:
        """The complete checkpoint dict (see `checkpoint.py` for the layout)."""
        assert self.phase is not None and self.G is not None and self.D is not None
        assert self.G_ema is not None and self.opt_G is not None and self.opt_D is not None
        rng: dict[str, Any] = {
            "train": self.gen.get_state(),
            "torch": torch.get_rng_state(),
            "numpy": _numpy_rng_state(),
            "python": random.getstate(),
        }
        if self.cuda:
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "spec_text": self.program.loaded.doc.text,
            "spec_hash": self.program.loaded.hash,
            "spec_path": str(self.program.loaded.path),
            "stage": {"resolution": self.phase.resolution, "phase": self.phase.stage.phase},
            "images_shown": self.images_shown,
            "G": _cpu_state(self.G),
            "D": _cpu_state(self.D),
            "G_ema": _cpu_state(self.G_ema),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "scaler": None,  # bf16 autocast needs no loss scaling
            "rng": rng,
            "loader": self.loader.state_dict(),
            "extra": {"seed": self.seed, "phase_index": self.phase.index,
                      "world_size": self.env.world_size, **extra},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Put the trainer exactly where a checkpoint left it."""
        stage = Stage(int(state["stage"]["resolution"]), state["stage"]["phase"])
        phase = self.schedule.phase_of(stage)
        self.G = self.D = self.G_ema = None
        self.opt_G = self.opt_D = None
        G, D, G_ema = (self._fresh(net, phase) for net in ("G", "D", "G"))
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        G_ema.load_state_dict(state["G_ema"])
        G, D, G_ema = self._place(G), self._place(D), self._place(G_ema)
        G_ema.requires_grad_(False).eval()
        opt_G, opt_D = self._optimizer(G, phase.learning_rate), self._optimizer(D, phase.learning_rate)
        spec_opt = self.training.optimizer
        for opt, key in ((opt_G, "opt_G"), (opt_D, "opt_D")):
            opt.load_state_dict(state[key])
            for group in opt.param_groups:  # hyperparameters from this spec, kernels for here
                group.update(lr=phase.learning_rate, betas=(spec_opt.beta1, spec_opt.beta2),
                             eps=spec_opt.eps, fused=True if self.cuda else None, foreach=None)
        self.G, self.D, self.G_ema, self.opt_G, self.opt_D = G, D, G_ema, opt_G, opt_D
        self.phase = phase
        self.images_shown = int(state["images_shown"])
        rng = state["rng"]
        self.gen.set_state(rng["train"])
        torch.set_rng_state(rng["torch"])
        _set_numpy_rng_state(rng["numpy"])
        random.setstate(rng["python"])
        if self.cuda and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        try:
            self.loader.load_state_dict(state["loader"])
        except ValueError as err:
            raise UserError(f"{state.get('path', 'checkpoint')}: its data loader state does not "
                            f"fit dataset {self.loader.dataset.path}: {err}") from None
        self.pending.clear()

    # -- one iteration ---------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _share(self, batch: Tensor) -> Tensor:
        """This rank's contiguous slice of a globally drawn tensor, on the device."""
        n = batch.shape[0] // self.env.world_size
        return batch[self.env.rank * n:(self.env.rank + 1) * n].to(self.device, non_blocking=True)

    def _latents(self, batch: int) -> Tensor:
        return self._share(torch.randn(batch, self.spec.architecture.latent_size, generator=self.gen))

    def _critic(self, alpha: Tensor) -> Callable[[Tensor], Tensor]:
        D, fading, group = self.D, self.phase is not None and self.phase.fading, self.group
        assert D is not None

        def critic(images: Tensor) -> Tensor:
            images = group_layout(images, group)
            if self.cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            return D(images, alpha) if fading else D(images)

        return critic

    def _generate(self, G: nn.Module, z: Tensor, alpha: Tensor) -> Tensor:
        assert self.phase is not None
        return G(z, alpha) if self.phase.fading else G(z)

    def _stat_names(self) -> list[str]:
        loss = self.training.loss
        extra = ["gp", "drift"] if isinstance(loss, WganGpLoss) else (
            ["r1"] if getattr(loss, "r1_gamma", 0) > 0 else [])
        return ["loss_D", "loss_G", "real_score", "fake_score", *extra]

    def iteration(self) -> None:
        """`d_repeats` D steps and one G step at the current position."""
        phase = self.schedule.phase_at(self.images_shown)
        if phase != self.phase:
            self.enter_phase(phase)
        G, D, G_ema, opt_G, opt_D = self.G, self.D, self.G_ema, self.opt_G, self.opt_D
        assert G is not None and D is not None and G_ema is not None
        assert opt_G is not None and opt_D is not None
        loss_spec = self.training.loss
        batch = phase.minibatch
        d_sums: dict[str, Tensor] = {}
        for _ in range(self.training.d_repeats):
            alpha_value = phase.alpha(self.images_shown)
            alpha = torch.tensor(alpha_value, device=self.device)
            reals = self.loader.next_batch(phase.resolution, batch, alpha_value)
            z = self._latents(batch)
            mix = self._share(torch.rand(batch, 1, 1, 1, generator=self.gen))
            with torch.no_grad(), self._autocast():
                fakes = self._generate(G, z, alpha)
            opt_D.zero_grad(set_to_none=True)
            with self._autocast():
                loss, terms = d_loss(loss_spec, self._critic(alpha), reals, fakes, mix)
            loss.backward()
            distr.average_gradients(self.env, D.parameters())
            opt_D.step()
            self.images_shown += batch
            for key, value in {"loss_D": loss.detach(), **terms}.items():
                d_sums[key] = d_sums.get(key, 0) + value.float()
        alpha = torch.tensor(phase.alpha(self.images_shown), device=self.device)
        z = self._latents(batch)
        D.requires_grad_(False)
        opt_G.zero_grad(set_to_none=True)
        with self._autocast():
            loss_G = g_loss(loss_spec, self._critic(alpha), self._generate(G, z, alpha))
        loss_G.backward()
        D.requires_grad_(True)
        distr.average_gradients(self.env, G.parameters())
        opt_G.step()
        self._update_ema()
        d_sums["loss_G"] = loss_G.detach().float() * self.training.d_repeats
        self.pending.append(torch.stack([d_sums[k] for k in self.stat_names]) / self.training.d_repeats)

    @torch.no_grad()
    def _update_ema(self) -> None:
        assert self.G is not None and self.G_ema is not None
        ema = self.training.ema
        weight = 1.0 - ema.decay if ema.enabled else 1.0  # disabled: the "EMA" copy is G itself
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            p_ema.lerp_(p, weight)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)

    def sync_stats(self) -> tuple[np.ndarray, int] | None:
        """Per-iteration stats since the last sync, averaged over ranks: (rows, count), or None."""
        if not self.pending:
            return None
        stats = distr.average_tensor(self.env, torch.stack(self.pending))
        self.pending.clear()
        return stats.cpu().double().numpy(), stats.shape[0]

    @torch.no_grad()
    def sample(self, z: Tensor, alpha: float | None = None, batch: int = 64) -> Tensor:
        """uint8 images of G EMA for the latents `z` (CPU tensor), at the current stage."""
        assert self.G_ema is not None and self.phase is not None
        a = torch.tensor(self.phase.alpha(self.images_shown) if alpha is None else alpha,
                         device=self.device)
        out = []
        for chunk in z.split(batch):
            with self._autocast():
                images = self._generate(self.G_ema, chunk.to(self.device), a)
            out.append(to_uint8(images).cpu())
        return torch.cat(out)
