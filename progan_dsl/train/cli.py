"""`progan-train`: parse the command line, print the schedule (`--dry-run`) or call `train`.

Thin on purpose: the run itself is `progan_dsl.train.loop.train`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from progan_dsl.spec import LoadedSpec

EXAMPLES = """\
examples:
  progan-train specs/mnist_32.yaml --data data/mnist32 --device cpu
  progan-train specs/mnist_32.yaml --dry-run
  progan-train specs/celebahq_1024.yaml --data data/celebahq --resume auto
  progan-train specs/mnist_32.yaml --resume runs/00003-mnist_32/checkpoints/checkpoint-000120000.pt
  progan-train specs/mnist_32.yaml --set training.schedule.total_kimg=120 --dry-run
  torchrun --standalone --nproc_per_node 2 -m progan_dsl.train specs/mnist_32.yaml --device cpu

A run folder (OUTDIR/NNNNN-<spec name>/) holds the spec (as given and resolved), the graph dump,
log.jsonl, log.txt, grids/, plots/, tensorboard/ and checkpoints/. Ctrl-C or SIGTERM writes a
checkpoint and prints the command that resumes. Exit status: 0 done, 2 bad input (or a full
disk), 3 a non-finite loss stopped the run (rolled back to the last checkpoint), 130/143 stopped
by SIGINT/SIGTERM after a checkpoint.
"""


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
        type=positive_float,
        metavar="N",
        help="train for N thousand images in all (default: the spec's total_kimg)",
    )
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
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved settings and phase schedule, and exit",
    )
    add_common(p)
    return p


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
        f"D steps     {training.d_repeats} per G step",
        "",
        format_schedule(schedule, training.d_repeats),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from progan_dsl.spec import load_spec

    loaded = load_spec(args.spec, overrides=args.overrides)
    if args.dry_run:
        print(dry_run(loaded, args.kimg, args.device))
        return 0
    from progan_dsl.train.fast import FastPaths
    from progan_dsl.train.loop import (
        EXIT_DIVERGED,
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
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as err:
        print(str(err), file=sys.stderr)
        return err.exit_code
    return 0
