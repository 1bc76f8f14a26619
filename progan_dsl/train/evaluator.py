"""Metrics during training: G EMA samples against the real images D sees at that point.

Owns the evaluation interval and what is compared: a fixed subset of the dataset at the current
resolution, faded exactly as the loader fades reals during a fade-in (`fade_reals`), against as
many G EMA samples from latents of a fixed seed. A failing metric is reported and logged, never
loses the run. Rank 0 computes; the others wait.
"""

from __future__ import annotations

import torch

from progan_dsl.data.dataset import ImageDataset
from progan_dsl.data.labels import random_labels
from progan_dsl.data.loader import served_reals
from progan_dsl.images import to_uint8
from progan_dsl.metrics.evaluation import evaluate
from progan_dsl.metrics.images import subset_indices
from progan_dsl.train.monitor import Interval
from progan_dsl.train.trainer import Trainer, derive_seed

EVAL_BATCH = 256  # latents per G EMA forward pass while evaluating


class Evaluator:
    """The spec's `training.evaluation`: which metrics, how many images, how often."""

    def __init__(self, trainer: Trainer, dataset: ImageDataset) -> None:
        evaluation = trainer.program.spec.training.evaluation
        self.trainer, self.dataset = trainer, dataset
        self.names = list(evaluation.metrics)
        self.num = evaluation.num_images
        self.interval = Interval(evaluation.every_kimg)

    def reals(self) -> torch.Tensor:
        """uint8 reals at the current position: the fixed subset, faded like the loader fades."""
        t = self.trainer
        assert t.phase is not None
        index = subset_indices(self.dataset.num_images, self.num)
        reals = served_reals(self.dataset, t.phase.resolution, index, t.alpha)
        return to_uint8(torch.from_numpy(reals))

    @property
    def resolution(self) -> int:
        assert self.trainer.phase is not None
        return self.trainer.phase.resolution

    def run_safely(self) -> tuple[dict[str, float], str | None]:
        """(metrics, None), or ({}, the error) when a metric fails: it must not lose the run."""
        try:
            return self.run(), None
        except Exception as err:  # noqa: BLE001 - reported and logged by the loop
            return {}, f"{type(err).__name__}: {err}"

    def run(self) -> dict[str, float]:
        """The metrics now (raises what a metric raises; the loop reports it)."""
        t = self.trainer
        real = self.reals()
        z = torch.randn(
            len(real),
            t.program.spec.architecture.latent_size,
            generator=torch.Generator().manual_seed(derive_seed(t.seed, "metrics")),
        )
        labels = None
        if t.num_classes:  # classes drawn as the dataset has them
            gen = torch.Generator().manual_seed(derive_seed(t.seed, "metrics", "labels"))
            labels = random_labels(self.dataset.class_counts, len(real), gen)
        fake = t.sample(z, labels, batch=EVAL_BATCH)
        return evaluate(self.names, real, fake, device=t.device, seed=t.seed)
