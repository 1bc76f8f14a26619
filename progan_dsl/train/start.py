"""Where a run starts, and the checks before it does.

Owns the decision (taken by rank 0, shared with every rank): a new run, the newest intact
checkpoint of this spec's newest run (`--resume auto`), or a given checkpoint file / run folder,
continuing its run folder when the spec is the same and starting a new one when only training
settings changed. The checkpoint is read once per process. Also owns the preflight checks:
the dataset fits the spec and the schedule, the minibatches split over the processes.

Paths are resolved once, here: a symlink to a run folder or checkpoint continues the real run
folder in place (and its lock is the real folder's). Under an elastic restart (torchrun
`--max-restarts`, `DistEnv.restart` > 0) the workers resume from the newest intact checkpoint of
the run the first attempt trained: `--resume auto` or nothing given: the newest run of this spec in
OUTDIR; a checkpoint of a run continued in place: that run folder's newest; a run started from
weights: the run folder it made, the newest of this spec in OUTDIR (nothing yet: a new run).
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
from progan_dsl.train.rundir import newest_run_of_spec, run_of_checkpoint
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


def _skipped(ckpt: Checkpoint) -> tuple[str, ...]:
    return tuple(f"skipped a damaged checkpoint: {why}" for why in ckpt.skipped)


def _auto(
    outdir: str | Path, loaded: LoadedSpec, why: str = ""
) -> tuple[_Decision, Checkpoint | None]:
    run = newest_run_of_spec(outdir, loaded.hash)
    if run is None:
        fresh = f"{why}: no checkpoint of this spec in {outdir} yet, so a new run"
        return _Decision(None, None, (fresh,) if why else ()), None
    path = run.path.resolve()
    ckpt = Checkpoint.load(path)
    told = (f"{why}: resuming {ckpt.path}",) if why else ()
    return _Decision(str(ckpt.path), str(path), told + _skipped(ckpt)), ckpt


def _decide(
    resume: str | None, outdir: str | Path, loaded: LoadedSpec, restart: int = 0
) -> tuple[_Decision, Checkpoint | None]:
    elastic = f"torchrun restarted the workers (restart {restart})" if restart else ""
    if resume is None:
        return _auto(outdir, loaded, elastic) if restart else (_Decision(None, None, ()), None)
    if resume == "auto":
        return _auto(outdir, loaded, elastic)
    path = Path(resume).resolve()  # a link to a run folder continues the real one
    ckpt = Checkpoint.load(path)
    assert ckpt.path is not None
    run = run_of_checkpoint(ckpt.path)
    if ckpt.spec_hash == loaded.hash and ckpt.resumable:
        if run is not None and run.info().get("spec_hash") != loaded.hash:
            run = None
        if restart and run is not None and path.is_file():  # the run's newest, not the file
            ckpt = Checkpoint.load(run.path)
            assert ckpt.path is not None
        if run is None:
            if restart:  # the first attempt made a run folder: continue that one
                return _auto(outdir, loaded, elastic)
            return _Decision(str(ckpt.path), None, (_new_from(ckpt, "a new run folder"),)), ckpt
        notes = ((f"{elastic}: resuming {ckpt.path}",) if restart else ()) + _skipped(ckpt)
        return _Decision(str(ckpt.path), str(run.path), notes), ckpt
    if ckpt.loaded.spec.architecture != loaded.spec.architecture:
        raise UserError(
            f"{ckpt.path}: the checkpoint's spec '{ckpt.loaded.spec.name}' has a "
            f"different architecture than {loaded.path}; resume with that spec"
        )
    if restart:  # the first attempt made a new run folder from these weights: continue it
        return _auto(outdir, loaded, elastic)
    # Same networks, other training settings (or weights only): a new run folder from its weights.
    return _Decision(str(ckpt.path), None, (_new_from(ckpt, "a new run"), *_skipped(ckpt))), ckpt


def _new_from(ckpt: Checkpoint, where: str) -> str:
    what = "its full training state" if ckpt.resumable else "its weights"
    return (
        f"{where} starts from {what} in {ckpt.path} ({ckpt.images_shown / 1000:g} kimg, "
        f"{ckpt.stage})"
    )


def decide_start(
    resume: str | None, outdir: str | Path, loaded: LoadedSpec, env: distr.DistEnv
) -> Start:
    """Rank 0 decides; every rank gets the decision (or the same error) and its checkpoint."""
    decision: _Decision | str | None = None
    ckpt: Checkpoint | None = None
    if env.is_main:
        try:
            decision, ckpt = _decide(resume, outdir, loaded, env.restart)
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
    check_labels(dataset, program)


def check_labels(dataset: ImageDataset, program: Program) -> None:
    """A conditional spec needs a dataset with labels of as many classes; located at the spec's
    `architecture.conditioning.classes`."""
    classes = program.spec.architecture.num_classes
    if not classes:
        return
    where = program.loaded.doc.where(("architecture", "conditioning", "classes"))
    at = f"{where.path}:{where.line}:{where.col}: architecture.conditioning.classes"
    if not dataset.num_classes:
        raise UserError(
            f"{at}: spec '{program.spec.name}' is conditional on {classes} classes, but dataset "
            f"{dataset.path} has no labels; create it with 'progan-dataset create --labels'"
        )
    if dataset.num_classes != classes:
        raise UserError(
            f"{at}: spec '{program.spec.name}' is conditional on {classes} classes, but dataset "
            f"{dataset.path} has {dataset.num_classes}"
        )


def check_batches(program: Program, world_size: int) -> None:
    """Every minibatch splits over the processes in whole minibatch-stddev groups."""
    require_whole_groups(program.spec, world_size)


__all__ = ["Start", "check_batches", "check_dataset", "dataset_path", "decide_start"]
