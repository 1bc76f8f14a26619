"""Does augmenting D's inputs help on a small dataset, and does the augmentation leak into G?
Arms of finished runs (e.g. `none`: specs/mnist_32.yaml, `ada`: specs/mnist_32_augment.yaml),
all trained on one subset of the digits for the same number of images, are compared on FID, KID
and SWD against real digits they never saw, and on leak statistics: what an augmentation that
leaks would change in G's images (inverted brightness, flipped or rotated digits).

Data: every run's `run.json` names its training set, a subset made by `progan-dataset create
--source mnist --out SUBSET --resolution 32 --labels --max-images N --seed S`: the images
`default_rng(S).permutation(T)[:N]` of the full dataset `--full` (T images, made the same way
without --max-images and --seed). This is checked image by image. The held-out reals are the
next `--held-out` images of that permutation, `permutation[N:N+M]`, never shown in training
(`--held-out-from K`: `permutation[K:K+M]`, K >= N, so runs on subsets of different sizes N
can be compared with the same reals).
Their Inception features are cached by dataset index in `--cache-dir`
(`augment-inception-<dataset>.npz`), so later runs and arms compute only what is missing; the
generated images' features are cached by the images' bytes (`augment-generated-<digest>.npz`),
so a run evaluated again beside other arms costs no Inception time.

Per run, the EMA generator of the newest checkpoint draws `--generated` images from latents of
`--seed` (`progan_dsl.generate.latents`). FID and KID (Inception-v3, `progan_dsl.metrics.fid`)
and SWD (`progan_dsl.metrics.evaluate`, as `progan-metrics` computes it: the first min(N, M)
images of each set) compare them with the held-out reals. FID of small sets is biased upward,
equally for every run at equal sizes; KID is unbiased.

Leak statistics (`LEAK_STATS`), each with the transform whose leak would shift it. Per
statistic the held-out reals give its value, its spread (how much a set of the generated set's
size drawn from the real digits differs from them by chance: `real_reference`, a bootstrap, at
least a binomial count of one for a fraction) and its value on the same reals put through the
transform (`transformed`). A leak moves G's images towards the transformed reals, so a set
is beyond the reals when its value lies more than 3 spreads past theirs in that direction
(one-sided: G's imperfect digits move some statistics the other way without augmentation; an
arm's mean row is judged by one run's spread), and `leak`s when that holds for a statistic of
`JUDGED` (bright_border, handedness, wide: each moves with one transform, not with G's skill; the
others are shown, marked '*' when beyond). `toward` = (generated - real) / (transformed - real):
the share of transformed images that would explain the shift.
  brightness      mean pixel value 0..255 (luma flip: MNIST's black background turns white)
  bright_border   fraction of images whose border frame (`BORDER` of the side) is brighter than
                  mid-grey (luma flip)
  handedness      fraction of images whose Sobel gradient energy has more orientations in
                  [0, pi/2) than in [pi/2, pi), the halves an x-flip (or a quarter turn) swaps:
                  slanted handwriting leans one way
  wide            fraction of images whose ink spreads wider than tall (second moments of the
                  pixel values; digits are taller than wide): a quarter turn
  flipped         fraction of images the digit classifier (`digit_classifier`) is more confident
                  about mirrored left-right than as they are (x-flip)
  rotated         the same for a quarter turn either way (quarter turn)
The classifier's reference are the real digits it never trained on (its held-out set).

    progan-bench augment -- --arm none=RUN0,RUN1 --arm ada=RUN2,RUN3
    progan-bench augment -- --train --seeds 0,1 --subset-images 2000
    progan-bench augment -- --train --dry-run          the commands --train would run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from progan_dsl.errors import UserError
from progan_dsl.fsutil import write_atomic_with

from .common import RESULTS, add_output, add_threads, apply_threads, bench_parser, machine, save
from .common import format_table as _format_table

DEFAULT_FULL = Path("data/mnist32")
DEFAULT_ARMS = {"none": Path("specs/mnist_32.yaml"), "ada": Path("specs/mnist_32_augment.yaml")}
SUBSET_IMAGES = 2000  # --subset-images: the small training set of --train
SUBSET_SEED = 0
# Sizes that fit a 2-core CPU: Inception-v3 at 299x299 read 32x32 digits at 0.8-1.3 img/s on
# one thread beside two trainings (measured) and about 4.5 img/s on a quieter machine
# (docs/metrics.md). The 5,000 held-out reals then take 20-100 min once (cached by index, so
# a smaller --held-out reuses them), and 1,000 generated images 4-20 min per run.
GENERATED = 1000
HELD_OUT = 5000
QUICK_GENERATED = 64
QUICK_HELD_OUT = 128
BATCH = 100  # latents per generator call
CACHE_CHUNK = 250  # real images whose features are computed and saved to the cache at once
CALIBRATION_IMAGES = 16  # images timed through Inception before the work is planned
BOOTSTRAP = 200  # resamples of the reals for each spread
SPREADS = 3.0  # leak: the generated value is further than this many spreads from the real one
BORDER = 1 / 8  # of the side: the frame bright_border reads (4 pixels at 32x32). MNIST digits
# fit a 20x20 box centred in 28x28 (LeCun et al. 1998), zero-padded by 2: this frame is background
BRIGHT_LEVEL = 127.5  # a border brighter than mid-grey on average is "bright"
ORIENTATION_BINS = 8
LEAK_STATS = ("brightness", "bright_border", "handedness", "wide", "flipped", "rotated")
CLASSIFIER_STATS = ("flipped", "rotated")
FRACTIONS = ("bright_border", "handedness", "wide", *CLASSIFIER_STATS)  # the rest: a mean value
# The statistics a leak verdict reads: each moves with one transform and not with G's skill.
# The others are shown with their `toward` but not judged: on 2,000 digits, generators trained
# without augmentation (which cannot leak it) put them beyond the reals' spread by themselves
# (brightness follows stroke width; the classifier is unsure of malformed digits either way).
JUDGED = ("bright_border", "handedness", "wide")
# the transform (as it acts on uint8 images [N, C, H, W]) whose leak each statistic detects
LEAK_TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "lumaflip": lambda x: 255 - x,
    "xflip": lambda x: torch.flip(x, dims=[3]),
    "rotate90": lambda x: torch.rot90(x, 1, dims=[2, 3]),
}
DETECTS = {
    "brightness": "lumaflip",
    "bright_border": "lumaflip",
    "handedness": "xflip",
    "wide": "rotate90",
    "flipped": "xflip",
    "rotated": "rotate90",
}
EXAMPLES = [line.strip() for line in (__doc__ or "").rstrip().split("\n\n")[-1].splitlines()]
COLUMNS = [
    "arm",
    "run",
    "seed",
    "kimg",
    "FID",
    "KID x1e3",
    "SWD x1e3",
    *LEAK_STATS,
    "leaks",
]

Confidence = Callable[[torch.Tensor], np.ndarray]  # uint8 [N, C, H, W] -> max class prob [N]


# ---- the data: subset, held-out reals ---------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """A training subset of the full dataset and the held-out reals after it."""

    full: Path
    subset: Path
    subset_seed: int | None
    train_images: int  # N
    total: int  # T, images of the full dataset
    order: np.ndarray  # the permutation of range(T) the subset took its first N from

    def held_out(self, m: int, start: int | None = None) -> np.ndarray:
        """Dataset indices of the M held-out reals, `order[K:K+M]` with K = `start` (default N,
        the first image after the subset); UserError if too few or if K < N (training images)."""
        k = self.train_images if start is None else start
        if k < self.train_images:
            raise UserError(
                f"--held-out-from {k}: the training subset {self.subset} holds the first "
                f"{self.train_images} images of the permutation; held-out reals start at "
                f"{self.train_images} or later"
            )
        left = self.total - k
        if m > left:
            raise UserError(
                f"--held-out {m}: {self.full} has {self.total} images, {self.train_images} of "
                f"them in the training subset {self.subset}; at most {left} are held out"
                + ("" if k == self.train_images else f" from image {k} of the permutation")
            )
        return self.order[k : k + m]

    def describe(self) -> dict[str, Any]:
        return {
            "full": str(self.full),
            "subset": str(self.subset),
            "subset_seed": self.subset_seed,
            "train_images": self.train_images,
            "full_images": self.total,
        }


def check_split(full: Path, subset: Path) -> Split:
    """Read both manifests and check image by image that `subset` holds the full dataset's
    images `permutation[:N]` in that order (`UserError` naming what differs)."""
    from progan_dsl.data import ImageDataset
    from progan_dsl.data.manifest import read_manifest

    whole, part = read_manifest(full), read_manifest(subset)
    for name, m in ((full, whole), (subset, part)):
        if m.skipped:
            raise UserError(f"{name}: {len(m.skipped)} source images were skipped when it was made")
    if whole.options.get("seed") is not None or whole.options.get("max_images") is not None:
        raise UserError(
            f"{full}: the full dataset must hold every source image in source order (made "
            "without --seed and --max-images)"
        )
    seed = part.options.get("seed")
    n, total = part.num_images, whole.num_images
    order = np.arange(total) if seed is None else np.random.default_rng(seed).permutation(total)
    top = whole.resolutions[-1] if whole.resolutions else whole.levels[0].resolution
    mine = ImageDataset(subset).images(top)
    theirs = ImageDataset(full).images(top)
    if n > total or mine.shape[1:] != theirs.shape[1:]:
        raise UserError(f"{subset}: {n} images {mine.shape[1:]} are not a subset of {full}")
    for start in range(0, n, 1000):
        chunk = order[start : min(start + 1000, n)]
        want = np.asarray(theirs[np.sort(chunk)])[np.argsort(np.argsort(chunk))]
        if not np.array_equal(np.asarray(mine[start : start + len(chunk)]), want):
            raise UserError(
                f"{subset}: its images are not those of {full} at default_rng({seed})."
                f"permutation({total})[:{n}] (was it made from another source or resolution?)"
            )
    return Split(full, subset, seed, n, total, order)


def real_images(full: Path, indices: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 [M, C, R, R] of the full dataset's images at `indices`, in that order."""
    from progan_dsl.data import ImageDataset

    level = ImageDataset(full).images(resolution)
    sort = np.argsort(indices)
    out = np.empty((len(indices), *level.shape[1:]), np.uint8)
    out[sort] = level[indices[sort]]
    return torch.from_numpy(out)


# ---- Inception features of the reals, cached by dataset index --------------------------------


def inception_features(images: torch.Tensor, desc: str) -> torch.Tensor:
    """float32 [N, 2048] (a seam: the test replaces it with a cheap stand-in)."""
    from progan_dsl.metrics.inception import inception_features as features

    return features(images, desc=desc)


def feature_cache_path(full: Path, resolution: int, cache_dir: Path) -> Path:
    from progan_dsl.metrics.fid import dataset_fingerprint
    from progan_dsl.metrics.inception import FEATURE_EXTRACTOR

    key = f"{dataset_fingerprint(full)}:{resolution}:{FEATURE_EXTRACTOR}"
    return cache_dir / f"augment-inception-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _read_features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from progan_dsl.metrics.inception import FEATURE_EXTRACTOR

    empty = (np.zeros(0, np.int64), np.zeros((0, 2048), np.float32))
    if not path.is_file():
        return empty
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["extractor"]) != FEATURE_EXTRACTOR:
                return empty
            return np.asarray(data["indices"]), np.asarray(data["features"])
    except Exception as err:  # a damaged cache is computed again and replaced
        print(f"{path}: unreadable feature cache ({type(err).__name__}: {err}); recomputing")
        return empty


def _write_features(path: Path, indices: np.ndarray, features: np.ndarray) -> None:
    """Save a feature cache (atomically: a kill leaves the old file or the new one)."""
    from progan_dsl.metrics.inception import FEATURE_EXTRACTOR

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, indices=indices, features=features, extractor=np.array(FEATURE_EXTRACTOR))

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic_with(path, write)


def cached_real_features(
    full: Path, indices: np.ndarray, resolution: int, cache_dir: Path
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Inception features [M, 2048] of the full dataset's images at `indices`: those in the cache
    are read, the rest computed `CACHE_CHUNK` at a time, each chunk saved to the cache at once."""
    path = feature_cache_path(full, resolution, cache_dir)
    known, feats = _read_features(path)
    missing = indices[~np.isin(indices, known)]  # in the order asked: a prefix fills first
    seconds = 0.0
    for start in range(0, len(missing), CACHE_CHUNK):
        chunk = missing[start : start + CACHE_CHUNK]
        begin = time.perf_counter()
        new = inception_features(
            real_images(full, chunk, resolution),
            desc=f"held-out reals {start + len(chunk)}/{len(missing)}",
        ).numpy()
        seconds += time.perf_counter() - begin
        known = np.concatenate([known, chunk])
        feats = np.concatenate([feats, new]) if len(feats) else new
        _write_features(path, known, feats)
    row = {int(i): r for r, i in enumerate(known)}
    out = torch.from_numpy(feats[[row[int(i)] for i in indices]])
    info = {
        "cache": str(path),
        "computed": len(missing),
        "reused": len(indices) - len(missing),
        "seconds": round(seconds, 1),
        "img_per_s": round(len(missing) / seconds, 2) if seconds else None,
    }
    return out, info


def cached_generated_features(
    images: torch.Tensor, desc: str, cache_dir: Path
) -> tuple[torch.Tensor, bool]:
    """(Inception features [N, 2048] of generated images, whether they came from the cache). The
    cache is keyed by the images' bytes and the extractor: a run evaluated again with the same
    checkpoint, latents and count reads them instead of running Inception."""
    from progan_dsl.metrics.inception import FEATURE_EXTRACTOR

    digest = hashlib.sha256(images.numpy().tobytes())
    digest.update(f"{tuple(images.shape)}:{FEATURE_EXTRACTOR}".encode())
    path = cache_dir / f"augment-generated-{digest.hexdigest()[:16]}.npz"
    _, feats = _read_features(path)
    if len(feats) == len(images):
        return torch.from_numpy(feats), True
    out = inception_features(images, desc=desc)
    _write_features(path, np.arange(len(images)), out.numpy())
    return out, False


def calibrate_inception(n: int = CALIBRATION_IMAGES) -> float:
    """Images per second through Inception at 32x32 on this machine now (one warm-up batch)."""
    images = torch.randint(0, 256, (n, 1, 32, 32), dtype=torch.uint8)
    inception_features(images[:2], desc="Inception warm-up")
    begin = time.perf_counter()
    inception_features(images, desc="Inception speed")
    return n / (time.perf_counter() - begin)


# ---- leak statistics --------------------------------------------------------------------------


@dataclass(frozen=True)
class Measures:
    """Per-image measurements from which every leak statistic of a set (or resample) follows."""

    brightness: np.ndarray  # [N] mean pixel value 0..255
    bright_border: np.ndarray  # [N] 1.0 when the border frame is brighter than mid-grey
    handedness: np.ndarray  # [N] 1.0 when the gradient energy leans to handwriting's diagonal
    wide: np.ndarray  # [N] 1.0 when the ink spreads wider than tall
    flipped: np.ndarray | None  # [N] 1.0 when the classifier prefers the mirrored image
    rotated: np.ndarray | None  # [N] 1.0 when it prefers a quarter turn either way

    def take(self, rows: np.ndarray) -> Measures:
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return Measures(
            self.brightness[rows],
            self.bright_border[rows],
            self.handedness[rows],
            self.wide[rows],
            pick(self.flipped),
            pick(self.rotated),
        )


def orientation_histograms(images: torch.Tensor) -> np.ndarray:
    """[N, 8]: per image, Sobel gradient magnitude summed per orientation bin over [0, pi)
    (orientation modulo pi: a luma flip leaves it, a mirror or a quarter turn moves it)."""
    x = images.float().mean(dim=1, keepdim=True)  # [N, 1, H, W]
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    gx = torch.nn.functional.conv2d(x, sobel.view(1, 1, 3, 3))
    gy = torch.nn.functional.conv2d(x, sobel.T.reshape(1, 1, 3, 3))
    magnitude = torch.sqrt(gx.square() + gy.square()).flatten(1)  # [N, P]
    angle = torch.remainder(torch.atan2(gy, gx), math.pi).flatten(1)
    bins = (angle / (math.pi / ORIENTATION_BINS)).long().clamp_(0, ORIENTATION_BINS - 1)
    hist = torch.zeros(len(x), ORIENTATION_BINS, dtype=torch.float64)
    hist.scatter_add_(1, bins, magnitude.double())
    return hist.numpy()


def handedness(images: torch.Tensor) -> np.ndarray:
    """[N]: 1.0 when an image's gradient energy at orientations [0, pi/2) exceeds that at
    [pi/2, pi): an x-flip maps orientation t to pi - t (bin k to bin 7 - k), a quarter turn to
    t + pi/2, so both swap the halves; slanted handwriting fills one half more."""
    hist = orientation_histograms(images)
    half = ORIENTATION_BINS // 2
    return (hist[:, :half].sum(axis=1) > hist[:, half:].sum(axis=1)).astype(np.float64)


def wide(images: torch.Tensor) -> np.ndarray:
    """[N]: 1.0 when the pixel values' second moment about their centroid is larger along x
    than along y (the ink spreads wider than tall; a quarter turn swaps the two)."""
    x = images.double().mean(dim=1)  # [N, H, W]
    mass = x.sum(dim=(1, 2)).clamp(min=1e-9)
    ys = torch.arange(x.shape[1], dtype=torch.float64).view(1, -1, 1)
    xs = torch.arange(x.shape[2], dtype=torch.float64).view(1, 1, -1)
    cy = (x * ys).sum(dim=(1, 2)) / mass
    cx = (x * xs).sum(dim=(1, 2)) / mass
    var_y = (x * (ys - cy.view(-1, 1, 1)).square()).sum(dim=(1, 2)) / mass
    var_x = (x * (xs - cx.view(-1, 1, 1)).square()).sum(dim=(1, 2)) / mass
    return (var_x > var_y).double().numpy()


def transform_preference(images: torch.Tensor, confidence: Confidence) -> dict[str, np.ndarray]:
    """Per image, 1.0 when `confidence` is higher after undoing a mirror (left-right) or a
    quarter turn (either way) than for the image as it is."""
    plain = confidence(images)
    mirrored = confidence(torch.flip(images, dims=[3]))
    turned = np.maximum(
        confidence(torch.rot90(images, 1, dims=[2, 3])),
        confidence(torch.rot90(images, -1, dims=[2, 3])),
    )
    return {
        "flipped": (mirrored > plain).astype(np.float64),
        "rotated": (turned > plain).astype(np.float64),
    }


def measure(images: torch.Tensor, confidence: Confidence | None = None) -> Measures:
    """The per-image measurements of uint8 images [N, C, H, W]."""
    x = images.float()
    h, w = images.shape[-2:]
    bh, bw = max(1, round(h * BORDER)), max(1, round(w * BORDER))
    frame = torch.ones(h, w, dtype=torch.bool)
    frame[bh:-bh, bw:-bw] = False
    border = x[..., frame].mean(dim=(1, 2))  # [N]
    prefs = transform_preference(images, confidence) if confidence else {}
    return Measures(
        brightness=x.mean(dim=(1, 2, 3)).double().numpy(),
        bright_border=(border > BRIGHT_LEVEL).double().numpy(),
        handedness=handedness(images),
        wide=wide(images),
        flipped=prefs.get("flipped"),
        rotated=prefs.get("rotated"),
    )


def set_statistics(m: Measures) -> dict[str, float | None]:
    """The leak statistics of one set (the classifier's None without a classifier)."""
    return {
        "brightness": float(m.brightness.mean()),
        "bright_border": float(m.bright_border.mean()),
        "handedness": float(m.handedness.mean()),
        "wide": float(m.wide.mean()),
        "flipped": None if m.flipped is None else float(m.flipped.mean()),
        "rotated": None if m.rotated is None else float(m.rotated.mean()),
    }


def transformed_statistics(
    reals: torch.Tensor, unseen: torch.Tensor | None, confidence: Confidence | None
) -> dict[str, float]:
    """Each statistic on the reals put through the transform it detects (`DETECTS`); the
    classifier's on `unseen` (reals it never trained on)."""
    out: dict[str, float] = {}
    for name, transform in LEAK_TRANSFORMS.items():
        stats = set_statistics(measure(transform(reals)))
        judged_by_classifier = any(DETECTS[k] == name for k in CLASSIFIER_STATS)
        if unseen is not None and confidence is not None and judged_by_classifier:
            stats.update(
                {k: v for k, v in set_statistics(measure(transform(unseen), confidence)).items()
                 if k in CLASSIFIER_STATS}
            )  # fmt: skip
        out.update({k: v for k, v in stats.items() if DETECTS[k] == name and v is not None})
    return out


def real_reference(
    real: Measures,
    unseen: Measures | None,
    n: int,
    transformed: dict[str, float] | None = None,
    *,
    resamples: int = BOOTSTRAP,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per statistic the reals' value and spread for a generated set of `n` images compared with
    these reals, and (given) its value on the transformed reals. The spread is the standard
    deviation over `resamples` bootstrap sets of n reals, times sqrt(1 + n / M) for M reference
    reals: a generated set and the reals are independent samples, so the difference of their
    means varies as 1 / n + 1 / M. The classifier's statistics come from `unseen` (reals it
    never trained on). A fraction's spread is at least that of a binomial count at
    p = max(real, 1 / n): one odd image is never a leak by itself."""
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {s: [] for s in LEAK_STATS}
    for _ in range(resamples):
        stats = set_statistics(real.take(rng.integers(0, len(real.brightness), n)))
        if unseen is not None:
            other = set_statistics(unseen.take(rng.integers(0, len(unseen.brightness), n)))
            stats.update({k: other[k] for k in CLASSIFIER_STATS})
        for key, value in stats.items():
            if value is not None:
                samples[key].append(value)
    whole = set_statistics(real)
    if unseen is not None:
        whole.update({k: set_statistics(unseen)[k] for k in CLASSIFIER_STATS})
    out: dict[str, dict[str, Any]] = {}
    for key in LEAK_STATS:
        if not samples[key]:
            continue
        source = unseen if key in CLASSIFIER_STATS and unseen is not None else real
        m = len(source.brightness)
        scale = math.sqrt(1.0 + n / m)
        value = whole[key]
        assert value is not None
        spread = scale * float(np.std(samples[key]))
        if key in FRACTIONS:
            p = max(value, 1.0 / n)
            spread = max(spread, math.sqrt(p * (1.0 - p) * (1.0 / n + 1.0 / m)))
        out[key] = {
            "real": value,
            "spread": spread,
            "reference_images": m,
            "transform": DETECTS[key],
        }
        if transformed is not None and key in transformed:
            out[key]["transformed"] = transformed[key]
    return out


def leak_verdicts(
    generated: dict[str, float | None], reference: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per statistic: generated, the reference, `toward` (the shift as a share of the way to the
    transformed reals), `beyond`: further than SPREADS spreads beyond the reals' value towards
    the transformed reals' (either way when that value is unknown or equal to the reals'), and
    `leak`: beyond, for the statistics in JUDGED."""
    out = {}
    for key, ref in reference.items():
        value = generated.get(key)
        if value is None:
            continue
        shift, limit = value - ref["real"], SPREADS * ref["spread"]
        direction = float(np.sign(ref.get("transformed", ref["real"]) - ref["real"]))
        toward = shift / (ref["transformed"] - ref["real"]) if direction else None
        beyond = shift * direction > limit if direction else abs(shift) > limit
        out[key] = {
            "generated": value,
            **ref,
            "toward": toward,
            "beyond": bool(beyond),
            "judged": key in JUDGED,
            "leak": bool(beyond) and key in JUDGED,
        }
    return out


# ---- runs and arms ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    arm: str
    folder: Path
    checkpoint: Path
    images_shown: int
    seed: int | None
    data: Path | None
    spec_hash: str
    resolution: int
    latent_size: int
    total_images: int | None  # where the spec's schedule ends (None: it sets no total)

    @property
    def finished(self) -> bool | None:
        return None if self.total_images is None else self.images_shown >= self.total_images


def read_run(arm: str, folder: Path) -> Run:
    """The newest checkpoint of a run folder (or a checkpoint file) and its run.json."""
    from progan_dsl.checkpoint import Checkpoint

    ckpt = Checkpoint.load(folder, stable=True)
    arch = ckpt.loaded.spec.architecture
    if arch.num_classes:
        raise UserError(f"{folder}: a class-conditional generator; this benchmark draws without")
    info: dict[str, Any] = {}
    run_json = (folder if folder.is_dir() else folder.parent.parent) / "run.json"
    if run_json.is_file():
        try:
            info = json.loads(run_json.read_text())
        except ValueError as err:
            raise UserError(f"{run_json}: not JSON ({err})") from None
    assert ckpt.path is not None
    total_kimg = ckpt.loaded.spec.training.schedule.total_kimg
    return Run(
        arm=arm,
        folder=folder,
        checkpoint=ckpt.path,
        images_shown=ckpt.images_shown,
        seed=info.get("seed"),
        data=Path(info["data"]) if info.get("data") else None,
        spec_hash=ckpt.spec_hash,
        resolution=ckpt.stable_stage().resolution,
        latent_size=arch.latent_size,
        total_images=None if total_kimg is None else round(total_kimg * 1000),
    )


def check_equal_images(runs: Sequence[Run]) -> int:
    """The images shown every run's checkpoint was taken at; UserError when they differ."""
    shown = {r.images_shown for r in runs}
    if len(shown) > 1:
        listing = ", ".join(f"{r.arm} {r.checkpoint}: {r.images_shown:,}" for r in runs)
        raise UserError(
            "arms must be compared at equal images shown, but the newest checkpoints differ "
            f"({listing}); let every run finish or pass checkpoint files taken at one count"
        )
    return shown.pop()


def generate(run: Run, n: int, seed: int, batch: int) -> torch.Tensor:
    """uint8 [n, C, R, R] from the run's EMA generator, latents `latents(n, latent, seed)`."""
    from progan_dsl.generate.sampler import open_sampler

    sampler = open_sampler(run.checkpoint, device="cpu", batch_size=batch)
    return torch.from_numpy(sampler.sample_uint8(n, seed))


def subset_folder(n: int) -> Path:
    """Where --train makes an N-digit subset: data/mnist32_2k for 2,000, data/mnist32_200."""
    return Path(f"data/mnist32_{n // 1000}k" if n % 1000 == 0 else f"data/mnist32_{n}")


def parse_arm(text: str) -> tuple[str, list[Path]]:
    name, sep, runs = text.partition("=")
    if not sep or not name or not runs or any(not r for r in runs.split(",")):
        raise argparse.ArgumentTypeError(f"expected NAME=RUN[,RUN...], got {text!r}")
    return name, [Path(r) for r in runs.split(",")]


def parse_spec_arm(text: str) -> tuple[str, Path]:
    name, sep, spec = text.partition("=")
    if not sep or not name or not spec:
        raise argparse.ArgumentTypeError(f"expected NAME=SPEC, got {text!r}")
    return name, Path(spec)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2, got {text!r}") from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be at least 0, got {text!r}")
    return seeds


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# ---- --train ----------------------------------------------------------------------------------


def train_commands(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The subset creation (when missing) and one progan-train per arm spec and seed."""
    steps: list[dict[str, Any]] = []
    if not (args.subset / "manifest.json").is_file():
        steps.append(
            {
                "kind": "dataset",
                "command": [
                    "progan-dataset", "create", "--source", "mnist", "--out", str(args.subset),
                    "--resolution", "32", "--labels", "--max-images", str(args.subset_images),
                    "--seed", str(args.subset_seed),
                ],
            }
        )  # fmt: skip
    for name, spec in args.train_arms or list(DEFAULT_ARMS.items()):
        for seed in args.seeds:
            outdir = args.train_dir / name
            steps.append(
                {
                    "kind": "train",
                    "arm": name,
                    "seed": seed,
                    "outdir": str(outdir),
                    "command": [
                        "progan-train", str(spec), "--data", str(args.subset), "--outdir",
                        str(outdir), "--device", "cpu", "--seed", str(seed), "--threads",
                        str(torch.get_num_threads()), "--no-progress",
                    ],
                }
            )  # fmt: skip
    return steps


def train(steps: list[dict[str, Any]]) -> dict[str, list[Path]]:
    """Run the steps; returns each arm's new run folders (found as the folders a step added)."""
    arms: dict[str, list[Path]] = {}
    for step in steps:
        if step["kind"] == "train" and not Path(step["command"][1]).is_file():
            raise UserError(f"{step['command'][1]}: no such spec (arm {step['arm']})")
    for step in steps:
        outdir = Path(step.get("outdir", "."))
        before = set(outdir.iterdir()) if outdir.is_dir() else set()
        print("$ " + " ".join(step["command"]), flush=True)
        begin = time.perf_counter()
        tool = Path(sys.executable).parent / step["command"][0]  # this environment's own
        command = [str(tool) if tool.is_file() else step["command"][0], *step["command"][1:]]
        done = subprocess.run(command, check=False)
        step["seconds"] = round(time.perf_counter() - begin, 1)
        if done.returncode:
            raise UserError(f"{step['command'][0]} exited with {done.returncode}")
        if step["kind"] == "train":
            new = sorted(p for p in outdir.iterdir() if p.is_dir() and p not in before)
            if len(new) != 1:
                raise UserError(f"{outdir}: expected one new run folder, found {len(new)}")
            step["run"] = str(new[0])
            arms.setdefault(step["arm"], []).append(new[0])
    return arms


# ---- the benchmark ----------------------------------------------------------------------------


def classifier_confidence(judge: Any) -> Confidence:
    from .digit_classifier import PREDICT_BATCH, _to_input

    def confidence(images: torch.Tensor) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(images), PREDICT_BATCH):
                logits = judge.network(_to_input(images[start : start + PREDICT_BATCH]))
                out.append(logits.softmax(dim=1).amax(dim=1))
        return torch.cat(out).double().numpy()

    return confidence


def compare_arms(rows: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Per other arm and training seed present in both: is each metric lower than the
    baseline's?"""
    base = {r["seed"]: r for r in rows if r["arm"] == baseline}
    out = []
    for r in rows:
        if r["arm"] == baseline or r["seed"] not in base:
            continue
        b = base[r["seed"]]
        entry: dict[str, Any] = {"arm": r["arm"], "baseline": baseline, "seed": r["seed"]}
        for key in ("fid", "kid", "swd"):
            if r.get(key) is not None and b.get(key) is not None:
                entry[key] = {"baseline": b[key], "arm": r[key], "better": r[key] < b[key]}
        out.append(entry)
    return out


def _cell(row: dict[str, Any], verdicts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    cells: dict[str, Any] = {
        "FID": row.get("fid"),
        "KID x1e3": None if row.get("kid") is None else row["kid"] * 1e3,
        "SWD x1e3": row.get("swd"),
    }
    for key in LEAK_STATS:
        v = verdicts.get(key)
        if v is not None:
            cells[key] = (
                f"{v['generated']:.4g}{('!' if v['judged'] else '*') if v['beyond'] else ''}"
            )
    cells["leaks"] = ",".join(k for k, v in verdicts.items() if v["leak"]) or "-"
    return cells


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = bench_parser("augment", (__doc__ or "").split("\n\n")[0])
    parser.epilog = "examples:\n  " + "\n  ".join(EXAMPLES)
    parser.add_argument(
        "--arm",
        type=parse_arm,
        action="append",
        default=[],
        metavar="NAME=RUN[,RUN...]",
        help="an arm: finished run folders (or checkpoint files); the first arm is the baseline",
    )
    parser.add_argument("--train", action="store_true", help="train the arms first (see --spec)")
    parser.add_argument(
        "--spec",
        dest="train_arms",
        type=parse_spec_arm,
        action="append",
        default=None,
        metavar="NAME=SPEC",
        help="with --train: an arm's spec (default none=specs/mnist_32.yaml "
        "ada=specs/mnist_32_augment.yaml)",
    )
    parser.add_argument("--seeds", type=_seeds, default=[0, 1], help="with --train (default 0,1)")
    parser.add_argument(
        "--train-dir", type=Path, default=Path("runs/augment"), help="with --train: ARM/ go here"
    )
    parser.add_argument("--dry-run", action="store_true", help="with --train: print the commands")
    parser.add_argument(
        "--subset",
        type=Path,
        default=None,
        help="the training subset (default: each run's run.json; with --train data/mnist32_<N>)",
    )
    parser.add_argument("--subset-images", type=_positive, default=SUBSET_IMAGES, metavar="N")
    parser.add_argument("--subset-seed", type=int, default=SUBSET_SEED, metavar="S")
    parser.add_argument(
        "--full", type=Path, default=DEFAULT_FULL, help="the full dataset (default data/mnist32)"
    )
    parser.add_argument(
        "--generated",
        type=_positive,
        default=None,
        metavar="N",
        help=f"images drawn per run (default {GENERATED}; {QUICK_GENERATED} with --quick)",
    )
    parser.add_argument(
        "--held-out",
        type=_positive,
        default=None,
        metavar="M",
        help=f"held-out reals (default {HELD_OUT}; {QUICK_HELD_OUT} with --quick)",
    )
    parser.add_argument(
        "--held-out-from",
        type=int,
        default=None,
        metavar="K",
        help="the held-out reals are permutation[K:K+M] (default K = N, the subset's size; a "
        "larger K compares subsets of different sizes against the same reals)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    parser.add_argument("--batch", type=_positive, default=BATCH, help="latents per G call")
    parser.add_argument("--no-fid", action="store_true", help="skip FID and KID (Inception)")
    parser.add_argument("--no-classifier", action="store_true", help="skip flipped and rotated")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=RESULTS,
        metavar="DIR",
        help="where the reals' Inception features and the classifier are cached (default "
        "benchmarks/results)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    add_threads(parser)
    add_output(parser, "augment")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    threads = apply_threads(args.threads)
    if args.subset is None and args.train:
        args.subset = subset_folder(args.subset_images)
    n_gen = args.generated or (QUICK_GENERATED if args.quick else GENERATED)
    n_real = args.held_out or (QUICK_HELD_OUT if args.quick else HELD_OUT)
    payload: dict[str, Any] = {
        "benchmark": "augment",
        "argv": list(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "threads": threads,
    }

    arms_in: dict[str, list[Path]] = {}
    for name, folders in args.arm:
        if name in arms_in:
            raise UserError(f"--arm {name} is given twice")
        arms_in[name] = folders
    if args.train:
        steps = train_commands(args)
        payload["commands"] = [" ".join(s["command"]) for s in steps]
        if args.dry_run:
            print("\n".join(payload["commands"]))
            return payload
        arms_in.update(train(steps))
        payload["train_steps"] = steps
    if not arms_in:
        raise UserError("no arms: give --arm NAME=RUN[,RUN...] (or --train)")

    runs = [read_run(name, Path(f)) for name, folders in arms_in.items() for f in folders]
    shown = check_equal_images(runs)
    for r in runs:
        if r.finished is False:
            print(f"note: {r.folder} is at {r.images_shown:,} of {r.total_images:,} images")
    subsets = {r.data for r in runs} if args.subset is None else {args.subset}
    if None in subsets or len(subsets) != 1:
        raise UserError(
            "every run must have trained on one subset named in its run.json "
            f"(found {sorted(map(str, subsets))}); give it with --subset"
        )
    subset = subsets.pop()
    assert subset is not None
    split = check_split(args.full, subset)
    resolutions = {r.resolution for r in runs}
    if len(resolutions) != 1:
        raise UserError(f"the runs draw at different resolutions {sorted(resolutions)}")
    resolution = resolutions.pop()
    held_from = split.train_images if args.held_out_from is None else args.held_out_from
    held = split.held_out(n_real, held_from)
    reals = real_images(args.full, held, resolution)
    payload.update(
        machine=machine(),
        sizes={
            "generated": n_gen,
            "held_out": n_real,
            "held_out_from": held_from,
            "swd_images": min(n_gen, n_real),
        },
        split=split.describe(),
        held_out_indices_sha256=hashlib.sha256(held.astype(np.int64).tobytes()).hexdigest(),
        images_shown=shown,
        latent_seed=args.seed,
        resolution=resolution,
        bootstrap=BOOTSTRAP,
        spreads=SPREADS,
    )

    confidence, unseen, unseen_images = None, None, None
    if not args.no_classifier:
        from .digit_classifier import FULL, QUICK, load_classifier, load_digits

        config = QUICK if args.quick else FULL
        judge = load_classifier(args.full, config, resolution=resolution, cache_dir=args.cache_dir)
        confidence = classifier_confidence(judge)
        unseen_images = load_digits(args.full, config, resolution).test_images
        unseen = measure(torch.from_numpy(unseen_images), confidence)
        payload["classifier"] = {
            k: v for k, v in judge.describe().items() if k not in ("held_out",)
        } | {"held_out_accuracy": judge.held_out.overall, "unseen_reals": len(unseen_images)}
    begin = time.perf_counter()
    real_measures = measure(reals, confidence)
    transformed = transformed_statistics(
        reals, None if unseen_images is None else torch.from_numpy(unseen_images), confidence
    )
    reference = real_reference(real_measures, unseen, n_gen, transformed)
    payload["real_reference"] = reference
    print(
        f"reals (held out, sets of {n_gen:,}): "
        + ", ".join(f"{k} {v['real']:.4g} +- {v['spread']:.2g}" for k, v in reference.items()),
        flush=True,
    )
    timings: dict[str, float] = {"real_leak_statistics": round(time.perf_counter() - begin, 1)}

    real_stats = None
    if not args.no_fid:
        from progan_dsl.metrics.fid import FeatureStats

        speed = calibrate_inception()
        payload["inception_img_per_s_calibration"] = round(speed, 2)
        path = feature_cache_path(args.full, resolution, args.cache_dir)
        known = len(np.intersect1d(_read_features(path)[0], held))
        todo = n_real - known + n_gen * len(runs)
        print(
            f"Inception: {speed:.2f} img/s here now; at most {todo:,} images to read (held-out "
            f"reals cached: {known:,} of {n_real:,}; generated images read before are cached "
            f"too), at most {todo / speed / 60:.0f} min",
            flush=True,
        )
        features, payload["real_features"] = cached_real_features(
            args.full, held, resolution, args.cache_dir
        )
        real_stats = FeatureStats.from_features(features)

    rows: list[dict[str, Any]] = []
    for r in runs:
        row = evaluate_run(r, reals, real_stats, reference, real_measures, confidence, args, n_gen)
        rows.append(row)
    payload["runs"] = rows
    arm_rows: list[dict[str, Any]] = []
    for name in arms_in:
        mine = [r for r in rows if r["arm"] == name]
        mean = {k: _mean([r.get(k) for r in mine]) for k in ("fid", "kid", "swd")}
        stats = {
            s: _mean([r["leak"].get(s, {}).get("generated") for r in mine]) for s in LEAK_STATS
        }
        verdicts = leak_verdicts(stats, reference)
        arm_rows.append({"arm": name, "runs": len(mine), **mean, "leak": verdicts})
    payload["arms"] = arm_rows
    baseline = next(iter(arms_in))
    payload["comparisons"] = compare_arms(rows, baseline)

    table = [
        {
            "arm": r["arm"],
            "run": Path(r["run"]).name,
            "seed": r["seed"],
            "kimg": f"{shown / 1000:g}",
        }
        | _cell(r, r["leak"])
        for r in rows
    ]
    table += [
        {"arm": a["arm"], "run": f"mean of {a['runs']}"} | _cell(a, a["leak"]) for a in arm_rows
    ]
    real_row: dict[str, Any] = {"arm": "reals", "run": f"{n_real} held out"}
    real_row.update({k: f"{v['real']:.4g}+-{v['spread']:.2g}" for k, v in reference.items()})
    table.append(real_row)
    table.append(
        {"arm": "transformed", "run": "reals as a leak would make them"}
        | {k: f"{v['transformed']:.4g} ({v['transform']})" for k, v in reference.items()
           if "transformed" in v}
    )  # fmt: skip
    shown_only = [s for s in LEAK_STATS if s not in JUDGED]
    print(
        f"{n_gen:,} generated vs {n_real:,} held-out reals (SWD: {min(n_gen, n_real):,} each); "
        f"'!': more than {SPREADS:g} spreads from the reals towards the transformed reals (leak); "
        f"'*': the same for a statistic shown but not judged ({', '.join(shown_only)})"
    )
    print(_format_table(table, COLUMNS), flush=True)
    for c in payload["comparisons"]:
        parts = [
            f"{k.upper()} {v['baseline']:.4g} -> {v['arm']:.4g} better: "
            f"{'yes' if v['better'] else 'no'}"
            for k, v in c.items()
            if isinstance(v, dict)
        ]
        print(f"seed {c['seed']}: {c['baseline']} -> {c['arm']}: " + "; ".join(parts))
    timings["total"] = round(time.perf_counter() - began, 1)
    payload["seconds"] = timings
    save("augment", payload, args)
    return payload


def _mean(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def evaluate_run(
    r: Run,
    reals: torch.Tensor,
    real_stats: Any,
    reference: dict[str, dict[str, float]],
    real_measures: Measures,
    confidence: Confidence | None,
    args: argparse.Namespace,
    n_gen: int,
) -> dict[str, Any]:
    """One run's metrics, leak statistics and verdicts, with the seconds each took."""
    from progan_dsl.metrics import evaluate

    seconds: dict[str, float] = {}
    begin = time.perf_counter()
    fakes = generate(r, n_gen, args.seed, args.batch)
    seconds["generate"] = time.perf_counter() - begin
    row: dict[str, Any] = {
        "arm": r.arm,
        "run": str(r.folder),
        "checkpoint": str(r.checkpoint),
        "seed": r.seed,
        "images_shown": r.images_shown,
        "finished": r.finished,
        "spec_hash": r.spec_hash,
    }
    begin = time.perf_counter()
    swd = evaluate(["swd"], reals, fakes, seed=0)
    row["swd"] = swd["swd_avg"]
    row["swd_levels"] = {k: v for k, v in swd.items() if k != "swd_avg"}
    seconds["swd"] = time.perf_counter() - begin
    if real_stats is not None:
        from progan_dsl.metrics.fid import (
            FeatureStats,
            fid_from_stats,
            kernel_inception_distance,
        )

        begin = time.perf_counter()
        fake_features, cached = cached_generated_features(
            fakes, f"generated, {r.folder.name}", args.cache_dir
        )
        seconds["inception"] = time.perf_counter() - begin
        row["generated_features"] = "cached" if cached else "computed"
        row["inception_img_per_s"] = None if cached else n_gen / seconds["inception"]
        begin = time.perf_counter()
        row["fid"] = fid_from_stats(real_stats, FeatureStats.from_features(fake_features))
        row["kid"] = kernel_inception_distance(real_stats.features, fake_features, seed=0)
        seconds["fid_kid"] = time.perf_counter() - begin
    begin = time.perf_counter()
    stats = set_statistics(measure(fakes, confidence))
    row["leak"] = leak_verdicts(stats, reference)
    seconds["leak_statistics"] = time.perf_counter() - begin
    row["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    print(f"{r.arm} {r.folder}: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    return row


if __name__ == "__main__":
    from progan_dsl.cli import _run  # errors printed as by every command (exit 2)

    def _main(argv: Sequence[str] | None) -> int:
        run(argv)
        return 0

    sys.exit(_run(_main, None))
