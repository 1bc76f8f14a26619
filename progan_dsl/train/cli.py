"""`progan-train`: parse the command line, print the schedule (`--dry-run`) or call `train`.

Thin on purpose: the run itself is `progan_dsl.train.loop.train`. The StyleGAN-style options
(`--snap`, `--mirror`, `--metrics`) are spelled-out `--set` overrides of the spec's own fields,
so they land in the run's spec.yaml and spec.resolved.yaml like any other setting. At the
boundary with the loop, two failures become one clear message: out of memory (the minibatch does
not fit: what would) and, under torchrun, a peer process that died.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from progan_dsl.cliutil import (
    add_common,
    add_device,
    add_set,
    non_negative_int,
    parser_for,
    positive_float,
    positive_int,
    seed_int,
)
from progan_dsl.errors import EXIT_USER_ERROR, UserError

if TYPE_CHECKING:
    from progan_dsl.spec import LoadedSpec

EXIT_PEER_LOST = 4  # exit status when another process of a torchrun job died

EXAMPLES = """\
examples:
  progan-train specs/mnist_32.yaml --data data/mnist32 --device cpu
  progan-train specs/mnist_32.yaml --dry-run
  progan-train specs/celebahq_1024.yaml --data data/celebahq --resume auto
  progan-train specs/mnist_32.yaml --resume runs/00003-mnist_32/checkpoints/checkpoint-000120000.pt
  progan-train specs/mnist_32.yaml --set training.schedule.total_kimg=120 --dry-run
  progan-train specs/ffhq_256.yaml --data data/ffhq --snap 10 --mirror --metrics swd,fid
  progan-train specs/mnist_32.yaml --data data/mnist32_2k --aug ada --target 0.6
  torchrun --standalone --nproc_per_node 2 -m progan_dsl.train specs/mnist_32.yaml --device cpu
  torchrun --standalone --nproc_per_node 4 --max-restarts 3 -m progan_dsl.train \
      specs/celebahq_1024.yaml --data data/celebahq --resume auto

A run folder (OUTDIR/NNNNN-<spec name>/) holds the spec (as given and resolved), the graph dump,
log.jsonl, log.txt, grids/, plots/, tensorboard/ and checkpoints/. Ctrl-C or SIGTERM writes a
checkpoint and prints the command that resumes. A closed stdout (`| head`) does not stop a run:
its lines then go to log.txt only. Exit status: 0 done, 2 bad input (a full disk, a minibatch
that does not fit in memory), 3 a non-finite loss stopped the run (rolled back to the last
checkpoint), 4 another process of a torchrun job died, 130/143 stopped by SIGINT/SIGTERM after a
checkpoint.
"""


def add_stylegan_options(p: argparse.ArgumentParser) -> None:
    """The options a StyleGAN user looks for first, each a `--set` of the spec's field."""
    p.add_argument(
        "--snap",
        type=positive_int,
        metavar="N",
        help="checkpoint every N ticks, i.e. training.snapshot.every_kimg = N x "
        "training.tick_kimg (StyleGAN's --snap; default: the spec's interval)",
    )
    p.add_argument(
        "--mirror",
        type=on_off,
        nargs="?",
        const=True,
        metavar="1|0",
        help="random x-flips of the training images: training.dataset.mirror "
        "(--mirror or --mirror=1 on, --mirror=0 off; default: the spec's)",
    )
    p.add_argument(
        "--metrics",
        type=metric_list,
        metavar="NAME,...",
        help="metrics computed during training: training.evaluation.metrics (swd, msssim, fid, "
        "kid, or a preset whose image counts an evaluation matches: fid10k, fid5k, swd16k), at "
        "every checkpoint unless the spec sets training.evaluation.every_kimg",
    )
    p.add_argument(
        "--aug",
        choices=("ada", "fixed", "noaug", "diffaugment"),
        help="augmentation of every image D sees: training.augment (StyleGAN2-ADA's --aug: ada "
        "adapts p, fixed holds --p, noaug turns it off; diffaugment: DiffAugment's policies; "
        "default: the spec's)",
    )
    p.add_argument(
        "--p",
        type=probability,
        metavar="P",
        help="augmentation probability: the fixed p (--aug fixed) or ADA's initial p",
    )
    p.add_argument(
        "--target",
        type=heuristic_target,
        metavar="T",
        help="target of ADA's overfitting heuristic: training.augment.target",
    )
    p.add_argument(
        "--augpipe",
        choices=("blit", "geom", "color", "bg", "bgc"),
        help="ADA's transforms by group (StyleGAN2-ADA's names): training.augment.transforms",
    )


def add_fast_path_switches(p: argparse.ArgumentParser) -> None:
    """--X / --no-X for each fast path and gradfix (default: the device's)."""
    for name, what in (
        ("channels-last", "modules and D inputs in NHWC"),
        ("paired-critic", "D on reals and fakes in one call where groups allow"),
        ("compile", "torch.compile of G and D's first-order calls"),
    ):
        switch = p.add_mutually_exclusive_group()
        dest = name.replace("-", "_")
        switch.add_argument(
            f"--{name}",
            dest=dest,
            action="store_true",
            default=None,
            help=f"fast path: {what} (default: the device's, see docs/training.md)",
        )
        switch.add_argument(f"--no-{name}", dest=dest, action="store_false", help="turn it off")
    gradfix = p.add_mutually_exclusive_group()
    gradfix.add_argument(
        "--gradfix",
        dest="gradfix",
        action="store_true",
        default=None,
        help="convs with differentiable backward kernels (default: on CUDA only)",
    )
    gradfix.add_argument(
        "--no-gradfix", dest="gradfix", action="store_false", help="stock convs everywhere"
    )


def parser() -> argparse.ArgumentParser:
    p = parser_for(
        "progan-train",
        "Grow and train a ProGAN spec: phases, fade-ins, minibatch "
        "and learning rate as the spec says; checkpoints that resume bit for bit.",
        EXAMPLES,
    )
    p.add_argument("spec", help="spec YAML file")
    add_set(p)
    p.add_argument(
        "--data",
        metavar="DIR",
        help="dataset folder from progan-dataset (default: training.dataset.path)",
    )
    p.add_argument("--outdir", metavar="DIR", default="runs", help="where run folders go (runs)")
    p.add_argument(
        "--kimg",
        type=kimg_amount,
        metavar="N",
        help="train for N thousand images in all (default: the spec's total_kimg)",
    )
    add_stylegan_options(p)
    p.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="'auto': continue the newest run of this spec in OUTDIR (or start one); "
        "PATH: a checkpoint file or run folder",
    )
    add_device(p)
    p.add_argument("--seed", type=seed_int, metavar="S", help="seed of a new run (default 0)")
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=1,
        metavar="N",
        help="data prefetch threads (default 1; results do not depend on it)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="CPU compute threads (default: the cores other work leaves free minus one spare, "
        "at least 1; on a machine busy with other work fewer threads are much faster)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar, tick lines only")
    add_fast_path_switches(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved settings and phase schedule, and exit",
    )
    add_common(p)
    return p


def kimg_amount(text: str) -> float:
    """`--kimg`: a finite number > 0 and at most the spec's bound on kimg values."""
    from progan_dsl.spec.models import MAX_KIMG

    value = positive_float(text)
    if value > MAX_KIMG:
        raise argparse.ArgumentTypeError(f"{text!r} is more than the {MAX_KIMG:,.0f} kimg allowed")
    return value


def probability(text: str) -> float:
    """`--p 0.2`: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability (0 to 1)")
    return value


def heuristic_target(text: str) -> float:
    """`--target 0.6`: a number strictly between -1 and 1 (the heuristics' range)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not -1.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not between -1 and 1 (exclusive)")
    return value


def on_off(text: str) -> bool:
    """`--mirror=1`: 1/0, true/false, yes/no, on/off."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not 1 or 0 (or true/false, on/off)")


@dataclass(frozen=True)
class MetricChoice:
    """What `--metrics` asked for."""

    text: str  # as typed
    names: tuple[str, ...]  # metric names (training.evaluation.metrics)
    num_images: int | None  # images per evaluation a preset fixes (training.evaluation.num_images)


def metric_list(text: str) -> MetricChoice:
    """`--metrics swd,fid10k`: the metric names and the images per evaluation. Names are those the
    registry knows and training computes; a registry preset is its metric with its image count,
    where a training evaluation (as many generated as real images, a fixed subset of the level)
    can match it."""
    from typing import get_args

    from progan_dsl.metrics.registry import PRESETS, resolve_metric_names
    from progan_dsl.spec.models import MetricName

    raw = [n.strip().lower() for n in text.split(",") if n.strip()]
    matched = [p for p in PRESETS.values() if p.num_real == p.num_fake]
    counts: set[int] = set()
    names: list[str] = []
    for name in raw:
        preset = PRESETS.get(name)
        if preset is None:
            names.append(name)
            continue
        if preset.num_real != preset.num_fake:
            raise argparse.ArgumentTypeError(
                f"preset '{name}' ({preset.describe()}) is not what a training evaluation "
                f"computes (as many generated as real images, a fixed subset); during training "
                f"use --metrics {preset.metric} (images: --set training.evaluation.num_images=N), "
                f"or progan-metrics --preset {name} on a checkpoint"
            )
        names.append(preset.metric)
        counts.add(preset.num_fake)
    if len(counts) > 1:
        raise argparse.ArgumentTypeError(
            f"presets with different image counts ({', '.join(map(str, sorted(counts)))}): a "
            f"training evaluation uses one count for all its metrics"
        )
    try:
        names = resolve_metric_names(names)
    except UserError as err:
        presets = ", ".join(p.name for p in matched)
        raise argparse.ArgumentTypeError(f"{err}; or a preset: {presets}") from None
    allowed = get_args(MetricName)
    for name in names:
        if name not in allowed:
            raise argparse.ArgumentTypeError(
                f"'{name}' is not computed during training (training computes: "
                f"{', '.join(allowed)}); use progan-metrics on a checkpoint for it"
            )
    return MetricChoice(text, tuple(names), counts.pop() if counts else None)


def style_overrides(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(option, its `--set` arguments) for each StyleGAN-style option given, in the spec's
    terms; applied after the `--set` arguments."""
    from progan_dsl.spec import load_spec

    out: list[tuple[str, list[str]]] = []
    augment_options = (args.aug, args.p, args.target, args.augpipe)
    if args.snap is None and args.mirror is None and args.metrics is None:
        if all(option is None for option in augment_options):
            return out
    base = load_spec(args.spec, overrides=args.overrides).spec.training
    every = base.snapshot.every_kimg
    if args.snap is not None:
        every = float(format(args.snap * base.tick_kimg, ".12g"))  # 3 x 0.064 is 0.192
        out.append((f"--snap {args.snap}", [f"training.snapshot.every_kimg={every!r}"]))
    if args.mirror is not None:
        value = "true" if args.mirror else "false"
        out.append((f"--mirror={int(args.mirror)}", [f"training.dataset.mirror={value}"]))
    if args.metrics is not None:
        choice: MetricChoice = args.metrics
        sets = [f"training.evaluation.metrics=[{', '.join(choice.names)}]"]
        if choice.num_images is not None:
            sets.append(f"training.evaluation.num_images={choice.num_images}")
        if base.evaluation.every_kimg is None:  # as StyleGAN does: at every snapshot
            sets.append(f"training.evaluation.every_kimg={every!r}")
        out.append((f"--metrics {choice.text}", sets))
    if any(option is not None for option in augment_options):
        out.append(augment_overrides(args, base.augment))
    return out


def augment_overrides(args: argparse.Namespace, current: Any) -> tuple[str, list[str]]:
    """StyleGAN2-ADA's --aug/--p/--target/--augpipe as `--set`s of training.augment, given the
    spec's `current` augmentation."""
    from progan_dsl.spec.models import ADA_PIPES, AdaAugment

    given = [
        f"--{name} {value}"
        for name, value in (
            ("aug", args.aug),
            ("p", args.p),
            ("target", args.target),
            ("augpipe", args.augpipe),
        )
        if value is not None
    ]
    label = " ".join(given)
    tweaks = [f"--{n}" for n in ("p", "target", "augpipe") if getattr(args, n) is not None]
    what = f"{' and '.join(tweaks)} {'sets' if len(tweaks) == 1 else 'set'} ADA's augmentation"
    if args.aug in ("noaug", "diffaugment"):
        if tweaks:
            raise UserError(f"{what}; --aug {args.aug} has none (use --aug ada or --aug fixed)")
        if args.aug == "noaug":
            return label, ["training.augment=null"]
        return label, ["training.augment={kind: diffaugment}"]
    ada = current if isinstance(current, AdaAugment) else None
    if args.aug is None and ada is None:
        raise UserError(
            f"{what}, and spec {args.spec} has "
            f"{'none' if current is None else current.kind}: add --aug ada or --aug fixed"
        )
    fixed = args.aug == "fixed" or (args.aug is None and ada is not None and ada.p is not None)
    fields: dict[str, str] = {}
    if args.aug == "fixed" and args.p is None and (ada is None or ada.p is None):
        raise UserError("--aug fixed needs --p P (the probability to hold)")
    if args.p is not None:
        fields["p" if fixed else "initial_p"] = repr(args.p)
    if args.aug == "ada":
        fields["p"] = "null"
    if args.target is not None:
        if fixed:
            raise UserError("--target steers an adaptive p; with a fixed p it has no effect")
        fields["target"] = repr(args.target)
    if args.augpipe is not None:
        fields["transforms"] = "[" + ", ".join(ADA_PIPES[args.augpipe]) + "]"
    if ada is None:
        inner = ", ".join(["kind: ada", *(f"{k}: {v}" for k, v in fields.items())])
        return label, [f"training.augment={{{inner}}}"]
    return label, [f"training.augment.{k}={v}" for k, v in fields.items()]


def dry_run(loaded: LoadedSpec, kimg: float | None, device: str | None) -> str:
    """The text `--dry-run` prints: resolved training settings and the phase schedule."""
    from progan_dsl.compiler import compile_spec
    from progan_dsl.train.schedule import build_schedule, format_schedule

    program = compile_spec(loaded)
    spec, training = program.spec, program.spec.training
    schedule = build_schedule(spec, kimg)
    final = program.final_stage
    opt = training.optimizer
    loss = training.loss.model_dump(mode="json")
    every = training.evaluation.every_kimg
    every_eval = f"every {every:g} kimg and " if every else ""
    ema = "decay " + format(training.ema.decay, "g") if training.ema.enabled else "off"
    lines = [
        f"spec        {spec.name} ({program.loaded.path}, sha256 {program.loaded.hash[:16]})",
        f"networks    G {program.params('G', final):,} / D {program.params('D', final):,} "
        f"parameters at {final}; latent {spec.architecture.latent_size}",
        f"loss        {', '.join(f'{k}={v}' for k, v in loss.items())}",
        f"optimizer   adam lr={opt.lr:g} betas=({opt.beta1:g}, {opt.beta2:g}) eps={opt.eps:g}, "
        f"state {'reset' if opt.reset_per_phase else 'kept'} at each phase",
        f"G EMA       {ema}",
        f"precision   {training.precision} (bf16 autocast on CUDA only; CPU runs fp32); "
        f"device {device or 'cuda if available, else cpu'}",
        f"intervals   tick {training.tick_kimg:g} kimg, "
        f"checkpoint {training.snapshot.every_kimg:g} kimg (keep {training.snapshot.keep}), "
        f"metrics {', '.join(training.evaluation.metrics)} {every_eval}at the end",
        f"data        x-flips (mirror) {'on' if training.dataset.mirror else 'off'}",
        f"D steps     {training.d_repeats} per G step",
        *([f"augment     {training.augment.describe()}"] if training.augment else []),
        "",
        format_schedule(schedule, training.d_repeats),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from progan_dsl.spec import load_spec

    styled = style_overrides(args)
    overrides = [*args.overrides, *(arg for _, sets in styled for arg in sets)]
    loaded = load_spec(args.spec, overrides=overrides)
    shown = "; ".join(f"{option}: {', '.join(sets)}" for option, sets in styled)
    if args.dry_run:
        print((f"options     {shown}\n" if shown else "") + dry_run(loaded, args.kimg, args.device))
        return 0
    if shown and not args.quiet:  # also in the run's spec.yaml, as --set lines
        tell(f"options: {shown}", sys.stdout)
    from progan_dsl.train.fast import FastPaths
    from progan_dsl.train.loop import (
        EXIT_DIVERGED,
        OutOfMemory,
        TrainingDiverged,
        TrainingInterrupted,
        TrainOptions,
        train,
    )

    options = TrainOptions(
        spec=loaded,
        data=args.data,
        outdir=args.outdir,
        kimg=args.kimg,
        resume=args.resume,
        device=args.device,
        seed=args.seed,
        workers=args.workers,
        threads=args.threads,
        progress=False if args.no_progress else None,
        quiet=args.quiet,
        gradfix=args.gradfix,
        fast=FastPaths(
            channels_last=args.channels_last, paired_critic=args.paired_critic, compile=args.compile
        ),
        command=["progan-train", *(sys.argv[1:] if argv is None else argv)],
    )
    try:
        train(options)
    except UserError as err:  # printed here, so a closed stderr cannot turn it into exit 0
        tell(f"error: {err}")
        return EXIT_USER_ERROR
    except TrainingDiverged as err:
        tell(f"error: {err}")
        return EXIT_DIVERGED
    except TrainingInterrupted as err:
        tell(str(err))
        return err.exit_code
    except (OutOfMemory, RuntimeError, MemoryError) as err:
        message = out_of_memory_message(err, loaded)
        if message is not None:
            tell(f"error: {message}")
            return EXIT_USER_ERROR
        from progan_dsl.train.distributed import launched, peer_lost

        if launched() and peer_lost(err):
            tell(f"error: {peer_lost_message(err)}")
            return EXIT_PEER_LOST
        raise
    return 0


def tell(line: str, stream: Any = None) -> None:
    """One line on stderr (or `stream`); a reader that went away is no reason to fail."""
    try:
        print(line, file=stream or sys.stderr, flush=True)
    except OSError:
        pass


# ---- failures at the boundary with the loop ----------------------------------------------------


def smaller_minibatch(minibatch: int, group: int | None, world_size: int) -> int | None:
    """The largest minibatch at most half of `minibatch` that the spec's batch rule allows
    (`minibatch_group_problems`: it splits over `world_size` processes, each share whole groups
    of min(group, minibatch) samples); None when there is none."""
    for smaller in range(minibatch // 2, 0, -1):
        share, rest = divmod(smaller, world_size)
        if not rest and share and (not group or share % min(group, smaller) == 0):
            return smaller
    return None


def out_of_memory_message(err: BaseException, loaded: LoadedSpec) -> str | None:
    """What to say when training ran out of memory (None if `err` is something else): where,
    with an `OutOfMemory` from the loop, and what would fit."""
    from progan_dsl.train.loop import OutOfMemory, is_out_of_memory

    if not isinstance(err, OutOfMemory) and not is_out_of_memory(err):
        return None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    group = loaded.spec.architecture.mbstd_group_size
    phase = err.phase if isinstance(err, OutOfMemory) else None
    if not isinstance(err, OutOfMemory) or phase is None:
        where, hint = "", "a smaller minibatch (--set training.schedule.minibatch.RES=N)"
    else:
        res, batch = phase.resolution, phase.minibatch
        where = (
            f" at {res}x{res} ({phase.stage.phase}, {err.images_shown / 1000:g} kimg): "
            f"minibatch {batch} does not fit in {err.device}'s memory"
        )
        smaller = smaller_minibatch(batch, group, world)
        hint = (
            f"a smaller minibatch, e.g. --set training.schedule.minibatch.{res}={smaller}"
            if smaller
            else f"a device with more memory, or more processes (minibatch {batch} is the "
            f"smallest that splits into whole minibatch-stddev groups over {world} process(es))"
        )
    cause = err.cause if isinstance(err, OutOfMemory) else err
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    kept = ""
    if isinstance(err, OutOfMemory):
        kept = (
            f"; the run folder {err.run_path} keeps its checkpoints: add --resume "
            f"{err.run_path} to go on from the newest"
        )
    return f"out of memory{where} ({first[:200]}). Try {hint}{kept}"


def peer_lost_message(err: BaseException) -> str:
    rank = os.environ.get("RANK", "?")
    return (
        f"rank {rank}: another process of this torchrun job died (a collective failed: "
        f"{str(err).strip().splitlines()[0][:160]}); its own output says why. With "
        f"--max-restarts, torchrun restarts the workers and they resume from the newest "
        f"checkpoint; otherwise resume with --resume auto"
    )
