"""`Draws`: the random numbers of training (latents, WGAN-GP mixing weights, G's labels, the
augmentation's uniforms), all from one CPU `torch.Generator` whose state a checkpoint keeps.

Each draw is of the global minibatch, and each rank keeps its contiguous slice, so the numbers do
not depend on the number of processes; slices go to the device without a host sync
(`DevicePaths.to_device`). G's labels of a conditional run are drawn in the dataset's class
distribution (`progan_dsl.data.labels.random_labels`, the official `get_random_labels_tf`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from progan_dsl.data.labels import random_labels


class Draws:
    """The training generator and this rank's share of what it draws."""

    def __init__(
        self,
        seed: int,
        rank: int,
        world_size: int,
        to_device: Callable[[Tensor], Tensor],
        label_counts: np.ndarray | None = None,
    ) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.rank, self.world_size, self.to_device = rank, world_size, to_device
        self.label_counts = label_counts

    def share(self, batch: Tensor) -> Tensor:
        """This rank's contiguous slice of a globally drawn tensor, on the device."""
        n = batch.shape[0] // self.world_size
        return self.to_device(batch[self.rank * n : (self.rank + 1) * n])

    def latents(self, batch: int, size: int) -> Tensor:
        return self.share(torch.randn(batch, size, generator=self.gen))

    def mix(self, batch: int) -> Tensor:
        """WGAN-GP interpolation weights [N, 1, 1, 1], uniform in [0, 1)."""
        return self.share(torch.rand(batch, 1, 1, 1, generator=self.gen))

    def uniform(self, share: int, count: int) -> Tensor:
        """[share, count] uniforms in [0, 1) for a batch of which this rank holds `share`
        samples (the augmentation's parameters): drawn for all ranks' samples, this rank's kept."""
        return self.share(torch.rand(share * self.world_size, count, generator=self.gen))

    def labels(self, batch: int) -> Tensor | None:
        """One-hot labels in the dataset's class distribution; None for an unconditional run."""
        if self.label_counts is None:
            return None
        return self.share(random_labels(self.label_counts, batch, self.gen))


__all__ = ["Draws"]
