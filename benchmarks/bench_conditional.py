"""Does a class-conditional generator draw the class it is asked for? A digit classifier trained on
the real digits (`digit_classifier`) labels `--per-class` generated images of every class; the
table gives, per class, how many it labelled as requested and the label it most often gave
instead. Targets: a mean per-class accuracy of at least 90% and at least 75% for every class.

Drawing: z float32 [N, latent_size] standard normal from `--seed`, labels float32 one-hot
[N, classes], `--per-class` images of class 0, then of class 1, ...; the generator is the EMA
generator of the checkpoint's stable stage (`Checkpoint.generator`), images [-1, 1] -> uint8
(`images.to_uint8`). The classifier reads the dataset at `--data` (its labels must be the classes
the network was trained with) at the generator's resolution (an earlier stage, e.g.
`--resolution 16` of a run in its 32x32 fade-in, is judged by a classifier of 16x16 digits); it
is cached in benchmarks/results/ (first run: a couple of minutes of training). Without
`--network`, only the classifier's accuracy on the held-out real digits is reported: the ceiling
a generator can reach. Writes `benchmarks/results/conditional.json`.

    progan-bench conditional -- --network runs/00000-mnist_32_conditional
    progan-bench conditional -- --network RUN/checkpoints/checkpoint-000096000.pt --per-class 500
    progan-bench conditional                  the classifier alone (its held-out accuracy)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from progan_dsl.errors import UserError
from progan_dsl.images import to_uint8

from .common import (
    RESULTS,
    add_output,
    add_threads,
    apply_threads,
    bench_parser,
    machine,
    print_table,
    save,
)
from .digit_classifier import COLUMNS, FULL, QUICK, AccuracyTable, DigitClassifier, load_classifier

# The acceptance targets of class-conditional generation on the bundled digits: the classifier
# labels the generated digits as requested at least this often, on average over the classes and
# for every single class.
MEAN_TARGET = 0.90
MIN_TARGET = 0.75
PER_CLASS = 100  # generated images per class (--per-class)
QUICK_PER_CLASS = 20  # with --quick
BATCH = 100  # images per generator call (--batch)
DEFAULT_DATA = Path("data/mnist32")
EXAMPLES = [line.strip() for line in (__doc__ or "").rstrip().split("\n\n")[-1].splitlines()]

Generator = Callable[[Tensor, Tensor], Tensor]  # (z [N, latent], one-hot labels [N, classes])


def draw(
    generator: Generator,
    *,
    classes: int,
    latent_size: int,
    per_class: int,
    seed: int = 0,
    batch: int = BATCH,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` images of each class, class by class: uint8 [N, C, H, W] and the class index
    each was drawn for, int64 [N]. z comes from `seed` (the same for any `batch`)."""
    intended = np.repeat(np.arange(classes, dtype=np.int64), per_class)
    z = torch.randn(len(intended), latent_size, generator=torch.Generator().manual_seed(seed))
    labels = torch.nn.functional.one_hot(torch.from_numpy(intended), classes).float()
    out = []
    with torch.no_grad():
        for start in range(0, len(intended), batch):
            end = start + batch
            images = generator(z[start:end].to(device), labels[start:end].to(device))
            out.append(to_uint8(images.detach().float().cpu()))
    return torch.cat(out).numpy(), intended


def evaluate_generator(
    generator: Generator,
    judge: DigitClassifier,
    *,
    latent_size: int,
    per_class: int,
    seed: int = 0,
    batch: int = BATCH,
    device: str | torch.device = "cpu",
) -> AccuracyTable:
    """Per-class accuracy of the judge on `per_class` images drawn for each of its classes."""
    images, intended = draw(
        generator,
        classes=len(judge.class_names),
        latent_size=latent_size,
        per_class=per_class,
        seed=seed,
        batch=batch,
        device=device,
    )
    return judge.evaluate(images, intended)


def verdict(table: AccuracyTable) -> dict[str, Any]:
    """Whether the table meets the targets, and the line that says so."""
    passed = table.mean >= MEAN_TARGET and table.minimum >= MIN_TARGET
    line = (
        f"{'PASS' if passed else 'FAIL'}: mean per-class accuracy {table.mean:.1%} (target "
        f"{MEAN_TARGET:.0%}), lowest {table.minimum:.1%} (target {MIN_TARGET:.0%} for every class)"
    )
    return {"passed": passed, "mean_target": MEAN_TARGET, "min_target": MIN_TARGET, "line": line}


def load_network(network: str | Path, resolution: int | None, device: str) -> dict[str, Any]:
    """The conditional EMA generator of a run folder or checkpoint file, and what it is."""
    from progan_dsl.checkpoint import Checkpoint

    ckpt = Checkpoint.load(network)
    arch = ckpt.loaded.spec.architecture
    if arch.num_classes == 0:
        raise UserError(
            f"{network}: the generator is unconditional (its spec has no "
            "architecture.conditioning); this benchmark needs a class-conditional one"
        )
    generator = ckpt.generator(resolution=resolution).to(device)
    return {
        "generator": generator,
        "classes": arch.num_classes,
        "latent_size": arch.latent_size,
        "resolution": ckpt.stable_stage(resolution).resolution,
        "info": {
            "network": str(network),
            "checkpoint": str(ckpt.path),
            "stage": str(ckpt.stable_stage(resolution)),
            "images_shown": ckpt.images_shown,
            "spec_hash": ckpt.spec_hash,
            "classes": arch.num_classes,
            "conditioning": arch.conditioning.model_dump() if arch.conditioning else None,
        },
    }


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def _positive(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text: str) -> int:
    value = _whole(text)
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be in 0..2**63 - 1, got {value}")
    return value


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = bench_parser("conditional", __doc__.split("\n\n")[0])
    parser.epilog = "examples:\n  " + "\n  ".join(EXAMPLES)
    parser.add_argument(
        "--network",
        type=Path,
        default=None,
        metavar="RUN_OR_CHECKPOINT",
        help="a run folder (its newest checkpoint) or a checkpoint file of a class-conditional "
        "generator; without it only the classifier's held-out accuracy is reported",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="labelled dataset of the real images the classifier learns (default data/mnist32)",
    )
    parser.add_argument(
        "--per-class",
        type=_positive,
        default=None,
        metavar="N",
        help=f"generated images per class (default {PER_CLASS}; {QUICK_PER_CLASS} with --quick)",
    )
    parser.add_argument(
        "--seed", type=_seed, default=0, help="seed of the latents, 0 to 2**63 - 1 (default 0)"
    )
    parser.add_argument("--batch", type=_positive, default=BATCH, help="images per G call")
    parser.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="stable stage to draw from (default: the checkpoint's own stable stage)",
    )
    parser.add_argument("--device", default="cpu", help="where G runs: cpu or cuda")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: a classifier trained on 4,000 images, "
        f"{QUICK_PER_CLASS} images per class",
    )
    parser.add_argument(
        "--retrain", action="store_true", help="train the classifier again, ignoring its cache"
    )
    parser.add_argument(
        "--classifier-cache",
        type=Path,
        default=RESULTS,
        metavar="DIR",
        help="where trained classifiers are kept, keyed by config and data (default "
        "benchmarks/results)",
    )
    add_threads(parser)
    add_output(parser, "conditional")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: CUDA is not available here (use --device cpu)")
    threads = apply_threads(args.threads)
    per_class = args.per_class or (QUICK_PER_CLASS if args.quick else PER_CLASS)

    network = None
    if args.network is not None:  # before the classifier: a bad network fails at once
        network = load_network(args.network, args.resolution, args.device)
    judge = load_classifier(
        args.data,
        QUICK if args.quick else FULL,
        resolution=network["resolution"] if network else None,
        cache_dir=args.classifier_cache,
        retrain=args.retrain,
    )
    held_out = judge.held_out
    print(
        f"digit classifier ({'reused' if judge.reused else 'trained'}, {judge.cache.name}): "
        f"held-out real digits, mean per-class accuracy {held_out.mean:.2%}, lowest "
        f"{held_out.minimum:.2%}; trained in {judge.train_cpu_seconds:.0f} CPU s",
        flush=True,
    )
    payload: dict[str, Any] = {
        "benchmark": "conditional",
        "quick": args.quick,
        "threads": threads,
        "machine": machine(args.device),
        "data": str(args.data),
        "classifier": judge.describe(),
        "network": None,
    }
    if network is None:
        print_table(held_out.printable(), COLUMNS)
    else:
        if network["classes"] != len(judge.class_names):
            raise UserError(
                f"{args.network}: the generator has {network['classes']} classes, the dataset "
                f"{args.data} has {len(judge.class_names)} ({', '.join(judge.class_names)})"
            )
        table = evaluate_generator(
            network["generator"],
            judge,
            latent_size=network["latent_size"],
            per_class=per_class,
            seed=args.seed,
            batch=args.batch,
            device=args.device,
        )
        result = verdict(table)
        print(f"generated digits of {network['info']['checkpoint']} ({network['info']['stage']}):")
        print_table(table.printable(), COLUMNS)
        print(result["line"], flush=True)
        payload.update(
            network=network["info"],
            per_class=per_class,
            seed=args.seed,
            generated=table.to_json(),
            **{k: result[k] for k in ("passed", "mean_target", "min_target")},
        )
    save("conditional", payload, args)
    return payload


if __name__ == "__main__":
    from progan_dsl.cli import _run  # errors printed as by every command (exit 2)

    def _main(argv: Sequence[str] | None) -> int:
        run(argv)
        return 0

    sys.exit(_run(_main, None))
