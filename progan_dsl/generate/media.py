"""Image files from generated images: grids, single PNGs, GIF and MP4 animations.

Owns the layout of a grid (row-major, `ceil(sqrt(n))` columns by default, black where a row is
short) and the writers. Every file is written to a temporary name beside its target and renamed,
so a reader never sees half a file. PNG and GIF go through Pillow; MP4 needs the imageio-ffmpeg
package (which ships an ffmpeg binary) and is refused with a clear message without it.
Images arrive as uint8 [N, C, H, W] with C = 1 (grayscale), 3 (RGB) or 4 (RGBA).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from progan_dsl.errors import UserError
from progan_dsl.fsutil import write_atomic_with

MODES = {1: "L", 3: "RGB", 4: "RGBA"}
ANIMATIONS = (".gif", ".mp4")


def grid(images: np.ndarray, cols: int | None = None) -> np.ndarray:
    """uint8 [N, C, H, W] -> one uint8 [rows * H, cols * W, C] image, row-major."""
    n, c, h, w = images.shape
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    canvas = np.zeros((rows * h, cols * w, c), np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        canvas[r * h : (r + 1) * h, q * w : (q + 1) * w] = images[i].transpose(1, 2, 0)
    return canvas


def to_pil(image: np.ndarray) -> Image.Image:
    """uint8 [H, W, C] -> a Pillow image (C = 1: grayscale 'L')."""
    channels = image.shape[2]
    if channels not in MODES:
        raise UserError(f"cannot write {channels}-channel images (1, 3 or 4 channels)")
    return Image.fromarray(image[:, :, 0] if channels == 1 else image, MODES[channels])


def write_png(image: np.ndarray, path: str | Path) -> Path:
    """One uint8 [H, W, C] image as a PNG."""
    return write_atomic_with(Path(path), lambda tmp: to_pil(image).save(tmp, format="PNG"))


def write_pngs(images: np.ndarray, folder: str | Path, prefix: str = "") -> list[Path]:
    """uint8 [N, C, H, W] as `folder/<prefix>000000.png`, ... (index order)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder")
    return [
        write_png(img.transpose(1, 2, 0), folder / f"{prefix}{i:06d}.png")
        for i, img in enumerate(images)
    ]


def write_gif(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """uint8 [N, C, H, W] frames as a looping GIF."""
    pictures = [to_pil(f.transpose(1, 2, 0)) for f in frames]
    duration = max(1, round(1000 / fps))
    return write_atomic_with(
        Path(path),
        lambda tmp: pictures[0].save(
            tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=duration, loop=0
        ),
    )


def write_mp4(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """uint8 [N, C, H, W] frames as an H.264 MP4 (needs imageio-ffmpeg)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError(
            "writing .mp4 needs the imageio-ffmpeg package (pip install "
            "imageio-ffmpeg); or write a .gif"
        ) from None
    _, c, h, w = frames.shape
    if c not in (1, 3):
        raise UserError(f"cannot write {c}-channel frames as MP4 (1 or 3 channels)")

    def write(tmp: Path) -> None:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (w, h),
            fps=fps,
            pix_fmt_in="gray" if c == 1 else "rgb24",
            pix_fmt_out="yuv420p",  # what players expect; needs even sizes (ProGAN's are)
            macro_block_size=1,  # keep 4x4 .. 1024x1024 frames at their size
            codec="libx264",
        )
        writer.send(None)  # start the ffmpeg process
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(frame.transpose(1, 2, 0)).tobytes())
        finally:
            writer.close()

    return write_atomic_with(Path(path), write)


def write_animation(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """GIF or MP4 by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return write_gif(frames, path, fps)
    if suffix == ".mp4":
        return write_mp4(frames, path, fps)
    raise UserError(f"{path}: an animation is written as {' or '.join(ANIMATIONS)}")
