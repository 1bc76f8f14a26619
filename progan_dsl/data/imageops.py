"""Per-image preparation (colour mode, crop or resize to the top level's shape) and the preview
grid. Everything here works on one image at a time and knows nothing about files or datasets.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import ExifTags, Image, ImageOps

FitMode = Literal["crop", "resize"]
SourceImage = Image.Image | np.ndarray  # a PIL image, or uint8 [H, W] / [H, W, C]

GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
# Float images (Pillow mode "F", e.g. 32-bit float TIFFs) hold intensities in [0, FLOAT_WHITE]:
# v -> rint(clip(v, 0, 1) * 255). Images with NaN or infinite values are skipped.
FLOAT_WHITE = 1.0
_SIXTEEN_BIT = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert to "L" (channels=1) or "RGB" (channels=3); alpha is dropped, 16-bit scaled to 8,
    float images ([0, 1]) scaled by 255."""
    if img.mode in _SIXTEEN_BIT:
        # PIL's "I"->"L" conversion clips; scale 16-bit range to 8 bits instead.
        wide = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.rint(np.clip(wide, 0, 65535) / 257.0).astype(np.uint8), "L")
    elif img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("the float image holds NaN or infinite values")
        scaled = np.clip(values / FLOAT_WHITE, 0.0, 1.0) * 255.0
        img = Image.fromarray(np.rint(scaled).astype(np.uint8), "L")
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")  # avoids PIL's warning about palette transparency
        img = img.convert(target)
    return img


def _fit(img: Image.Image, shape: tuple[int, int], mode: FitMode) -> Image.Image:
    height, width = shape
    if img.size == (width, height):
        return img
    if mode == "crop":  # centre crop to the target aspect ratio, then resample
        src_w, src_h = img.size
        scale = max(width / src_w, height / src_h)
        crop_w, crop_h = width / scale, height / scale
        left, top = (src_w - crop_w) / 2, (src_h - crop_h) / 2
        box = (left, top, left + crop_w, top + crop_h)
        return img.resize((width, height), Image.Resampling.LANCZOS, box=box)
    return img.resize((width, height), Image.Resampling.LANCZOS)  # stretch to the shape


def prepare(image: SourceImage, shape: tuple[int, int], channels: int, mode: FitMode) -> np.ndarray:
    """One source image -> uint8 [C, H, W] with C = `channels` (1 or 3) and (H, W) = `shape`."""
    if isinstance(image, np.ndarray):
        array = image if image.ndim == 3 else image[:, :, None]
        if array.shape[2] == 4:
            array = array[:, :, :3]
        if array.shape[:2] == shape and array.shape[2] == channels:
            return np.ascontiguousarray(array.transpose(2, 0, 1))
        image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    if image.format == "JPEG":  # decode at 1/2..1/8 scale when the target is much smaller
        image.draft("L" if channels == 1 else "RGB", (2 * shape[1], 2 * shape[0]))
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # camera photos: upright
        image = ImageOps.exif_transpose(image)
    image = _fit(_to_mode(image, channels), shape, mode)
    array = np.asarray(image, dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    return np.ascontiguousarray(array.transpose(2, 0, 1))
