"""Datasets: `progan-dataset create` (sources -> multi-resolution uint8 levels on disk) and the
training loader that reads them.

Modules: `geometry` (level shapes, 2x2 box filter), `manifest` (on-disk format, validation,
checksums), `sources` and `mnist` (where images come from; `sources.BUNDLED` names the bundled
ones), `imageops` (per-image crop/resize, preview), `create` (atomic, kill-safe dataset
creation), `npyfile` (writing a level file without a memory map), `dataset` (`ImageDataset`,
checked at open, with its labels), `labels` (one-hot labels, `random_labels`), `loader`
(`ImageLoader`, `Reals`), `cli`.
The loader and `labels` import torch; `Reals` and `random_labels` are exported lazily here, and
the loader is imported from `progan_dsl.data.loader`.
"""

from progan_dsl.lazy import lazy_exports

_EXPORTS = {
    "CreateOptions": "progan_dsl.data.create",
    "CreateResult": "progan_dsl.data.create",
    "ImageDataset": "progan_dsl.data.dataset",
    "Reals": "progan_dsl.data.loader",
    "create_dataset": "progan_dsl.data.create",
    "random_labels": "progan_dsl.data.labels",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
