"""Which overfitting heuristic suits a WGAN-GP critic? For each checkpoint of a run trained without
augmentation, D scores K training reals, K held-out reals and K fakes of the training G, and the
table gives the heuristics adaptive discriminator augmentation (ADA, Karras et al. 2020) could
steer its augmentation probability by, next to the overfitting they should track.

- r_t = E[sign D(train)]: ADA's heuristic, built for the logistic loss (D a logit centred at 0).
- r_gap = E_i[sign(D(real_i) - D(fake_i))], reals and fakes paired by index (r_gap_tr with
  training reals, r_gap_val with held-out ones); auc_tr / auc_val: the same over all K x K pairs,
  2 * P(D(real) > D(fake)) - 1 (ties count half).
- r_v = (E D(train) - E D(val)) / (E D(train) - E D(fake)): ADA's validation measure of
  overfitting (0: D scores unseen reals like training reals; 1: it tells them apart as well as it
  tells reals from fakes), r_v_se its sampling error (that of E D(train) - E D(val), over the
  span E D(train) - E D(fake): large where D hardly tells reals from fakes); auc_tv:
  2 * P(D(train) > D(val)) - 1 over all pairs, a scale-free form.

Drawing: D and the training G (not G EMA: D trains against G) of the checkpoint's stage at the
trainer's alpha (the fade-in weight of its last group of iterations); reals served as the loader
serves them at that alpha (`served_reals`: faded during a fade-in). Training reals: K images of the
run's dataset in an order drawn from `--seed`; held-out reals: images perm[N:N+K] of `--held-out`
where perm = numpy default_rng(`--subset-seed`).permutation(its images) and N the training set's
size (the split `progan-dataset create --max-images N --seed S` makes; checked: the training set
must be perm[:N]); fakes: G of K latents from `--seed`. D scores them in minibatches of the
resolution's training minibatch, its minibatch-stddev groups laid out as in training. Writes
`benchmarks/results/ada_heuristics.json`.

    progan-bench ada_heuristics -- runs/none/00000-mnist_32 runs/none/00001-mnist_32
    progan-bench ada_heuristics -- RUN --images 500 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from progan_dsl.errors import UserError

from .common import add_output, add_threads, apply_threads, bench_parser, machine, print_table, save

IMAGES = 2000  # K: training reals, held-out reals and fakes scored per checkpoint (--images)
DEFAULT_HELD_OUT = Path("data/mnist32")
EXAMPLES = [line.strip() for line in (__doc__ or "").rstrip().split("\n\n")[-1].splitlines()]
COLUMNS = [
    "run",
    "kimg",
    "stage",
    "alpha",
    "D_train",
    "D_val",
    "D_fake",
    "r_t",
    "r_gap_tr",
    "auc_tr",
    "r_gap_val",
    "auc_val",
    "r_v",
    "r_v_se",
    "auc_tv",
]


# ---- the heuristics ---------------------------------------------------------------------------


def pairwise_gap(a: np.ndarray, b: np.ndarray) -> float:
    """2 * P(a_i > b_j) - 1 over all pairs (ties count half) = E[sign(a_i - b_j)], by sorting."""
    b_sorted = np.sort(b)
    below = np.searchsorted(b_sorted, a, side="left")  # b_j < a_i
    not_above = np.searchsorted(b_sorted, a, side="right")  # b_j <= a_i
    wins = below.sum() + 0.5 * (not_above - below).sum()
    return float(2.0 * wins / (len(a) * len(b)) - 1.0)


@dataclass(frozen=True)
class Heuristics:
    """One checkpoint's scores summarised (see the module docstring for each)."""

    D_train: float
    D_val: float
    D_fake: float
    sd_train: float
    sd_fake: float
    r_t: float
    r_t_val: float
    r_gap_tr: float
    auc_tr: float
    r_gap_val: float
    auc_val: float
    r_v: float | None  # None when E D(train) == E D(fake)
    r_v_se: float | None  # r_v's sampling error: that of E D(train) - E D(val), over the span
    auc_tv: float


def heuristics(train: np.ndarray, val: np.ndarray, fake: np.ndarray) -> Heuristics:
    """The heuristics of D's scores of training reals, held-out reals and fakes (float64 [K] each,
    train[i] paired with fake[i] and val[i] with fake[i])."""
    if not len(train) == len(val) == len(fake) > 0:
        raise ValueError("train, val and fake need the same positive number of scores")
    m_train, m_val, m_fake = (float(np.mean(x)) for x in (train, val, fake))
    span = m_train - m_fake
    return Heuristics(
        D_train=m_train,
        D_val=m_val,
        D_fake=m_fake,
        sd_train=float(np.std(train)),
        sd_fake=float(np.std(fake)),
        r_t=float(np.mean(np.sign(train))),
        r_t_val=float(np.mean(np.sign(val))),
        r_gap_tr=float(np.mean(np.sign(train - fake))),
        auc_tr=pairwise_gap(train, fake),
        r_gap_val=float(np.mean(np.sign(val - fake))),
        auc_val=pairwise_gap(val, fake),
        r_v=(m_train - m_val) / span if span != 0 else None,
        r_v_se=float(np.sqrt((np.var(train) + np.var(val)) / len(train)) / abs(span))
        if span != 0
        else None,
        auc_tv=pairwise_gap(train, val),
    )


def correlation(x: Sequence[float | None], y: Sequence[float | None]) -> float | None:
    """Pearson correlation over the rows where both are known (None: fewer than 3, or constant)."""
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if a is not None and b is not None]
    if len(pairs) < 3:
        return None
    a, b = np.array(pairs, dtype=np.float64).T
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


# ---- the reals ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reals:
    """Where the training and held-out reals come from: a dataset and image indices each."""

    train_dir: Path
    train_index: np.ndarray  # K indices into the training dataset, in scoring order
    held_out_dir: Path
    held_out_index: np.ndarray  # K indices into the held-out dataset

    def describe(self) -> dict[str, Any]:
        return {
            "train": str(self.train_dir),
            "held_out": str(self.held_out_dir),
            "held_out_first_indices": self.held_out_index[:5].tolist(),
        }


def split_reals(
    train_dir: Path, held_out_dir: Path, images: int, subset_seed: int, seed: int
) -> Reals:
    """K training reals (a seeded order of the training set) and K held-out reals: the images
    after the training subset in the held-out dataset's permutation. UserError when the training
    set is not that subset or too few images are left."""
    from progan_dsl.data.dataset import ImageDataset

    train, full = ImageDataset(train_dir), ImageDataset(held_out_dir)
    n, total = train.num_images, full.num_images
    perm = np.random.default_rng(subset_seed).permutation(total)
    if images > n or n + images > total:
        raise UserError(
            f"--images {images}: the training set {train_dir} has {n} images and the held-out "
            f"dataset {held_out_dir} {total - n} beyond them; pass --images at most "
            f"{min(n, max(total - n, 0))}"
        )
    top = train.resolutions[-1]
    if top not in full.resolutions or train.shape(top) != full.shape(top):
        raise UserError(f"{held_out_dir}: its {top}x{top} level does not match {train_dir}'s")
    subset = np.asarray(full.images(top)[np.sort(perm[:n])])[np.argsort(np.argsort(perm[:n]))]
    if not np.array_equal(subset, np.asarray(train.images(top))):
        raise UserError(
            f"{train_dir} is not the first {n} images of {held_out_dir} in the order of "
            f"numpy default_rng({subset_seed}).permutation({total}) (the split of "
            f"progan-dataset create --max-images {n} --seed {subset_seed}); pass the dataset it "
            "was made from with --held-out and its seed with --subset-seed"
        )
    order = np.random.default_rng(seed).permutation(n)[:images]
    return Reals(train_dir, order, held_out_dir, perm[n : n + images])


# ---- one checkpoint -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    train: np.ndarray
    val: np.ndarray
    fake: np.ndarray


def checkpoint_alpha(ckpt: Any) -> float:
    """The trainer's alpha at a checkpoint: its phase's fade-in weight at the point its last group
    of iterations read the schedule (`Trainer.alpha` after `Trainer.restore`)."""
    from progan_dsl.train.schedule import build_schedule

    state = ckpt.run_state
    schedule = build_schedule(ckpt.loaded.spec, state.kimg if state is not None else None)
    phase = schedule.phase_of(ckpt.stage)
    held = state.held_images if state is not None else ckpt.images_shown
    if state is not None and not held <= ckpt.images_shown:
        held = ckpt.images_shown
    return phase.alpha(held)


def score_checkpoint(ckpt: Any, reals: Reals, images: int, seed: int) -> tuple[float, Scores]:
    """(alpha, D's scores of the training reals, the held-out reals and the training G's fakes)."""
    from progan_dsl.data.dataset import ImageDataset
    from progan_dsl.data.loader import served_reals
    from progan_dsl.train.fast import DevicePaths, FastPaths

    if ckpt.D is None:
        raise UserError(f"{ckpt.path}: holds no D (a generator-only file)")
    program = ckpt.program()
    spec = program.spec
    if program.num_classes:
        raise UserError(f"{ckpt.path}: a class-conditional D; this benchmark scores unconditional")
    stage, resolution = ckpt.stage, ckpt.stage.resolution
    alpha = checkpoint_alpha(ckpt)
    batch = spec.training.schedule.minibatch[resolution]
    group = spec.architecture.mbstd_group_size or 1
    device = torch.device("cpu")
    paths = DevicePaths(FastPaths.plain().resolve(device), device, bf16=False)
    G, D = program.build("G", stage), program.build("D", stage)
    G.load_state_dict(ckpt.G)
    D.load_state_dict(ckpt.D)
    G.requires_grad_(False)
    D.requires_grad_(False)
    alpha_t = paths.scalar(alpha)
    critic = paths.critic(D, D, program.signature("D"), alpha_t, group)
    generate = paths.generator(G, program.signature("G"), alpha_t)

    def judge(x: Tensor) -> np.ndarray:
        out = [critic(x[i : i + batch]).scores.reshape(-1) for i in range(0, len(x), batch)]
        return torch.cat(out).double().numpy()

    z = torch.randn(
        images, spec.architecture.latent_size, generator=torch.Generator().manual_seed(seed)
    )
    with torch.no_grad():
        fakes = torch.cat([generate(z[i : i + batch], None) for i in range(0, images, batch)])
        train = served_reals(ImageDataset(reals.train_dir), resolution, reals.train_index, alpha)
        val = served_reals(
            ImageDataset(reals.held_out_dir), resolution, reals.held_out_index, alpha
        )
        scores = Scores(
            judge(torch.from_numpy(train)), judge(torch.from_numpy(val)), judge(fakes.float())
        )
    return alpha, scores


# ---- runs ------------------------------------------------------------------------------------


def run_data(folder: Path) -> Path:
    """The dataset a run trained on (its run.json, else its checkpoints' run state)."""
    info = folder / "run.json"
    if info.is_file():
        try:
            data = json.loads(info.read_text()).get("data")
        except (OSError, ValueError) as err:
            raise UserError(f"{info}: not readable as JSON ({err})") from None
        if isinstance(data, str):
            return Path(data)
    raise UserError(f"{folder}: no run.json naming the dataset; pass --data")


def evaluate_run(
    folder: Path,
    *,
    data: Path | None,
    held_out: Path,
    images: int,
    subset_seed: int,
    seed: int,
    log: bool = True,
) -> list[dict[str, Any]]:
    """One row per checkpoint of the run folder, oldest first."""
    from progan_dsl.checkpoint import Checkpoint, list_checkpoints

    files = list_checkpoints(folder / "checkpoints") or list_checkpoints(folder)
    if not files:
        raise UserError(f"{folder}: no checkpoint-*.pt files in this folder or its checkpoints/")
    reals = split_reals(data or run_data(folder), held_out, images, subset_seed, seed)
    rows = []
    for path in files:
        ckpt = Checkpoint.read(path)
        alpha, scores = score_checkpoint(ckpt, reals, images, seed)
        h = heuristics(scores.train, scores.val, scores.fake)
        row = {
            "run": folder.name,
            "checkpoint": path.name,
            "kimg": ckpt.images_shown / 1000,
            "stage": str(ckpt.stage),
            "alpha": round(alpha, 4),
            **asdict(h),
        }
        rows.append(row)
        if log:
            print(
                f"{folder.name} {path.name}: {row['stage']} alpha {alpha:.3f}, r_t {h.r_t:+.3f}, "
                f"r_gap_tr {h.r_gap_tr:+.3f}, r_v {h.r_v if h.r_v is None else round(h.r_v, 3)}",
                flush=True,
            )
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How each heuristic follows r_v across the checkpoints (Pearson, checkpoints after 0)."""
    trained = [r for r in rows if r["kimg"] > 0]
    r_v = [r["r_v"] for r in trained]
    return {
        f"corr_{name}_vs_r_v": correlation([r[name] for r in trained], r_v)
        for name in ("r_t", "r_gap_tr", "auc_tr", "r_gap_val", "auc_tv")
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
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in 0..2**32 - 1, got {value}")
    return value


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = bench_parser("ada_heuristics", __doc__.split("\n\n")[0])
    parser.epilog = "examples:\n  " + "\n  ".join(EXAMPLES)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folders")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="the training set (default: the dataset each run's run.json names)",
    )
    parser.add_argument(
        "--held-out",
        type=Path,
        default=DEFAULT_HELD_OUT,
        metavar="DIR",
        help="the dataset the training set was drawn from (default data/mnist32)",
    )
    parser.add_argument(
        "--subset-seed",
        type=_seed,
        default=0,
        help="the --seed the training set was drawn with (default 0)",
    )
    parser.add_argument(
        "--images",
        type=_positive,
        default=IMAGES,
        metavar="K",
        help=f"training reals, held-out reals and fakes per checkpoint (default {IMAGES})",
    )
    parser.add_argument(
        "--seed", type=_seed, default=0, help="seed of the latents and the reals' order"
    )
    add_threads(parser)
    add_output(parser, "ada_heuristics")
    args = parser.parse_args(argv)
    threads = apply_threads(args.threads)
    rows: list[dict[str, Any]] = []
    for folder in args.runs:
        rows += evaluate_run(
            folder,
            data=args.data,
            held_out=args.held_out,
            images=args.images,
            subset_seed=args.subset_seed,
            seed=args.seed,
        )
    print()
    print_table(rows, COLUMNS)
    summaries = {}
    for name in dict.fromkeys(r["run"] for r in rows):
        summaries[name] = summary([r for r in rows if r["run"] == name])
        cells = ", ".join(f"{k} {v:+.3f}" for k, v in summaries[name].items() if v is not None)
        print(f"{name}: {cells}", flush=True)
    payload: dict[str, Any] = {
        "benchmark": "ada_heuristics",
        "threads": threads,
        "machine": machine(),
        "images": args.images,
        "seed": args.seed,
        "subset_seed": args.subset_seed,
        "held_out": str(args.held_out),
        "rows": rows,
        "summary": summaries,
    }
    save("ada_heuristics", payload, args)
    return payload


if __name__ == "__main__":
    from progan_dsl.cli import _run  # errors printed as by every command (exit 2)

    def _main(argv: Sequence[str] | None) -> int:
        run(argv)
        return 0

    sys.exit(_run(_main, None))
