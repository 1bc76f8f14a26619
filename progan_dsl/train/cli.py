"""`progan-train`: parse the command line, print the schedule (`--dry-run`) or call `train`.

Thin on purpose: the run itself is `progan_dsl.train.loop.train`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from progan_dsl.cliutil import UserErrorParser, non_negative_int, positive_int

EXAMPLES = """\
examples:
  progan-train specs/mnist_32.yaml --data data/mnist32 --device cpu
  progan-train specs/mnist_32.yaml --dry-run
  progan-train specs/celebahq_1024.yaml --data data/celebahq --resume auto
  progan-train specs/mnist_32.yaml --resume runs/00003-mnist_32/checkpoints/checkpoint-000120000.pt
  torchrun --standalone --nproc_per_node 2 -m progan_dsl.train specs/mnist_32.yaml --device cpu

A run folder (OUTDIR/NNNNN-<spec name>/) holds the spec (as given and resolved), the graph dump,
log.jsonl, grids/, plots/, tensorboard/ and checkpoints/. Exit status: 0 done, 2 bad input,
3 a non-finite loss stopped the run (rolled back to the last checkpoint).
"""


def parser() -> argparse.ArgumentParser:
    p = UserErrorParser(
        prog="progan-train",
        description="Grow and train a ProGAN spec: phases, fade-ins, minibatch and learning rate "
        "as the spec says; checkpoints that resume bit for bit.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", help="spec YAML file")
    p.add_argument("--data", metavar="DIR",
                   help="dataset folder from progan-dataset (default: training.dataset.path)")
    p.add_argument("--outdir", metavar="DIR", default="runs", help="where run folders go (runs)")
    p.add_argument("--kimg", type=float, metavar="N",
                   help="train for N thousand images in all (default: the spec's total_kimg)")
    p.add_argument("--resume", metavar="auto|PATH",
                   help="'auto': continue the newest run of this spec in OUTDIR (or start one); "
                   "PATH: a checkpoint file or run folder")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when available")
    p.add_argument("--seed", type=int, metavar="S", help="seed of a new run (default 0)")
    p.add_argument("--workers", type=non_negative_int, default=1, metavar="N",
                   help="data prefetch threads (default 1; results do not depend on it)")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="CPU compute threads (default: torch's choice, one per core; on a machine "
                   "busy with other work, fewer threads than cores is much faster)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, tick lines only")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved settings and phase schedule, and exit")
    return p


def dry_run(spec_path: str, kimg: float | None, device: str | None) -> str:
    """The text `--dry-run` prints: resolved training settings and the phase schedule."""
    from progan_dsl.compiler import compile_spec
    from progan_dsl.train.schedule import build_schedule, format_schedule

    program = compile_spec(spec_path)
    spec, training = program.spec, program.spec.training
    schedule = build_schedule(spec, kimg)
    final = program.final_stage
    opt = training.optimizer
    loss = training.loss.model_dump(mode="json")
    every = training.evaluation.every_kimg
    every_eval = f"every {every:g} kimg and " if every else ""
    lines = [
        f"spec        {spec.name} ({program.loaded.path}, sha256 {program.loaded.hash[:16]})",
        f"networks    G {program.params('G', final):,} / D {program.params('D', final):,} "
        f"parameters at {final}; latent {spec.architecture.latent_size}",
        f"loss        {', '.join(f'{k}={v}' for k, v in loss.items())}",
        f"optimizer   adam lr={opt.lr:g} betas=({opt.beta1:g}, {opt.beta2:g}) eps={opt.eps:g}, "
        f"state {'reset' if opt.reset_per_phase else 'kept'} at each phase",
        f"G EMA       {'decay ' + format(training.ema.decay, 'g') if training.ema.enabled else 'off'}",
        f"precision   {training.precision} (bf16 autocast on CUDA only; CPU runs fp32); "
        f"device {device or 'cuda if available, else cpu'}",
        f"intervals   tick {training.tick_kimg:g} kimg, checkpoint {training.snapshot.every_kimg:g} "
        f"kimg (keep {training.snapshot.keep}), metrics {', '.join(training.evaluation.metrics)} "
        f"{every_eval}at the end",
        f"D steps     {training.d_repeats} per G step",
        "",
        format_schedule(schedule, training.d_repeats),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.dry_run:
        print(dry_run(args.spec, args.kimg, args.device))
        return 0
    from progan_dsl.train.loop import EXIT_DIVERGED, TrainingDiverged, TrainOptions, train

    options = TrainOptions(
        spec=args.spec,
        data=args.data,
        outdir=args.outdir,
        kimg=args.kimg,
        resume=args.resume,
        device=args.device,
        seed=args.seed,
        workers=args.workers,
        threads=args.threads,
        progress=False if args.no_progress else None,
        command=["progan-train", *(sys.argv[1:] if argv is None else argv)],
    )
    try:
        train(options)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    return 0
