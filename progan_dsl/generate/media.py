"""Files of generated images beyond one grid: a PNG per image, GIF and MP4 animations.

Grids and PNG writing are `progan_dsl.images`; this module owns the multi-file and animated
outputs of `progan-generate`. Every file is written to a temporary name beside its target and
renamed, so a reader never sees half a file. PNG and GIF go through Pillow; MP4 needs the
imageio-ffmpeg package (which ships an ffmpeg binary) and is refused with a clear message without
it.
Images arrive as uint8 [N, C, H, W] with C = 1 (grayscale), 3 (RGB) or 4 (RGBA).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from progan_dsl.errors import UserError
from progan_dsl.fsutil import plan_output_dir, staged_dir, write_atomic_with
from progan_dsl.images import to_pil, write_png

ANIMATIONS = (".gif", ".mp4")


OUTPUT_KIND = "progan-generate"


def write_image_folder(
    images: np.ndarray, folder: str | Path, names: list[str], *, force: bool = False
) -> list[Path]:
    """uint8 [N, C, H, W] as `folder/<name>.png` (names from the caller, e.g. `seed0042`).

    The folder rule of every command (`fsutil.plan_output_dir`): a new or empty folder is
    written; a non-empty one only with `force` and only if it holds an earlier progan-generate
    output and nothing else. The folder is built beside the target and published whole."""
    plan = plan_output_dir(folder, kind=OUTPUT_KIND, force=force)
    files = [f"{name}.png" for name in names]
    with staged_dir(plan) as tmp:
        for file, img in zip(files, images, strict=True):
            write_png(tmp / file, img.transpose(1, 2, 0))
    return [plan.path / file for file in files]


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
