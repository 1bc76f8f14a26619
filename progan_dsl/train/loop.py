"""A run's life: start or resume, train to the end of the schedule, and never lose the run.

Owns `train(options)`: deciding where a run starts (a new numbered run folder, `--resume auto`,
a checkpoint path), checking the dataset against the spec, and the loop around `Trainer.iteration`
with its ticks (log record, EMA grid, TensorBoard, plots, progress), evaluations, atomic
checkpoints, and the rollback when a loss stops being finite.

Ticks, checkpoints and evaluations happen when images shown crosses a multiple of their interval,
so a resumed run does them at the same points; a resumed run cuts the log back to its checkpoint
and carries the unfinished tick's statistics in the checkpoint, so its log reads as if it had
never stopped. Rank 0 alone writes; every rank runs the same collectives in the same order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from progan_dsl.compiler import Program, compile_spec
from progan_dsl.data.loader import ImageDataset, ImageLoader
from progan_dsl.errors import UserError
from progan_dsl.ir.dump import dump
from progan_dsl.spec import LoadedSpec, load_spec, load_spec_text
from progan_dsl.train import distributed as distr
from progan_dsl.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from progan_dsl.train.feedback import (
    Board,
    Progress,
    format_duration,
    image_grid,
    plot_losses,
    save_grid,
)
from progan_dsl.train.rundir import (
    RunDir,
    create_run,
    newest_run_of_spec,
    run_of_checkpoint,
    tick_records,
)
from progan_dsl.train.schedule import Phase, Schedule, build_schedule, kimg_to_images
from progan_dsl.train.trainer import Trainer, derive_seed, mbstd_group_size

SYNC_EVERY = 8  # iterations between host syncs (loss check, progress) when nothing else syncs
EXIT_DIVERGED = 3  # CLI exit status when a non-finite loss stopped the run


class TrainingDiverged(Exception):
    """A non-finite loss stopped the run; the trainer was rolled back to `checkpoint`."""

    def __init__(self, message: str, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


@dataclass
class TrainOptions:
    """What `progan-train` was asked to do (CLI flags, or a library call)."""

    spec: str | Path | LoadedSpec
    data: str | Path | None = None  # dataset folder; default: the spec's training.dataset.path
    outdir: str | Path = "runs"
    kimg: float | None = None  # total length override
    resume: str | None = None  # None (new run), "auto", or a checkpoint file / run folder
    device: str | None = None  # "cuda", "cpu" or None (CUDA when available)
    seed: int | None = None  # default 0 for a new run; a resumed run keeps its own
    workers: int = 1  # loader prefetch threads
    threads: int | None = None  # CPU compute threads (torch.set_num_threads); None: torch's default
    progress: bool | None = None  # progress bar; None: when stderr is a terminal
    command: list[str] = field(default_factory=list)  # for run.json


@dataclass
class TrainResult:
    """What a `train` call did (rank 0's view)."""

    run_dir: Path
    images_shown: int
    seconds: float  # wall time of this invocation
    img_per_s: dict[int, float]  # mean training throughput per resolution (this invocation)
    metrics: dict[str, float]  # the last evaluation
    checkpoint: Path | None  # the final checkpoint
    already_done: bool = False


IterationHook = Callable[["Trainer"], None]


# ---- a run ---------------------------------------------------------------------------------------


def crossed(before: int, after: int, every: int) -> bool:
    """True if a multiple of `every` lies in (before, after]."""
    return after // every > before // every


def _resolve_spec(spec: str | Path | LoadedSpec) -> LoadedSpec:
    return spec if isinstance(spec, LoadedSpec) else load_spec(spec)


def resolved_spec_yaml(program: Program) -> str:
    """The validated spec with every default written out; it loads back to the same hash."""
    data = program.spec.model_dump(mode="json")
    arch = data["architecture"]
    arch["generator"]["to_rgb"].pop("out", None)  # fixed by the spec rule: not written in specs
    arch["discriminator"]["from_rgb"].pop("out", None)
    head = (f"# Spec '{program.spec.name}' with every default filled in (sha256 "
            f"{program.loaded.hash}).\n")
    return head + yaml.safe_dump(data, sort_keys=False)


def _check_dataset(dataset: ImageDataset, program: Program, schedule: Schedule) -> None:
    arch = program.spec.architecture
    if dataset.channels != arch.image_channels:
        raise UserError(f"dataset {dataset.path} has {dataset.channels} channel(s), spec "
                        f"'{program.spec.name}' makes {arch.image_channels}")
    needed = sorted({p.resolution for p in schedule.phases}
                    | {p.resolution // 2 for p in schedule.phases if p.fading})
    for res in needed:
        if res not in dataset.resolutions:
            raise UserError(f"dataset {dataset.path} has no {res}x level (it has "
                            f"{', '.join(map(str, dataset.resolutions))}); recreate it with "
                            f"--resolution {arch.final_resolution}")
        if dataset.shape(res) != arch.spatial(res):
            raise UserError(f"dataset {dataset.path}: level {res} is {dataset.shape(res)}, spec "
                            f"wants {arch.spatial(res)} (base_shape {list(arch.base_shape)})")


def _check_batches(program: Program, schedule: Schedule, world_size: int) -> None:
    group = mbstd_group_size(program)
    for phase in schedule.phases:
        batch = phase.minibatch
        if batch % world_size:
            raise UserError(f"minibatch {batch} at {phase.resolution} does not split over "
                            f"{world_size} processes")
        if group and (batch // world_size) % min(group, batch):
            raise UserError(f"minibatch {batch} at {phase.resolution} over {world_size} processes "
                            f"gives {batch // world_size} per process, not a multiple of the "
                            f"minibatch-stddev group size {min(group, batch)}: groups would span "
                            f"processes")


def _dataset_path(options: TrainOptions, program: Program, saved: str | None) -> Path:
    path = options.data or saved or program.spec.training.dataset.path
    if path is None:
        raise UserError("no dataset: pass --data DIR or set training.dataset.path in the spec "
                        "(make one with `progan-dataset create`)")
    return Path(path)


@dataclass(frozen=True)
class _Start:
    """Where a run starts (decided by rank 0): fresh, or from a checkpoint file, continuing its
    run folder (`run`) or in a new one."""

    checkpoint: str | None
    run: str | None


def _find_start(options: TrainOptions, loaded: LoadedSpec) -> _Start:
    if options.resume is None:
        return _Start(None, None)
    if options.resume == "auto":
        run = newest_run_of_spec(options.outdir, loaded.hash)
        if run is None:
            return _Start(None, None)
        latest = run.latest_checkpoint()
        return _Start(str(latest), str(run.path))
    path = Path(options.resume)
    state = load_checkpoint(path)
    run = run_of_checkpoint(path)
    if state["spec_hash"] == loaded.hash:
        if run is not None and run.info().get("spec_hash") != loaded.hash:
            run = None
        return _Start(state["path"], str(run.path) if run else None)
    saved = load_spec_text(state["spec_text"], state.get("spec_path", "<checkpoint>"))
    if saved.spec.architecture != loaded.spec.architecture:
        raise UserError(f"{state['path']}: the checkpoint's spec '{saved.spec.name}' has a "
                        f"different architecture than {loaded.path}; resume with that spec")
    # Same networks, changed training settings: continue the weights in a new run folder.
    return _Start(state["path"], None)


def _decide_start(options: TrainOptions, loaded: LoadedSpec, env: distr.DistEnv) -> _Start:
    """Rank 0 decides; every rank gets the decision, or the same error."""
    decision: _Start | str | None = None
    if env.is_main:
        try:
            decision = _find_start(options, loaded)
        except UserError as err:
            if not env.enabled:
                raise
            decision = str(err)
    decision = distr.broadcast_object(env, decision)
    if isinstance(decision, str):
        raise UserError(decision)
    assert decision is not None
    return decision


def train(options: TrainOptions, *, on_iteration: IterationHook | None = None) -> TrainResult:
    """Run (or continue) training as `options` say; see the module docstring."""
    env = distr.init_distributed(options.device)
    threads_before = torch.get_num_threads()
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    try:
        return _train(options, env, on_iteration)
    finally:
        torch.set_num_threads(threads_before)
        distr.shutdown(env)


def _train(options: TrainOptions, env: distr.DistEnv, on_iteration: IterationHook | None) -> TrainResult:
    wall_start = time.perf_counter()
    loaded = _resolve_spec(options.spec)
    start = _decide_start(options, loaded, env)
    ckpt = load_checkpoint(start.checkpoint) if start.checkpoint else None
    extra = ckpt.get("extra", {}) if ckpt else {}
    kimg = options.kimg if options.kimg is not None else extra.get("kimg")
    seed = int(extra.get("seed", 0)) if ckpt else (options.seed or 0)
    if ckpt and options.seed is not None and options.seed != seed and env.is_main:
        print(f"note: --seed {options.seed} ignored, the resumed run keeps its seed {seed}")
    program = compile_spec(loaded)
    schedule = build_schedule(program.spec, kimg)
    _check_batches(program, schedule, env.world_size)
    data = _dataset_path(options, program, extra.get("data") if start.run else None)
    dataset = ImageDataset(data)
    _check_dataset(dataset, program, schedule)
    loader = ImageLoader(dataset, seed=seed, mirror=program.spec.training.dataset.mirror,
                         rank=env.rank, world_size=env.world_size, device=env.device,
                         workers=options.workers)
    trainer = Trainer(program, schedule, env, loader, seed)
    if ckpt is not None:
        trainer.restore(ckpt)
    else:
        trainer.enter_phase(schedule.phase_at(0))
    run = _open_run(options, env, program, start, trainer, seed, data, kimg)
    session = _Session(options, env, program, schedule, trainer, run, dataset, seed, kimg, data,
                       continuing=start.run is not None,
                       elapsed_before=float(extra.get("elapsed_s", 0.0)),
                       tick_window=extra.get("tick_window") if start.run is not None else None)
    try:
        with loader:
            return session.run(on_iteration, wall_start)
    finally:
        session.close()


def _open_run(options: TrainOptions, env: distr.DistEnv, program: Program, start: _Start,
              trainer: Trainer, seed: int, data: Path, kimg: float | None) -> RunDir:
    """Rank 0 readies the run folder (continued, or a new numbered one); every rank learns it."""
    path: str | None = None
    if env.is_main:
        if start.run is not None:
            run = RunDir(Path(start.run))
            run.remove_stale_temporaries()
            assert start.checkpoint is not None  # a killed run's records past the resume point go
            run.log.truncate_at_checkpoint(Path(start.checkpoint), trainer.images_shown)
        else:
            loaded = program.loaded
            files = {
                "spec.yaml": loaded.doc.text,
                "spec.resolved.yaml": resolved_spec_yaml(program),
                "graph.txt": dump(program.graphs),
            }
            info = {
                "spec": program.spec.name,
                "spec_hash": loaded.hash,
                "spec_path": str(loaded.path),
                "seed": seed,
                "data": str(data),
                "kimg": kimg,
                "world_size": env.world_size,
                "device": env.device.type,
                "torch": torch.__version__,
                "command": options.command,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "started_from": start.checkpoint,
            }
            run = create_run(options.outdir, program.spec.name, files, info)
        path = str(run.path)
    path = distr.broadcast_object(env, path)
    assert path is not None
    return RunDir(Path(path))


class _Session:
    """One invocation of a run: the loop plus its ticks, checkpoints, evaluations and feedback."""

    def __init__(self, options: TrainOptions, env: distr.DistEnv, program: Program,
                 schedule: Schedule, trainer: Trainer, run: RunDir, dataset: ImageDataset,
                 seed: int, kimg: float | None, data: Path, *, continuing: bool,
                 elapsed_before: float, tick_window: list[list[float]] | None) -> None:
        self.options, self.env, self.program, self.schedule = options, env, program, schedule
        self.trainer, self.run_dir, self.dataset = trainer, run, dataset
        self.seed, self.kimg, self.data = seed, kimg, data
        training = program.spec.training
        self.tick_every = max(kimg_to_images(training.tick_kimg), 1)
        self.snapshot_every = max(kimg_to_images(training.snapshot.every_kimg), 1)
        every = training.evaluation.every_kimg
        self.eval_every = max(kimg_to_images(every), 1) if every else None
        grid = training.grid
        self.grid_shape = (grid.rows, grid.cols)
        latent = program.spec.architecture.latent_size
        self.grid_z = torch.randn(grid.rows * grid.cols, latent,
                                  generator=torch.Generator().manual_seed(derive_seed(seed, "grid")))
        self.main = env.is_main
        self.continuing = continuing  # in an existing run folder, from its checkpoint
        self.log = run.log
        records = self.log.records() if self.main else []
        self.ticks = tick_records(records)
        self.phase_marks = [{"kimg": r["start_kimg"], "resolution": r["resolution"],
                             "phase": r["phase"]} for r in records if r.get("event") == "phase"]
        self.elapsed_before = elapsed_before
        self.tick_count = int(self._last(records, "tick", 0))
        self.board: Board | None = None
        self.progress: Progress | None = None
        self.metrics: dict[str, float] = {}
        self.train_seconds: dict[int, float] = {}
        self.train_images: dict[int, int] = {}
        self.window: list[np.ndarray] = []  # synced stats rows since the last tick
        if tick_window:
            self.window.append(np.asarray(tick_window, dtype=np.float64))
        self.last_checkpoint: Path | None = None

    @staticmethod
    def _last(records: list[dict[str, Any]], key: str, default: Any) -> Any:
        for record in reversed(records):
            if key in record:
                return record[key]
        return default

    # -- life cycle ------------------------------------------------------------------------------

    def run(self, on_iteration: IterationHook | None, wall_start: float) -> TrainResult:
        t = self.trainer
        if self.main:
            self.board = Board(self.run_dir.tensorboard,
                               purge_step=t.images_shown + 1 if self.continuing else None)
            self.progress = Progress(self.schedule.total, t.images_shown,
                                     enabled=self.options.progress)
        self._announce()
        if t.images_shown >= self.schedule.total:
            self._say(f"run {self.run_dir.name} is already complete at "
                      f"{t.images_shown / 1000:g} kimg (pass a larger --kimg to train on)")
            return self._result(wall_start, already_done=True)
        if not self.continuing:
            self._event("start", world_size=self.env.world_size, device=self.env.device.type)
            self._save_reals()
            self._phase_event()
            self._tick(force=True)
            self._checkpoint()
        else:
            self._event("resume", world_size=self.env.world_size, device=self.env.device.type)
        segment_start = time.perf_counter()
        segment_images = t.images_shown
        iterations = 0
        while not self.schedule.done(t.images_shown):
            before = t.images_shown
            phase = self.schedule.phase_at(before)
            if phase != t.phase:
                t.enter_phase(phase)
                self._phase_event()
                segment_start = time.perf_counter()  # building modules is not training time
            t.iteration()
            iterations += 1
            after = t.images_shown
            done = self.schedule.done(after)
            tick = crossed(before, after, self.tick_every) or done
            snap = crossed(before, after, self.snapshot_every) or done
            evaluate = (self.eval_every is not None and crossed(before, after, self.eval_every)) or done
            phase_ends = self.schedule.phase_at(after) != t.phase
            if tick or snap or evaluate or phase_ends or iterations % SYNC_EVERY == 0:
                if self.env.device.type == "cuda":
                    torch.cuda.synchronize(self.env.device)
                now = time.perf_counter()
                self._account(t.phase, now - segment_start, after - segment_images)
                self._sync()
                if tick:
                    self._tick()
                if evaluate:
                    self._evaluate()
                if snap:
                    self._checkpoint()
                segment_start, segment_images = time.perf_counter(), after
            if on_iteration is not None:
                on_iteration(t)
        return self._finish(wall_start)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.board is not None:
            self.board.close()

    # -- pieces ----------------------------------------------------------------------------------

    def _say(self, line: str) -> None:
        if not self.main:
            return
        if self.progress is not None:
            self.progress.write(line)
        else:
            print(line, flush=True)

    def _event(self, event: str, **fields: Any) -> None:
        if self.main:
            t = self.trainer
            self.log.append({"event": event, "images_shown": t.images_shown,
                             "kimg": t.images_shown / 1000, **fields})

    def _announce(self) -> None:
        t, spec = self.trainer, self.program.spec
        final = self.program.final_stage
        how = (f"resuming at {t.images_shown / 1000:g} kimg" if self.continuing
               else "new run")
        self._say(f"progan-train: {how} in {self.run_dir.path}")
        self._say(f"  spec {spec.name} ({self.program.loaded.hash[:12]}), loss "
                  f"{spec.training.loss.kind}, G {self.program.params('G', final):,} / D "
                  f"{self.program.params('D', final):,} parameters at {final}")
        precision = "bf16 autocast" if t.bf16 else "fp32"
        self._say(f"  device {self.env.device} x {self.env.world_size} process(es), {precision}, "
                  f"seed {self.seed}, data {self.data}, {self.schedule.total / 1000:g} kimg")

    def _phase_event(self) -> None:
        t = self.trainer
        assert t.phase is not None
        p = t.phase
        self._event("phase", start_kimg=p.start / 1000, index=p.index, resolution=p.resolution, phase=p.stage.phase,
                    minibatch=p.minibatch, learning_rate=p.learning_rate)
        if self.main:
            self.phase_marks.append({"kimg": p.start / 1000, "resolution": p.resolution,
                                     "phase": p.stage.phase})
        self._say(f"phase {p.index}: {p.resolution}x{p.resolution} {p.stage.phase}, kimg "
                  f"{p.start / 1000:g}-{p.end / 1000:g}, minibatch {p.minibatch}, "
                  f"lr {p.learning_rate:g}")

    def _account(self, phase: Phase | None, seconds: float, images: int) -> None:
        if phase is None or images <= 0:
            return
        res = phase.resolution
        self.train_seconds[res] = self.train_seconds.get(res, 0.0) + seconds
        self.train_images[res] = self.train_images.get(res, 0) + images

    def _sync(self) -> None:
        """Pull loss stats to the host; a non-finite one stops the run (after rolling back)."""
        t = self.trainer
        synced = t.sync_stats()
        if synced is None:
            return
        rows, _ = synced
        if not np.isfinite(rows).all():
            self._diverged(rows)
        self.window.append(rows)
        if self.progress is not None and t.phase is not None:
            mean = rows.mean(axis=0)
            res = t.phase.resolution
            ips = self.train_images.get(res, 0) / max(self.train_seconds.get(res, 0.0), 1e-9)
            self.progress.update(t.images_shown, resolution=res, phase=t.phase.stage.phase,
                                 alpha=t.phase.alpha(t.images_shown), img_per_s=ips,
                                 losses={"D": mean[0], "G": mean[1]})

    def _diverged(self, rows: np.ndarray) -> None:
        """Roll back to the newest checkpoint, log it, and stop (every rank gets here together:
        the stats were averaged over ranks)."""
        t = self.trainer
        names = t.stat_names
        bad = [names[j] for j in range(rows.shape[1]) if not np.isfinite(rows[:, j]).all()]
        at_kimg = t.images_shown / 1000
        where = f"{at_kimg:g} kimg in phase {t.phase.stage if t.phase else '?'}"
        found = list_checkpoints(self.run_dir.checkpoints)
        if not found:
            raise TrainingDiverged(f"non-finite {', '.join(bad)} at {where}; there is no "
                                   f"checkpoint to roll back to", None)
        t.restore(load_checkpoint(found[-1]))
        self.window = []
        self._event("nonfinite", losses=bad, at_kimg=at_kimg, rolled_back_to=found[-1].name)
        raise TrainingDiverged(
            f"non-finite {', '.join(bad)} at {where}: the phase is stopped and the run rolled "
            f"back to {found[-1].name} ({t.images_shown / 1000:g} kimg); the run folder is "
            f"intact. To go on, change what diverged (e.g. a lower learning rate) and resume "
            f"with --resume {found[-1]} and the edited spec",
            found[-1],
        )

    def _tick(self, force: bool = False) -> None:
        t = self.trainer
        assert t.phase is not None
        if self.window:
            rows = np.concatenate(self.window)
            mean = rows.mean(axis=0)
            stats = {k: float(v) for k, v in zip(t.stat_names, mean, strict=True)}
        elif not force:
            return
        else:
            stats = {}
        self.window = []
        if not self.main:
            return
        self.tick_count += 1 if not force else 0
        res = t.phase.resolution
        ips = self.train_images.get(res, 0) / max(self.train_seconds.get(res, 0.0), 1e-9)
        elapsed = self.elapsed_before + sum(self.train_seconds.values())
        record: dict[str, Any] = {
            "tick": self.tick_count,
            "resolution": res,
            "phase": t.phase.stage.phase,
            "alpha": t.phase.alpha(t.images_shown),
            "minibatch": t.phase.minibatch,
            "learning_rate": t.phase.learning_rate,
            "img_per_s": round(ips, 2),
            "elapsed_s": round(elapsed, 3),
            **stats,
        }
        if stats:
            self._event("tick", **record)
            self.ticks.append({"kimg": t.images_shown / 1000, **record})
        grid = image_grid(t.sample(self.grid_z), *self.grid_shape)
        save_grid(self.run_dir.grids / f"fakes{t.images_shown:09d}.png", grid)
        save_grid(self.run_dir.grids / "latest.png", grid)
        if self.board is not None:
            step = t.images_shown
            scalars: dict[str, float] = {f"Loss/{k}": v for k, v in stats.items()}
            scalars.update({"Progress/kimg": t.images_shown / 1000, "Progress/alpha": record["alpha"],
                            "Progress/resolution": res, "Progress/minibatch": t.phase.minibatch,
                            "Progress/learning_rate": t.phase.learning_rate,
                            "Timing/img_per_s": ips})
            self.board.scalars(scalars, step)
            self.board.image("fakes", grid, step)
            self.board.flush()
        plot_losses(self.run_dir.plots / "losses.png", self.ticks, self.phase_marks)
        if stats:
            losses = "  ".join(f"{k} {v:+.4f}" for k, v in stats.items())
            self._say(f"tick {self.tick_count:<4} kimg {t.images_shown / 1000:9.3f}  "
                      f"{res}x{res} {t.phase.stage.phase:<6} alpha {record['alpha']:.3f}  "
                      f"{ips:8.1f} img/s  {losses}  time {format_duration(elapsed)}")

    def _save_reals(self) -> None:
        if not self.main:
            return
        rows, cols = self.grid_shape
        res = self.program.final_stage.resolution
        level = self.dataset.images(res)
        count = min(rows * cols, self.dataset.num_images)
        index = np.sort(np.random.default_rng(derive_seed(self.seed, "reals")).choice(
            self.dataset.num_images, count, replace=False))
        images = torch.from_numpy(np.asarray(level[index]))
        if count < rows * cols:
            images = torch.cat([images, images.new_zeros((rows * cols - count, *images.shape[1:]))])
        save_grid(self.run_dir.grids / "reals.png", image_grid(images, rows, cols))

    def _checkpoint(self) -> None:
        t = self.trainer
        if self.main:
            window = np.concatenate(self.window).tolist() if self.window else []
            extra = {"kimg": self.kimg, "data": str(self.data), "run": self.run_dir.name,
                     "elapsed_s": self.elapsed_before + sum(self.train_seconds.values()),
                     "tick_window": window}  # stats of the unfinished tick: same log on resume
            keep = self.program.spec.training.snapshot.keep
            path = save_checkpoint(t.state(extra), self.run_dir.checkpoints, keep=keep)
            self.last_checkpoint = path
            self._event("checkpoint", path=str(path.relative_to(self.run_dir.path)))
        distr.barrier(self.env)

    def _evaluate(self) -> None:
        """Metrics of G EMA samples against real images at the current stage (rank 0)."""
        t = self.trainer
        evaluation = self.program.spec.training.evaluation
        if self.main:
            assert t.phase is not None
            try:
                results = self._compute_metrics(evaluation.metrics, evaluation.num_images)
            except Exception as err:  # noqa: BLE001 - a failing metric must not lose the run
                self._event("metrics_failed", error=f"{type(err).__name__}: {err}")
                self._say(f"metrics failed at {t.images_shown / 1000:g} kimg: "
                          f"{type(err).__name__}: {err}")
            else:
                self.metrics = results
                self._event("metrics", resolution=t.phase.resolution, **results)
                if self.board is not None:
                    self.board.scalars({f"Metrics/{k}": v for k, v in results.items()},
                                       t.images_shown)
                shown = "  ".join(f"{k} {v:.4g}" for k, v in results.items())
                self._say(f"metrics at {t.images_shown / 1000:g} kimg "
                          f"({t.phase.resolution}x{t.phase.resolution}): {shown}")
        distr.barrier(self.env)

    def _compute_metrics(self, names: Sequence[str], num: int) -> dict[str, float]:
        from progan_dsl.metrics import evaluate
        from progan_dsl.metrics.images import subset_indices

        t = self.trainer
        assert t.phase is not None
        res, alpha = t.phase.resolution, t.phase.alpha(t.images_shown)
        index = subset_indices(self.dataset.num_images, num)
        real = torch.from_numpy(np.asarray(self.dataset.images(res)[index])).float()
        if alpha < 1.0:  # the reals D sees now: faded like the loader fades them
            low = torch.from_numpy(np.asarray(self.dataset.images(res // 2)[index])).float()
            real = torch.lerp(torch.nn.functional.interpolate(low, scale_factor=2.0), real, alpha)
        real_u8 = real.round().clamp(0, 255).to(torch.uint8)
        z = torch.randn(len(index), self.program.spec.architecture.latent_size,
                        generator=torch.Generator().manual_seed(derive_seed(self.seed, "metrics")))
        fake_u8 = t.sample(z, batch=256)
        return evaluate(names, real_u8, fake_u8, device=self.env.device, seed=self.seed)

    def _finish(self, wall_start: float) -> TrainResult:
        t = self.trainer
        result = self._result(wall_start)
        if self.main:
            self._event("done", elapsed_s=self.elapsed_before + sum(self.train_seconds.values()),
                        img_per_s={str(k): v for k, v in result.img_per_s.items()}, **self.metrics)
            speeds = ", ".join(f"{r}x{r} {v:.1f}" for r, v in sorted(result.img_per_s.items()))
            self._say(f"done: {t.images_shown / 1000:g} kimg in {format_duration(result.seconds)} "
                      f"(img/s: {speeds}); run folder {self.run_dir.path}")
            if self.metrics:
                shown = "  ".join(f"{k} {v:.4g}" for k, v in self.metrics.items())
                self._say(f"final metrics: {shown}")
            self._say(f"last grid: {self.run_dir.grids / 'latest.png'}")
        return result

    def _result(self, wall_start: float, *, already_done: bool = False) -> TrainResult:
        speeds = {res: self.train_images[res] / max(self.train_seconds[res], 1e-9)
                  for res in self.train_images}
        return TrainResult(
            run_dir=self.run_dir.path,
            images_shown=self.trainer.images_shown,
            seconds=time.perf_counter() - wall_start,
            img_per_s=speeds,
            metrics=self.metrics,
            checkpoint=self.last_checkpoint or self.run_dir.latest_checkpoint(),
            already_done=already_done,
        )


__all__ = ["EXIT_DIVERGED", "TrainOptions", "TrainResult", "Trainer", "TrainingDiverged", "train"]
