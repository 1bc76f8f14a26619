"""The training schedule: which phase, alpha, minibatch and learning rate at each point of a run.

Owns the mapping *images shown -> (phase, alpha)*. Everything is a pure function of the number of
images shown to D so far, so a resumed run lands on exactly the same schedule (paper Section 3 and
Appendix A; official `TrainingSchedule` in tkarras/progressive_growing_of_gans train.py):

- phases come in the order of `progan_dsl.ir.stages`: the base resolution stable, then per
  resolution a fade-in (`fade_kimg`) and a stabilisation (`stable_kimg`);
- alpha rises linearly from 0 at the start of a fade-in to 1 at its nominal end, and is 1 in stable
  phases;
- the final resolution stays stable until `total_kimg` (the spec's, or `--kimg`); a total shorter
  than the growth stops the run early, inside whatever phase it lands in;
- minibatch and learning rate are those of the phase's resolution (the new one during a fade-in,
  as in the official code), the learning rate falling back to the optimizer's;
- a run reads the schedule once per group of `minibatch_repeats` iterations (`Cursor`): the
  official loop computes lod and learning rate, then runs `minibatch_repeats` minibatches with
  them, so phase changes and alpha move in steps of that many minibatches.

Torch-free (a schedule can be printed and tested without torch).
"""

from __future__ import annotations

from dataclasses import dataclass

from progan_dsl.errors import UserError
from progan_dsl.ir import Stage, stages
from progan_dsl.spec import Spec


def kimg_to_images(kimg: float) -> int:
    """Thousands of images -> images, rounded to the nearest image."""
    return int(round(kimg * 1000.0))


@dataclass(frozen=True)
class Phase:
    """One phase of the run, in images shown: [start, end)."""

    index: int  # position in the schedule
    stage: Stage  # resolution and 'fade' / 'stable'
    start: int  # images shown when the phase starts
    end: int  # images shown when it ends (the run's end for the last phase)
    length: int  # nominal length; alpha of a fade-in runs over this (end may cut it short)
    minibatch: int  # global minibatch
    learning_rate: float

    @property
    def resolution(self) -> int:
        return self.stage.resolution

    @property
    def fading(self) -> bool:
        return self.stage.phase == "fade"

    def alpha(self, images_shown: int) -> float:
        """Fade-in weight of the new block: 0 -> 1 over a fade-in, 1 when stable."""
        if not self.fading:
            return 1.0
        return min(max((images_shown - self.start) / self.length, 0.0), 1.0)

    def contains(self, images_shown: int) -> bool:
        return self.start <= images_shown < self.end


@dataclass(frozen=True)
class Schedule:
    """All phases of a run and its total length in images."""

    phases: tuple[Phase, ...]
    total: int  # images shown when the run is done

    def phase_at(self, images_shown: int) -> Phase:
        """The phase a step starting at `images_shown` belongs to (the last one at the end)."""
        for phase in self.phases:
            if phase.contains(images_shown):
                return phase
        if images_shown >= self.total:
            return self.phases[-1]
        raise ValueError(f"images_shown {images_shown} is negative")

    def alpha_at(self, images_shown: int) -> float:
        return self.phase_at(images_shown).alpha(images_shown)

    def phase_of(self, stage: Stage) -> Phase:
        """The phase that trains `stage` (a checkpoint's modules belong to one)."""
        for phase in self.phases:
            if phase.stage == stage:
                return phase
        raise UserError(
            f"stage {stage} is not part of this run's schedule "
            f"({', '.join(str(p.stage) for p in self.phases)})"
        )

    def done(self, images_shown: int) -> bool:
        return images_shown >= self.total


@dataclass
class Cursor:
    """Where a run is: `images` shown to D so far, and the point `held` at which the schedule is
    read, constant over a group of `repeats` iterations (`repeat` of them done)."""

    repeats: int = 1
    images: int = 0
    held: int = 0
    repeat: int = 0

    @property
    def point(self) -> int:
        """Images at which the schedule is read for the next iteration."""
        return self.images if self.repeat == 0 else self.held

    def begin(self) -> int:
        """Start an iteration; the point it reads the schedule at."""
        if self.repeat == 0:
            self.held = self.images
        return self.held

    def end(self, images: int) -> None:
        """An iteration showed `images` more images to D."""
        self.images += images
        self.repeat = (self.repeat + 1) % self.repeats

    def seek(self, images: int, held: int | None = None, repeat: int = 0) -> None:
        """Move to `images` (a resume: inside a group at `held` with `repeat` done, if valid)."""
        fits = held is not None and 0 <= repeat < self.repeats and held <= images
        self.images = images
        self.held, self.repeat = (held, repeat) if fits else (images, 0)  # type: ignore[assignment]


def build_schedule(spec: Spec, total_kimg: float | None = None) -> Schedule:
    """The schedule of a spec; `total_kimg` (from `--kimg`) overrides the spec's total length."""
    sched = spec.training.schedule
    lr_default = spec.training.optimizer.lr
    if total_kimg is not None and total_kimg <= 0:
        raise UserError(f"--kimg must be positive, got {total_kimg:g}")
    all_stages = stages(spec)
    # Nominal boundaries, from cumulative kimg (rounded once each, so no drift accumulates).
    nominal: list[tuple[Stage, int, int]] = []
    cumulative = 0.0
    for stage in all_stages:
        begin = kimg_to_images(cumulative)
        cumulative += sched.kimg(stage.phase, stage.resolution)
        nominal.append((stage, begin, kimg_to_images(cumulative)))
    growth_end = nominal[-1][1]  # the final stable phase starts here
    if total_kimg is not None:
        total = kimg_to_images(total_kimg)
    elif sched.total_kimg is not None:
        total = max(kimg_to_images(sched.total_kimg), growth_end)
    else:
        total = nominal[-1][2]
    total = max(total, 1)
    phases: list[Phase] = []
    for i, (stage, begin, end) in enumerate(nominal):
        last = i == len(nominal) - 1
        stop = total if last else min(end, total)
        if stop <= begin:  # zero-length phase, or past the end of the run
            continue
        phases.append(
            Phase(
                index=len(phases),
                stage=stage,
                start=begin,
                end=stop,
                length=max(end - begin, 1),
                minibatch=sched.minibatch[stage.resolution],
                learning_rate=sched.learning_rate.get(stage.resolution, lr_default),
            )
        )
    return Schedule(phases=tuple(phases), total=total)


def format_schedule(schedule: Schedule, d_repeats: int = 1) -> str:
    """The schedule as a table (what `progan-train --dry-run` prints). `iterations` counts G steps
    (each after `d_repeats` D steps), exactly as the loop will run them."""
    head = (
        "  #  resolution  phase   kimg range              alpha         minibatch  "
        "learning rate  iterations"
    )
    lines = [head, "  " + "-" * (len(head) - 2)]
    position = 0  # images shown when the next iteration starts
    for p in schedule.phases:
        per_iteration = p.minibatch * d_repeats
        iterations = max(-(-(p.end - position) // per_iteration), 0)
        position += iterations * per_iteration
        alpha = f"{p.alpha(p.start):.2f} -> {p.alpha(p.end):.2f}" if p.fading else "1"
        kimg = f"{p.start / 1000:9.3f} - {p.end / 1000:9.3f}"
        lines.append(
            f"{p.index:>3}  {p.resolution:>10}  {p.stage.phase:<6}  {kimg:<22}  "
            f"{alpha:<12}  {p.minibatch:>9}  {p.learning_rate:>13g}  {iterations:>10,}"
        )
    lines.append(f"total: {schedule.total / 1000:g} kimg ({schedule.total:,} images)")
    return "\n".join(lines)
