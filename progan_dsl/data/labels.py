"""Class labels as the networks take them: one-hot float32 rows, for real images (the loader) and
for generated ones (`random_labels`).

`random_labels` draws classes the way the official code does (`training_set.get_random_labels_tf`
in tkarras/progressive_growing_of_gans: `tf.gather(labels, tf.random_uniform([n], 0, N))`, a
uniformly random index into the dataset's label array), so classes come in the dataset's
empirical distribution. The index goes into the label array *sorted by class*, which has that
same distribution and depends on the class counts only: a dataset and its `class_counts` give
the same draws from the same generator.
"""

from __future__ import annotations

import numpy as np
import torch

from progan_dsl.data.dataset import ImageDataset
from progan_dsl.errors import UserError

__all__ = ["one_hot", "random_labels"]


def one_hot(classes: np.ndarray | torch.Tensor, num_classes: int) -> torch.Tensor:
    """int class indices [n] -> float32 one-hot [n, num_classes] (on the indices' device)."""
    index = torch.as_tensor(classes, dtype=torch.int64)
    out = torch.zeros(len(index), num_classes, dtype=torch.float32, device=index.device)
    return out.scatter_(1, index[:, None], 1.0)


def random_labels(
    dataset_or_counts: ImageDataset | np.ndarray | torch.Tensor | list[int],
    n: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """float32 one-hot [n, K] on the CPU: n classes drawn in the dataset's empirical
    distribution (see the module docstring), from `generator` (a CPU torch.Generator) only.

    `dataset_or_counts`: an `ImageDataset` with labels, or its `class_counts` ([K] counts, e.g.
    stored with a checkpoint). UserError for a dataset without labels; ValueError for counts
    that are not K >= 1 non-negative integers with a positive sum, or n < 0."""
    counts = _counts(dataset_or_counts)
    if n < 0:
        raise ValueError(f"cannot draw {n} labels")
    if generator.device.type != "cpu":
        raise ValueError(f"random_labels takes a CPU generator, got one on {generator.device}")
    ends = torch.from_numpy(np.cumsum(counts))  # image k of the sorted array has class c iff
    index = torch.randint(0, int(ends[-1]), (n,), generator=generator)  # ends[c-1] <= k < ends[c]
    classes = torch.searchsorted(ends, index, right=True)
    return one_hot(classes, len(counts))


def _counts(source: ImageDataset | np.ndarray | torch.Tensor | list[int]) -> np.ndarray:
    if isinstance(source, ImageDataset):
        if not source.num_classes:
            raise UserError(
                f"dataset {source.path} has no labels, so it gives no classes to draw; "
                "create it with 'progan-dataset create --labels'"
            )
        return np.asarray(source.class_counts, dtype=np.int64)
    array = source.cpu().numpy() if isinstance(source, torch.Tensor) else np.asarray(source)
    if (
        array.ndim != 1
        or not len(array)
        or not np.issubdtype(array.dtype, np.integer)
        or (array < 0).any()
        or array.sum() <= 0
    ):
        raise ValueError(
            f"class counts must be K >= 1 non-negative integers with a positive sum, got "
            f"{array.dtype} {array.shape}"
        )
    return array.astype(np.int64)
