"""A small CNN digit classifier trained on the real digits of a labelled dataset: the judge that
`bench_conditional` asks whether a conditional generator draws the class it was asked for.

Data: a dataset made by `progan-dataset create ... --labels` (for MNIST: `progan-dataset create
--source mnist --out data/mnist32 --resolution 32 --labels`), read through `ImageDataset` at its
top level or at the level a generator draws (`resolution`). The last `test_images` images are
held out; on the bundled MNIST created without `--seed` they are the official 10,000 test digits
(its train and test sets are stored in that order). The classifier trains on the images before
them.

Network: three 3x3 conv + ReLU + 2x2 max-pool blocks (width, 2 width, 4 width channels) and one
linear layer to the class logits; inputs are uint8 images mapped to [-1, 1] like a generator's.
Training: Adam with a learning rate decayed linearly to zero, cross-entropy, each image shifted
by up to `shift` pixels (a seeded random translation, so the judge does not hinge on exact
centring). Everything random comes from `seed`: the same config, data and thread count give the
same weights.

Cache: the trained weights, their held-out accuracy table and training time are stored in
`benchmarks/results/digit_classifier-<key>.pt`, where `<key>` hashes the config, the model
version and the dataset's level and label digests; a later call with the same key loads them
instead of training again (a damaged cache file is retrained and replaced).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from progan_dsl.data import ImageDataset
from progan_dsl.errors import UserError
from progan_dsl.fsutil import write_atomic_with

from .common import RESULTS

# Bump when the network, its input mapping or the training procedure changes: old cache files
# then no longer match any key.
MODEL_VERSION = 1
PREDICT_BATCH = 500  # images per classifier forward pass when predicting
TIMES = ("train_seconds", "train_cpu_seconds")


@dataclass(frozen=True)
class ClassifierConfig:
    """How the classifier is trained; every field is part of the cache key."""

    test_images: int = 10_000  # held out at the end (bundled MNIST: the official test set)
    train_images: int | None = None  # at most this many of the images before them (None: all)
    epochs: int = 2
    batch: int = 64
    lr: float = 2e-3  # Adam, decayed linearly to 0 over the training steps
    width: int = 16  # channels of the first conv block; doubled in each next block
    shift: int = 2  # random translation of each training image, pixels in each direction
    seed: int = 0

    def key(self, dataset: dict[str, Any]) -> str:
        blob = json.dumps(
            {"model_version": MODEL_VERSION, "config": asdict(self), "dataset": dataset},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# The full judge: all 60,000 MNIST training digits, two epochs: 99.1% of the 10,000 test digits,
# at least 98.4% per class, in 95 CPU seconds (one thread). The quick one is a smoke run of the
# same path (4,000 digits, about 10 CPU seconds).
FULL = ClassifierConfig()
QUICK = ClassifierConfig(test_images=1000, train_images=4000, epochs=2)


@dataclass(frozen=True)
class ClassRow:
    """How the images meant as one class were labelled."""

    index: int
    name: str
    n: int
    correct: int
    most_common_wrong: str | None  # the class name most often given instead (None: no errors)
    wrong_count: int  # how many times that wrong name was given

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None


@dataclass(frozen=True)
class AccuracyTable:
    """Per-class accuracy of predicted against intended labels."""

    rows: tuple[ClassRow, ...]

    @property
    def mean(self) -> float:
        """Mean of the per-class accuracies (classes with images only)."""
        values = [r.accuracy for r in self.rows if r.accuracy is not None]
        return float(np.mean(values)) if values else float("nan")

    @property
    def minimum(self) -> float:
        values = [r.accuracy for r in self.rows if r.accuracy is not None]
        return min(values) if values else float("nan")

    @property
    def overall(self) -> float:
        """Fraction of all images labelled as intended."""
        n = sum(r.n for r in self.rows)
        return sum(r.correct for r in self.rows) / n if n else float("nan")

    def printable(self) -> list[dict[str, Any]]:
        """Rows for `common.print_table`, the mean and the minimum last."""
        rows: list[dict[str, Any]] = [
            {
                "class": r.name,
                "n": r.n,
                "accuracy": r.accuracy,
                "most common wrong": (
                    f"{r.most_common_wrong} ({r.wrong_count})" if r.most_common_wrong else "-"
                ),
            }
            for r in self.rows
        ]
        rows.append({"class": "mean", "n": sum(r.n for r in self.rows), "accuracy": self.mean})
        rows.append({"class": "min", "accuracy": self.minimum})
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "mean_accuracy": self.mean,
            "min_accuracy": self.minimum,
            "overall_accuracy": self.overall,
            "per_class": [{**asdict(r), "accuracy": r.accuracy} for r in self.rows],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccuracyTable:
        fields = ("index", "name", "n", "correct", "most_common_wrong", "wrong_count")
        return cls(tuple(ClassRow(**{f: row[f] for f in fields}) for row in data["per_class"]))


COLUMNS = ["class", "n", "accuracy", "most common wrong"]


def accuracy_table(
    predicted: np.ndarray, intended: np.ndarray, class_names: list[str]
) -> AccuracyTable:
    """Per-class accuracy: for each class index, the images meant as it (`intended`), how many
    were predicted as it, and the most common other prediction (ties: the lower index)."""
    predicted, intended = np.asarray(predicted), np.asarray(intended)
    if predicted.shape != intended.shape or predicted.ndim != 1:
        raise ValueError(f"predicted {predicted.shape} and intended {intended.shape} differ")
    rows = []
    for index, name in enumerate(class_names):
        got = predicted[intended == index]
        wrong = Counter(int(p) for p in got if p != index)
        top = min(wrong.items(), key=lambda kv: (-kv[1], kv[0])) if wrong else None
        rows.append(
            ClassRow(
                index=index,
                name=name,
                n=int(got.size),
                correct=int((got == index).sum()),
                most_common_wrong=class_names[top[0]] if top else None,
                wrong_count=top[1] if top else 0,
            )
        )
    return AccuracyTable(tuple(rows))


def build_network(classes: int, channels: int, size: tuple[int, int], width: int) -> nn.Sequential:
    """conv3x3-ReLU-maxpool x3 (width, 2 width, 4 width), then a linear layer to the logits."""
    layers: list[nn.Module] = []
    c_in, (h, w) = channels, size
    for c_out in (width, 2 * width, 4 * width):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c_in, h, w = c_out, h // 2, w // 2
    if h < 1 or w < 1:
        raise UserError(f"the digit classifier needs images of at least 8x8, got {size}")
    layers += [nn.Flatten(), nn.Linear(c_in * h * w, classes)]
    return nn.Sequential(*layers)


def _to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float32 in [-1, 1] (the mapping `images.to_uint8` inverts)."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images.astype(np.float32))  # a copy: memmaps are read-only
    return images.float() / 127.5 - 1.0


def _shifted(batch: np.ndarray, shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by (dy, dx) in [-shift, shift], the border filled with zeros."""
    if shift == 0:
        return batch
    n, _, h, w = batch.shape
    padded = np.pad(batch, ((0, 0), (0, 0), (shift, shift), (shift, shift)))
    offsets = rng.integers(0, 2 * shift + 1, size=(n, 2))
    return np.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])


def predict(network: nn.Module, images: np.ndarray | torch.Tensor) -> np.ndarray:
    """int64 [N] class indices (argmax of the logits) of uint8 images [N, C, H, W]."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), PREDICT_BATCH):
            out.append(network(_to_input(images[start : start + PREDICT_BATCH])).argmax(dim=1))
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class DigitClassifier:
    """The trained judge: `predict` class indices of uint8 images, `evaluate` them per class."""

    network: nn.Sequential  # in eval mode, without grads
    class_names: list[str]
    image_shape: tuple[int, int, int]  # (C, H, W) of the images it reads
    config: ClassifierConfig
    held_out: AccuracyTable  # on the real held-out images
    train_seconds: float  # wall clock
    train_cpu_seconds: float  # CPU time of this process (all threads): the cost without the load
    cache: Path
    reused: bool  # loaded from the cache instead of trained now

    def predict(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """int64 [N] class indices of uint8 images [N, C, H, W]."""
        if images.dtype not in (np.uint8, torch.uint8) or tuple(images.shape[1:]) != (
            self.image_shape
        ):
            c, h, w = self.image_shape
            raise UserError(
                f"the digit classifier reads uint8 images [N, {c}, {h}, {w}], got "
                f"{images.dtype} {list(images.shape)}"
            )
        return predict(self.network, images)

    def evaluate(self, images: np.ndarray | torch.Tensor, intended: np.ndarray) -> AccuracyTable:
        """Per-class accuracy of uint8 images [N, C, H, W] meant as classes `intended` [N]."""
        return accuracy_table(self.predict(images), np.asarray(intended), self.class_names)

    def describe(self) -> dict[str, Any]:
        """What the results JSON records about the judge."""
        return {
            "config": asdict(self.config),
            "model_version": MODEL_VERSION,
            "cache": str(self.cache),
            "reused": self.reused,
            "train_seconds": self.train_seconds,
            "train_cpu_seconds": self.train_cpu_seconds,
            "parameters": sum(p.numel() for p in self.network.parameters()),
            "held_out": self.held_out.to_json(),
        }


@dataclass(frozen=True)
class LabelledDigits:
    """A labelled dataset's top level split into training and held-out images."""

    train_images: np.ndarray  # uint8 [N, C, H, W]
    train_labels: np.ndarray  # int64 [N]
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    identity: dict[str, Any]  # the digests that make this data what it is (part of the cache key)


def _dataset_labels(dataset: ImageDataset) -> np.ndarray | None:
    labels = dataset.labels
    return labels() if callable(labels) else labels


def load_digits(
    path: str | Path, config: ClassifierConfig, resolution: int | None = None
) -> LabelledDigits:
    """The dataset at `path` at `resolution` (default: its top level) split as `config` says;
    `UserError` without labels, that level or enough images."""
    dataset = ImageDataset(path)
    labels = _dataset_labels(dataset)
    if labels is None:
        raise UserError(
            f"{path}: the dataset has no labels; create it with --labels (e.g. progan-dataset "
            f"create --source mnist --out {path} --resolution 32 --labels --force)"
        )
    resolution = resolution or dataset.resolutions[-1]
    images = dataset.images(resolution)  # UserError naming the levels there are
    total = len(images)
    if not 0 < config.test_images < total:
        raise UserError(
            f"{path}: holds {total} images; the classifier holds out the last "
            f"{config.test_images} and needs some before them to train on"
        )
    cut = total - config.test_images
    start = 0 if config.train_images is None else max(0, cut - config.train_images)
    level = next(e for e in dataset.format.levels if e.resolution == resolution)
    assert dataset.format.labels is not None  # labels() returned an array
    return LabelledDigits(
        train_images=np.array(images[start:cut]),  # in memory: read many times
        train_labels=np.asarray(labels[start:cut], dtype=np.int64),
        test_images=np.array(images[cut:]),
        test_labels=np.asarray(labels[cut:], dtype=np.int64),
        class_names=dataset.class_names,
        identity={
            "num_images": total,
            "resolution": resolution,
            "level_sha256": level.sha256,
            "labels_sha256": dataset.format.labels.sha256,
        },
    )


def train_network(digits: LabelledDigits, config: ClassifierConfig) -> nn.Sequential:
    """Train from `config.seed` (weights, image order and shifts all follow from it)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    _, c, h, w = digits.train_images.shape
    network = build_network(len(digits.class_names), c, (h, w), config.width)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    steps = config.epochs * -(-len(digits.train_images) // config.batch)
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    loss_fn = nn.CrossEntropyLoss()
    network.train()
    for _ in range(config.epochs):
        order = rng.permutation(len(digits.train_images))
        for start in range(0, len(order), config.batch):
            index = np.sort(order[start : start + config.batch])
            batch = _shifted(digits.train_images[index], config.shift, rng)
            loss = loss_fn(network(_to_input(batch)), torch.from_numpy(digits.train_labels[index]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            decay.step()
    return network.eval()


def cache_path(key: str, folder: Path = RESULTS) -> Path:
    return folder / f"digit_classifier-{key}.pt"


def load_classifier(
    data: str | Path,
    config: ClassifierConfig = FULL,
    *,
    resolution: int | None = None,
    cache_dir: Path = RESULTS,
    retrain: bool = False,
    log: bool = True,
) -> DigitClassifier:
    """The classifier for the dataset at `data`: from the cache when its key matches (and not
    `retrain`), else trained now, evaluated on the held-out images and cached. It reads the
    dataset's level `resolution` (default: the top one)."""
    digits = load_digits(data, config, resolution)
    path = cache_path(config.key(digits.identity), cache_dir)
    _, c, h, w = digits.test_images.shape
    stored = None if retrain else _read_cache(path, log=log)
    if stored is not None:
        network = build_network(len(digits.class_names), c, (h, w), config.width)
        network.load_state_dict(stored["network"])
        held_out = AccuracyTable.from_json(json.loads(stored["held_out"]))
        seconds, cpu_seconds = float(stored["train_seconds"]), float(stored["train_cpu_seconds"])
    else:
        if log:
            print(
                f"training the digit classifier on {len(digits.train_images)} images "
                f"({config.epochs} epochs, {torch.get_num_threads()} threads); caching it as "
                f"{path}",
                flush=True,
            )
        begin, begin_cpu = time.perf_counter(), time.process_time()
        network = train_network(digits, config)
        seconds, cpu_seconds = time.perf_counter() - begin, time.process_time() - begin_cpu
        predicted = predict(network, digits.test_images)
        held_out = accuracy_table(predicted, digits.test_labels, digits.class_names)
    judge = DigitClassifier(
        network=network.eval().requires_grad_(False),
        class_names=digits.class_names,
        image_shape=(c, h, w),
        config=config,
        held_out=held_out,
        train_seconds=seconds,
        train_cpu_seconds=cpu_seconds,
        cache=path,
        reused=stored is not None,
    )
    if stored is None:
        _write_cache(path, judge)
    return judge


def _read_cache(path: Path, *, log: bool) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored.get("model_version") != MODEL_VERSION:
            raise ValueError(f"model version {stored.get('model_version')}")
        return {k: stored[k] for k in ("network", "held_out", *TIMES)}
    except Exception as err:  # any damage: train again and replace the file
        if log:
            print(f"{path}: unreadable cache ({type(err).__name__}: {err}); training again")
        return None


def _write_cache(path: Path, judge: DigitClassifier) -> None:
    payload = {
        "model_version": MODEL_VERSION,
        "config": json.dumps(asdict(judge.config), sort_keys=True),
        "network": judge.network.state_dict(),
        "held_out": json.dumps(judge.held_out.to_json()),
        "train_seconds": judge.train_seconds,
        "train_cpu_seconds": judge.train_cpu_seconds,
    }
    write_atomic_with(path, lambda tmp: torch.save(payload, tmp))
