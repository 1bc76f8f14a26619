"""Datasets: `progan-dataset create` (sources -> multi-resolution uint8 levels on disk) and the
training loader that reads them.

Modules: `geometry` (level shapes, 2x2 box filter), `manifest` (on-disk format, validation,
checksums), `sources` and `mnist` (where images come from; `sources.BUNDLED` names the bundled
ones), `imageops` (per-image crop/resize, preview), `create` (atomic, kill-safe dataset
creation), `npyfile` (writing a level file without a memory map), `dataset` (`ImageDataset`,
checked at open), `loader` (`ImageLoader`), `cli`.
The loader imports torch; import it from `progan_dsl.data.loader`.
"""

from progan_dsl.data.create import CreateOptions, CreateResult, create_dataset
from progan_dsl.data.dataset import ImageDataset

__all__ = ["CreateOptions", "CreateResult", "ImageDataset", "create_dataset"]
