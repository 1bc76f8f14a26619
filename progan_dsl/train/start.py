"""Where a run starts, and the checks before it does.

Owns the decision (taken by rank 0, shared with every rank): a new run, the newest intact
checkpoint of this spec's newest run (`--resume auto`), or a given checkpoint file / run folder,
continuing its run folder when the spec is the same and starting a new one when only training
settings changed. The checkpoint is read once per process. Also owns the preflight checks:
the dataset fits the spec and the schedule, the minibatches split over the processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from progan_dsl.checkpoint import Checkpoint
from progan_dsl.compiler import Program
from progan_dsl.data.dataset import ImageDataset
from progan_dsl.errors import UserError
from progan_dsl.spec import LoadedSpec
from progan_dsl.spec.models import require_whole_groups
from progan_dsl.train import distributed as distr
from progan_dsl.train.rundir import RunDir, newest_run_of_spec, run_of_checkpoint
from progan_dsl.train.schedule import Schedule


@dataclass(frozen=True)
class Start:
    """Where a run starts: fresh (no checkpoint), or from a checkpoint, continuing its run folder
    (`run`) or in a new one (`run` None)."""

    checkpoint: Checkpoint | None
    run: Path | None
    notes: tuple[str, ...] = ()  # what the user should hear (skipped damaged files, ...)


@dataclass(frozen=True)
class _Decision:
    checkpoint: str | None
    run: str | None
    notes: tuple[str, ...]


def _decide(
    resume: str | None, outdir: str | Path, loaded: LoadedSpec
) -> tuple[_Decision, Checkpoint | None]:
    if resume is None:
        return _Decision(None, None, ()), None
    if resume == "auto":
        run = newest_run_of_spec(outdir, loaded.hash)
        if run is None:
            return _Decision(None, None, ()), None
        ckpt = Checkpoint.load(run.path)
        notes = tuple(f"skipped a damaged checkpoint: {why}" for why in ckpt.skipped)
        return _Decision(str(ckpt.path), str(run.path), notes), ckpt
    path = Path(resume)
    ckpt = Checkpoint.load(path)
    notes = tuple(f"skipped a damaged checkpoint: {why}" for why in ckpt.skipped)
    assert ckpt.path is not None
    run = run_of_checkpoint(ckpt.path)
    if ckpt.spec_hash == loaded.hash and ckpt.resumable:
        if run is not None and run.info().get("spec_hash") != loaded.hash:
            run = None
        return _Decision(str(ckpt.path), str(run.path) if run else None, notes), ckpt
    if ckpt.loaded.spec.architecture != loaded.spec.architecture:
        raise UserError(
            f"{ckpt.path}: the checkpoint's spec '{ckpt.loaded.spec.name}' has a "
            f"different architecture than {loaded.path}; resume with that spec"
        )
    # Same networks, other training settings (or weights only): a new run folder from its weights.
    return _Decision(str(ckpt.path), None, notes), ckpt


def decide_start(
    resume: str | None, outdir: str | Path, loaded: LoadedSpec, env: distr.DistEnv
) -> Start:
    """Rank 0 decides; every rank gets the decision (or the same error) and its checkpoint."""
    decision: _Decision | str | None = None
    ckpt: Checkpoint | None = None
    if env.is_main:
        try:
            decision, ckpt = _decide(resume, outdir, loaded)
        except UserError as err:
            if not env.enabled:
                raise
            decision = str(err)
    decision = distr.broadcast_object(env, decision)
    if isinstance(decision, str):
        raise UserError(decision)
    assert decision is not None
    if ckpt is None and decision.checkpoint is not None:  # the other ranks read it once, too
        ckpt = Checkpoint.read(decision.checkpoint)
    return Start(ckpt, Path(decision.run) if decision.run else None, decision.notes)


def dataset_path(data: str | Path | None, program: Program, saved: str | None) -> Path:
    path = data or saved or program.spec.training.dataset.path
    if path is None:
        raise UserError(
            "no dataset: pass --data DIR or set training.dataset.path in the spec "
            "(make one with `progan-dataset create`)"
        )
    return Path(path)


def check_dataset(dataset: ImageDataset, program: Program, schedule: Schedule) -> None:
    """The dataset has the spec's channels and every level the schedule reads, at the right size."""
    arch = program.spec.architecture
    if dataset.channels != arch.image_channels:
        raise UserError(
            f"dataset {dataset.path} has {dataset.channels} channel(s), spec "
            f"'{program.spec.name}' makes {arch.image_channels}"
        )
    for res in sorted({p.resolution for p in schedule.phases}):
        if res not in dataset.resolutions:
            raise UserError(
                f"dataset {dataset.path} has no {res}x level (it has "
                f"{', '.join(map(str, dataset.resolutions))}); recreate it with "
                f"--resolution {arch.final_resolution}"
            )
        if dataset.shape(res) != arch.spatial(res):
            raise UserError(
                f"dataset {dataset.path}: level {res} is {dataset.shape(res)}, spec "
                f"wants {arch.spatial(res)} (base_shape {list(arch.base_shape)})"
            )


def check_batches(program: Program, world_size: int) -> None:
    """Every minibatch splits over the processes in whole minibatch-stddev groups."""
    require_whole_groups(program.spec, world_size)


def continue_run(start: Start) -> RunDir | None:
    return RunDir(start.run) if start.run is not None else None


__all__ = ["Start", "check_batches", "check_dataset", "dataset_path", "decide_start"]
