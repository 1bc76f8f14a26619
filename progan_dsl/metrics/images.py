"""Image batches for the metrics: checking them and reading them from disk.

Owns the one image format the metrics take (`[N, C, H, W]` tensors, uint8 0..255 or float on the
same scale), the checks that turn a wrong shape into a `UserError`, and the readers: a folder of
PNGs or an `.npy` array (generated images) and a dataset directory made by `progan-dataset` (real
images, through `progan_dsl.data.loader.ImageDataset`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from progan_dsl.errors import UserError

# A real-image subset is drawn with this fixed seed (not the metric seed), so cached real
# statistics only depend on the dataset, the resolution and the number of images.
REAL_SUBSET_SEED = 0

_PIL_MODES = {"L": 1, "RGB": 3}


def check_image_batch(images: torch.Tensor, name: str) -> None:
    """Raise `UserError` unless `images` is a non-empty [N, C, H, W] uint8 or float tensor."""
    if not isinstance(images, torch.Tensor):
        raise UserError(f"{name} images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or min(images.shape) == 0:
        raise UserError(
            f"{name} images must be a non-empty [N, C, H, W] batch, got shape {tuple(images.shape)}"
        )
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise UserError(f"{name} images must be uint8 (0..255) or float, got {images.dtype}")


def check_same_shape(real: torch.Tensor, fake: torch.Tensor) -> None:
    """Raise `UserError` unless both batches have the same [N, C, H, W] shape."""
    if real.shape != fake.shape:
        raise UserError(
            f"real and fake images must have the same [N, C, H, W] shape, got "
            f"{tuple(real.shape)} and {tuple(fake.shape)}"
        )


def to_nchw(array: np.ndarray, source: str) -> torch.Tensor:
    """A uint8 array [N, C, H, W], [N, H, W, C] or [N, H, W] (grayscale) as a [N, C, H, W] tensor.

    A 4-D array is channels-first when its second axis is 1 or 3, else channels-last when its last
    axis is 1 or 3.
    """
    if array.dtype != np.uint8:
        raise UserError(f"{source}: images must be uint8 (0..255), got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[1] not in (1, 3) and array.shape[-1] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4 or array.shape[1] not in (1, 3) or array.shape[0] == 0:
        raise UserError(
            f"{source}: expected uint8 images [N, C, H, W], [N, H, W, C] or [N, H, W] with 1 or 3 "
            f"channels, got shape {array.shape}"
        )
    return torch.from_numpy(np.ascontiguousarray(array))


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as opened:
        if opened.mode.startswith(("I", "F")):
            raise UserError(f"{path}: {opened.mode} pixels; only 8-bit images are read")
        image: Image.Image = opened
        if image.mode not in _PIL_MODES:  # bilevel/gray+alpha -> gray; palette, RGBA, ... -> RGB
            image = image.convert("L" if image.mode in ("1", "LA") else "RGB")
        array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array  # [H, W, C]


def load_png_folder(folder: Path, num: int | None = None) -> torch.Tensor:
    """The first `num` PNGs of `folder` in name order, as uint8 [N, C, H, W]."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise UserError(f"{folder}: no .png files found")
    images: list[np.ndarray] = []
    for path in files[:num]:
        try:
            array = _read_png(path)
        except OSError as err:
            raise UserError(f"{path}: cannot read image ({err})") from err
        if images and array.shape != images[0].shape:
            raise UserError(
                f"{path}: image is {array.shape[1]}x{array.shape[0]} with {array.shape[2]} "
                f"channel(s), but {files[0].name} is {images[0].shape[1]}x{images[0].shape[0]} "
                f"with {images[0].shape[2]}; all images must match"
            )
        images.append(array)
    return to_nchw(np.stack(images), str(folder))


def load_npy(path: Path, num: int | None = None) -> torch.Tensor:
    """The first `num` images of a uint8 `.npy` array, as [N, C, H, W]."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read .npy array ({err})") from err
    return to_nchw(np.array(array[:num]), str(path))  # a copy: the memmap is read-only


def load_image_source(path: str | Path, num: int | None = None) -> torch.Tensor:
    """Images from a folder of PNGs or an `.npy` uint8 array, as uint8 [N, C, H, W]."""
    path = Path(path)
    if path.is_dir():
        return load_png_folder(path, num)
    if path.suffix == ".npy" and path.is_file():
        return load_npy(path, num)
    raise UserError(f"{path}: expected a folder of .png images or a .npy file")


def subset_indices(total: int, num: int | None) -> np.ndarray:
    """Sorted indices of a fixed random subset of `num` out of `total` (all of them if
    num >= total)."""
    if num is None or num >= total:
        return np.arange(total)
    generator = torch.Generator().manual_seed(REAL_SUBSET_SEED)
    return np.sort(torch.randperm(total, generator=generator)[:num].numpy())


def read_real_images(
    dataset_dir: str | Path, resolution: int | None, num: int | None
) -> torch.Tensor:
    """Real images of one level of a `progan-dataset` directory, as uint8 [N, C, H, W].

    `resolution=None` takes the highest level. With `num` smaller than the dataset, a fixed random
    subset (seed `REAL_SUBSET_SEED`) is taken, so repeated evaluations compare against the same
    images.
    """
    from progan_dsl.data.dataset import ImageDataset

    dataset = ImageDataset(dataset_dir)
    if resolution is None:
        resolution = max(dataset.resolutions)
    level = dataset.images(
        resolution
    )  # UserError listing the levels if there is none at `resolution`
    rows = np.asarray(level[subset_indices(len(level), num)])
    return to_nchw(rows, f"{dataset_dir} ({resolution}px level)")
