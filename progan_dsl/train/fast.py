"""Fast paths of the training iteration: each one a switch with a per-device default (`DEFAULTS`,
chosen from measurements), each computing what the plain path computes up to rounding.

Owns `FastPaths` (what a caller asks for: each switch True, False, or None for the device's
default; `resolve` gives the switches in force), `DevicePaths` (the switches applied: placement,
autocast, compiled callables, sync-free device scalars and copies) and `DeviceCritic` (D as the
losses call it: alpha bound, minibatch-stddev group layout, memory format, reals and fakes
paired, every batch augmented first when the run augments: `progan_dsl.train.augmenter`).

- `channels_last`: modules and D inputs in NHWC. CUDA: on (cuDNN's tensor-core kernels want it).
  CPU: off (measured 0.96x per iteration at 64x64, one thread, torch 2.13: docs/benchmarks.md).
- `paired_critic`: D on reals and fakes in one batched call instead of two, where the
  minibatch-stddev groups allow it (`pairable`): the pair is laid out so that groups never mix
  reals and fakes and hold the samples the two calls would group, so the numbers are those of two
  calls up to rounding. CUDA: on (half the launches of those calls). CPU: off for now although
  measured 1.09x there: its sums run in another order, so a 1-process and a 2-process run no
  longer agree bitwise on gradients whose terms cancel (tests/train/test_train_distributed.py
  holds them to 1e-4 of each tensor's largest element), and the CPU path stays the reference.
- `compile`: `torch.compile` of G (every call) and of D's first-order calls (scores of reals and
  fakes, the G step). The gradient penalty's D call (an input that requires grad, differentiated
  twice) always runs eagerly: AOTAutograd refuses double backward ("torch.compile with
  aot_autograd does not currently support double backward", torch 2.11-2.13), so a compiled D
  cannot serve it (torch 2.13; the device check runs 2.11). Off by default: on a CPU compiling
  took 70-90 s per phase at 64x64 and the iteration ran at 1.02x; on CUDA it is unproven until
  the device check (benchmarks/gpu) measures it.
- no host syncs (not a switch: the sync-free forms compute the same numbers): alpha is a device
  scalar filled by a kernel (`torch.full`, not a host->device copy that waits), latents and mixing
  weights drawn on the CPU generator go to the GPU from pinned memory without blocking, and loss
  statistics stay on the device until `Trainer.sync_stats`.

bf16 autocast (the spec's `training.precision`), fused Adam and gradfix convs are the Trainer's
own device policy (`Trainer(gradfix=...)`), not switches here.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from progan_dsl.ir.types import PortRole, Signature
from progan_dsl.train import losses
from progan_dsl.train.losses import Judged

if TYPE_CHECKING:
    from progan_dsl.train.augmenter import Augmenter

# Per-device defaults of the switches left None (measured: docs/benchmarks.md).
DEFAULTS: dict[str, dict[str, bool]] = {
    "cuda": {"channels_last": True, "paired_critic": True, "compile": False},
    "cpu": {"channels_last": False, "paired_critic": False, "compile": False},
}
COMPILE_BACKEND = "inductor"  # torch.compile's default; tests use "aot_eager" (no C++ compiler)
SWITCHES = ("channels_last", "paired_critic", "compile")


@dataclass(frozen=True)
class FastPaths:
    """Which fast paths to use: True, False, or None for the device default (`DEFAULTS`)."""

    channels_last: bool | None = None
    paired_critic: bool | None = None
    compile: bool | None = None
    compile_backend: str = COMPILE_BACKEND

    @classmethod
    def plain(cls) -> FastPaths:
        """Every switch off: the reference path the fast ones are compared with."""
        return cls(channels_last=False, paired_critic=False, compile=False)

    def resolve(self, device: torch.device) -> FastPaths:
        """These switches with every None replaced by `device`'s default."""
        defaults = DEFAULTS.get(device.type, DEFAULTS["cpu"])
        chosen = {
            name: defaults[name] if getattr(self, name) is None else getattr(self, name)
            for name in SWITCHES
        }
        return dataclasses.replace(self, **chosen)

    def describe(self) -> str:
        """'channels_last, paired_critic' (the switches on), or 'none'."""
        on = [name for name in SWITCHES if getattr(self, name)]
        if self.compile and self.compile_backend != COMPILE_BACKEND:
            on[on.index("compile")] = f"compile({self.compile_backend})"
        return ", ".join(on) or "none"


def group_layout(x: Tensor, group_size: int) -> Tensor:
    """Reorder a batch so that minibatch-stddev groups are contiguous runs of `group_size` samples.

    The layer groups sample n with n % (N / G); this puts logical sample k*G + i at i*(N/G) + k,
    so group k is samples [k*G, (k+1)*G) of the batch as drawn."""
    n = x.shape[0]
    g = min(group_size, n)
    if g <= 1 or n % g:
        return x
    return x.reshape(n // g, g, *x.shape[1:]).transpose(0, 1).reshape(x.shape)


def pairable(batch: int, group_size: int) -> bool:
    """Whether D can score `batch` reals and `batch` fakes in one call of 2 * batch with the same
    minibatch-stddev groups as two calls: whole groups of `group_size` on each side (a batch
    smaller than a group is one group of its own, which a joint call would mix)."""
    return group_size <= 1 or (batch >= group_size and batch % group_size == 0)


def split_pair(scores: Tensor, batch: int, group_size: int) -> tuple[Tensor, Tensor]:
    """Reals' and fakes' scores of a joint call on `group_layout(cat([reals, fakes]))`, each in
    the order a call on that side alone returns (so their means sum in the same order)."""
    g = min(group_size, 2 * batch) if group_size > 1 else 1
    rest = scores.shape[1:]
    halves = scores.reshape(g, 2, batch // g, *rest)  # [G, real|fake, M, ...]
    return halves[:, 0].reshape(batch, *rest), halves[:, 1].reshape(batch, *rest)


def group_unlayout(x: Tensor, group_size: int) -> Tensor:
    """The inverse of `group_layout`: results of a call on a laid-out batch, in drawn order."""
    n = x.shape[0]
    g = min(group_size, n)
    if g <= 1 or n % g:
        return x
    return x.reshape(g, n // g, *x.shape[1:]).transpose(0, 1).reshape(x.shape)


class DeviceCritic(losses.Critic):
    """D as the losses call it on the device (`progan_dsl.train.losses.Critic`): alpha bound,
    the minibatch-stddev group layout applied to the images and labels going in and undone on
    the results coming out (so scores and logits are in the order of the batch as drawn), the
    memory format of the switches, arguments bound and results read by D's `Signature`.

    A call on an input that requires grad (the gradient penalty's mixes, R1's reals) runs
    `eager` (it is differentiated twice); any other call runs `first_order` (D compiled, when
    compile is on). `pair` judges reals and fakes in one batched call when `paired` and the
    groups allow it (`pairable`), else in two."""

    def __init__(
        self,
        eager: nn.Module,
        first_order: Callable[..., Any],
        signature: Signature,
        alpha: Tensor,
        group: int,
        images: Callable[[Tensor], Tensor],
        paired: bool = False,
        augment: Augmenter | None = None,
    ) -> None:
        super().__init__()
        self.eager, self.first_order, self.signature = eager, first_order, signature
        self.alpha, self.group, self.images, self.paired = alpha, group, images, paired
        self.augment = augment
        self.takes_labels = signature.takes(PortRole.LABELS)
        self.paired_calls = 0  # joint calls made (tests, benchmarks)

    def _run(
        self, D: Callable[..., Any], images: Tensor, labels: Tensor | None
    ) -> dict[PortRole, Tensor]:
        """D's results by role, on the batch laid out in minibatch-stddev groups."""
        values = {
            PortRole.IMAGE: self.images(group_layout(images, self.group)),
            PortRole.ALPHA: self.alpha,
        }
        if self.takes_labels:
            assert labels is not None, "this D takes labels"
            values[PortRole.LABELS] = group_layout(labels, self.group)
        return self.signature.results(D(*self.signature.args(values)))

    def _judged(self, out: dict[PortRole, Tensor]) -> Judged:
        """Laid-out results back in drawn order, in float32."""
        logits = out.get(PortRole.CLASS_LOGITS)
        return Judged(
            group_unlayout(out[PortRole.SCORES], self.group).float(),
            None if logits is None else group_unlayout(logits, self.group).float(),
        )

    def _augmented(self, images: Tensor) -> Tensor:
        return images if self.augment is None else self.augment(images)

    def __call__(self, images: Tensor, labels: Tensor | None = None) -> Judged:
        D = self.eager if images.requires_grad else self.first_order
        return self._judged(self._run(D, self._augmented(images), labels))

    def pair(
        self, reals: Tensor, fakes: Tensor, labels: Tensor | None = None
    ) -> tuple[Judged, Judged]:
        batch = reals.shape[0]
        if not self.paired or not pairable(batch, self.group) or reals.requires_grad:
            return self(reals, labels), self(fakes, labels)
        # each side augmented with its own draw, in the order two calls draw them
        reals, fakes = self._augmented(reals), self._augmented(fakes)
        joint = torch.cat([reals, fakes.to(reals.dtype)])
        both = None if labels is None else torch.cat([labels, labels])
        out = self._run(self.first_order, joint, both)
        self.paired_calls += 1
        halves = {role: split_pair(v, batch, self.group) for role, v in out.items()}
        real, fake = ({role: h[i] for role, h in halves.items()} for i in (0, 1))
        return self._judged(real), self._judged(fake)

    def observe(self, real: Judged, fake: Judged) -> None:
        if self.augment is not None:
            self.augment.observe(real.scores, fake.scores)


class DevicePaths:
    """The resolved fast paths of one trainer, applied on its device."""

    def __init__(self, fast: FastPaths, device: torch.device, bf16: bool) -> None:
        self.fast, self.device, self.bf16 = fast, device, bf16
        self.cuda = device.type == "cuda"
        self.memory_format = torch.channels_last if fast.channels_last else torch.contiguous_format

    def place(self, module: nn.Module) -> nn.Module:
        """`module` on the device, in the memory format of the switches."""
        return module.to(self.device, memory_format=self.memory_format)  # type: ignore[call-overload]

    def images(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=self.memory_format)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def runners(self, *modules: nn.Module) -> tuple[Callable[..., Any], ...]:
        """What calls each module on first-order paths: compiled when compile is on, else the
        module itself. Every stage's generated module has its network's one calling convention
        (`progan_dsl.compiler`), so each compiles as it is; the compiled code of earlier phases
        is dropped with their modules."""
        if not self.fast.compile:
            return modules
        return tuple(
            torch.compile(m, backend=self.fast.compile_backend, dynamic=False) for m in modules
        )

    def critic(
        self,
        D: nn.Module,
        D_run: Callable[..., Any],
        signature: Signature,
        alpha: Tensor,
        group: int,
        augment: Augmenter | None = None,
    ) -> DeviceCritic:
        """D for one loss evaluation (pairs reals and fakes when paired_critic is on; every
        batch augmented first when the run augments)."""
        return DeviceCritic(
            D, D_run, signature, alpha, group, self.images, bool(self.fast.paired_critic), augment
        )

    def generator(
        self, G: Callable[..., Any], signature: Signature, alpha: Tensor
    ) -> losses.Generator:
        """G as the losses call it, `(latents, labels) -> images`, arguments bound by role."""

        def call(latents: Tensor, labels: Tensor | None) -> Tensor:
            values = {PortRole.LATENT: latents, PortRole.ALPHA: alpha}
            if labels is not None:
                values[PortRole.LABELS] = labels
            return signature.results(G(*signature.args(values)))[PortRole.IMAGE]

        return call

    def scalar(self, value: float) -> Tensor:
        """A 0-dim float32 tensor on the device, filled by a kernel: no host sync."""
        return torch.full((), value, dtype=torch.float32, device=self.device)

    def to_device(self, x: Tensor) -> Tensor:
        """A CPU tensor on the device without a host sync (pinned, non-blocking on CUDA)."""
        if not self.cuda:
            return x.to(self.device)
        return x.pin_memory().to(self.device, non_blocking=True)


__all__ = [
    "DEFAULTS",
    "DeviceCritic",
    "DevicePaths",
    "FastPaths",
    "group_layout",
    "group_unlayout",
    "pairable",
    "split_pair",
]
