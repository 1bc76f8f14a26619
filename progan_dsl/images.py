"""Images as the product shows them: float -> uint8, grids, PNG files. One of each.

Networks work in [-1, 1] (the official `drange_net`); files hold uint8. `to_uint8` is the one
conversion: rint((x + 1) * 127.5) clipped to 0..255 (the official `convert_to_pil_image`), for torch
tensors and numpy arrays alike. `image_grid` lays uint8 [N, C, H, W] images out row-major with a
grey gutter between cells (optionally resampling cells by powers of two, as training grids do);
`write_png` writes an [H, W, C] array atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from progan_dsl.fsutil import write_bytes_atomic

GUTTER = 2  # pixels between grid cells
GUTTER_VALUE = 128  # mid grey: visible against black (MNIST) and bright (faces) backgrounds
PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}

ImageArray = TypeVar("ImageArray", torch.Tensor, np.ndarray)


def to_uint8(images: ImageArray) -> ImageArray:
    """[-1, 1] floats -> uint8 0..255: rint((x + 1) * 127.5), clipped. Same type and shape."""
    if isinstance(images, np.ndarray):
        return to_uint8(torch.from_numpy(np.asarray(images, dtype=np.float32))).numpy()
    return ((images.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def _as_tensor(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    tensor = (
        torch.from_numpy(np.array(images)) if isinstance(images, np.ndarray) else images
    )  # a copy
    if tensor.dtype != torch.uint8 or tensor.ndim != 4:
        raise ValueError(
            f"expected uint8 images [N, C, H, W], got {tensor.dtype} {list(tensor.shape)}"
        )
    return tensor.cpu()


def resample_cells(images: torch.Tensor, cell: int) -> torch.Tensor:
    """uint8 [N, C, H, W] -> height `cell` by a power of two: nearest up, box average down."""
    h = images.shape[2]
    if cell == h:
        return images
    x = images.float()
    x = (
        F.interpolate(x, scale_factor=cell // h, mode="nearest")
        if cell > h
        else F.avg_pool2d(x, h // cell)
    )
    return x.round().clamp(0, 255).to(torch.uint8)


def image_grid(
    images: torch.Tensor | np.ndarray,
    cols: int | None = None,
    rows: int | None = None,
    *,
    cell: int | None = None,
    gutter: int = GUTTER,
) -> np.ndarray:
    """uint8 [N, C, H, W] -> one uint8 [H', W', C] image, row-major, `gutter` grey pixels between
    cells and none around them. `cols` defaults to ceil(sqrt(N)) and `rows` to what N needs; cells
    past N stay grey. `cell` resamples every image to that height first (powers of two)."""
    x = _as_tensor(images)
    n = x.shape[0]
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    rows = rows or max(1, math.ceil(n / cols))
    x = x[: rows * cols]
    if cell is not None:
        x = resample_cells(x, cell)
    _, c, h, w = x.shape
    canvas = np.full(
        (rows * h + (rows - 1) * gutter, cols * w + (cols - 1) * gutter, c), GUTTER_VALUE, np.uint8
    )
    pixels = x.permute(0, 2, 3, 1).numpy()  # [N, H, W, C]
    for i in range(len(pixels)):
        r, q = divmod(i, cols)
        top, left = r * (h + gutter), q * (w + gutter)
        canvas[top : top + h, left : left + w] = pixels[i]
    return canvas


def to_pil(image: np.ndarray) -> Image.Image:
    """uint8 [H, W, C] -> a Pillow image (1 channel grey, 3 RGB, 4 RGBA; 2 shows the first)."""
    if image.shape[2] == 2:
        image = image[:, :, :1]
    mode = PIL_MODES.get(image.shape[2])
    if mode is None:
        raise ValueError(f"cannot show {image.shape[2]}-channel images (1, 3 or 4 channels)")
    return Image.fromarray(np.ascontiguousarray(image[:, :, 0] if mode == "L" else image), mode)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """One uint8 [H, W, C] image as a PNG file, written atomically."""
    return write_bytes_atomic(path, png_bytes(image))


__all__ = ["image_grid", "png_bytes", "resample_cells", "to_pil", "to_uint8", "write_png"]
