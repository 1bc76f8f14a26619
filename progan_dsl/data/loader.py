"""`ImageLoader`: the training engine's source of real images and their labels (and
`ImageDataset`, re-exported).

Semantics (all deterministic, independent of `workers`):
- Images are drawn in a stream of *positions* 0, 1, 2, ...; position p is image
  `perm(seed, p // N)[p % N]`, where `perm(seed, epoch)` is a permutation of all N images. A call
  with global batch B covers positions [p, p + B) and advances p by B, so batches may straddle an
  epoch boundary and B may change between phases.
- Rank r of `world_size` takes the contiguous slice of B // world_size positions starting at
  p + r * B // world_size: the ranks of a 2-process run together see exactly the images of the
  1-process run with the same global batch.
- `mirror`: image i in epoch e is flipped horizontally iff `flips(seed, e)[i]`.
- Output: float32 [N, C, H, W] in [-1, 1] (uint8 v -> (v - 127.5) / 127.5), faded by alpha as
  the official train.py does (process_reals: the data at level floor(lod), then 'FadeLOD'):
  - alpha = 1: level R as stored.
  - 0 < alpha < 1: `fade_reals`, lerp(up, high, alpha) = (1 - alpha) * up + alpha * high, the
    generator's fade-in, where `high` is level R in [-1, 1] and `up` its float 2x2 mean upsampled
    2x (nearest): from the current level in float, as 'FadeLOD' computes it. Computed in float32
    as alpha * high + (1 - alpha) * up.
  - alpha = 0 (the first image of a fade-in, where the official lod is still a whole number and
    floor(lod) picks the level below): the *stored* level R/2 in [-1, 1], upsampled 2x (nearest),
    exactly what the previous stage trained on ('UpscaleLOD'). It differs from the limit of the
    blend (the float mean of level R) by at most half a grey level.
- `next_reals` returns the same images with their labels (`Reals`): one-hot float32 rows of the
  classes of exactly those images (None for a dataset without labels); `next_batch` returns the
  images alone. Both advance the stream once and share the prefetched batches.
- `state_dict()` holds the seed and position; loading it continues with the same batches (and
  labels: they follow the images).

Speed: rows are read from the uint8 memmaps in ascending index order (memmap locality) straight
into the batch. On the CPU each row is converted to float as it is read, and the fade runs, in
numpy (single-threaded: no OpenMP barriers to stall on a busy machine); for CUDA, rows go into a
pinned uint8 buffer that is copied and converted on the GPU. `workers > 0` prefetches (reads and
converts) the next batches on threads, guessing that the next call uses the same resolution, batch
size and level read (R, or R/2 at alpha = 0); a wrong guess is discarded and the batch read
synchronously.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from progan_dsl.data.dataset import ImageDataset
from progan_dsl.data.labels import one_hot

__all__ = ["ImageDataset", "ImageLoader", "Reals", "fade_reals", "served_reals", "to_float"]

STATE_VERSION = 1
_HALF = np.float32(127.5)  # uint8 v -> (v - 127.5) / 127.5 in [-1, 1]
_EPOCH_CACHE = 4  # epochs whose permutation and flips are kept
_FADE_CHUNK_BYTES = 4 << 20  # the fade-in runs over this many bytes of images at a time


@dataclass(frozen=True)
class Reals:
    """One call's real images and their labels: this rank's slice of the global batch."""

    images: torch.Tensor  # float32 [n, C, H, W] in [-1, 1] on the loader's device
    labels: torch.Tensor | None  # float32 one-hot [n, num_classes], same device; None: unlabelled


@dataclass(frozen=True)
class _Request:
    """What one call reads: this rank's slice of a global batch at a stream position, from level
    `level` (the resolution asked for, or the level below it at alpha = 0)."""

    resolution: int
    global_batch: int
    position: int
    level: int


Array = np.ndarray | torch.Tensor
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)  # numpy in, numpy out; torch in, torch out


@dataclass
class _Fetched:
    """A request's images: float32 numpy (CPU) or a pinned uint8 tensor (CUDA, converted later),
    and their class indices."""

    request: _Request
    images: Array  # [n, C, h, w] of level `request.level`
    classes: np.ndarray | None  # int64 [n]; None for a dataset without labels


class ImageLoader:
    """Deterministic, resumable, rank-sliced batches of real images (see module docstring)."""

    def __init__(
        self,
        dataset: ImageDataset | str | os.PathLike[str],
        *,
        seed: int = 0,
        mirror: bool = False,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
        workers: int = 0,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        if seed < 0 or workers < 0:
            raise ValueError("seed and workers must be non-negative")
        self.dataset = dataset if isinstance(dataset, ImageDataset) else ImageDataset(dataset)
        self.seed = seed
        self.mirror = mirror
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device)
        self.workers = workers
        self.position = 0  # images of the global stream consumed so far
        self._pin = self.device.type == "cuda" and torch.cuda.is_available()
        self._epochs: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._epoch_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, "progan-loader") if workers else None
        self._queue: deque[tuple[_Request, Future[_Fetched]]] = deque()

    # ---- the public API -------------------------------------------------------------------

    def next_batch(self, resolution: int, global_batch: int, alpha: float = 1.0) -> torch.Tensor:
        """This rank's global_batch // world_size images of the next global batch, float32
        [N, C, H, W] in [-1, 1] on the device; alpha < 1 fades them (see the module docstring)."""
        fetched = self._advance(resolution, global_batch, alpha)
        return self._images(fetched, alpha)

    def next_reals(self, resolution: int, global_batch: int, alpha: float = 1.0) -> Reals:
        """`next_batch`'s images (same stream, one step) with the one-hot labels of exactly
        those images (None for a dataset without labels)."""
        fetched = self._advance(resolution, global_batch, alpha)
        images = self._images(fetched, alpha)
        if fetched.classes is None:
            return Reals(images, None)
        labels = one_hot(fetched.classes, self.dataset.num_classes)
        return Reals(images, labels.to(self.device))

    def _advance(self, resolution: int, global_batch: int, alpha: float) -> _Fetched:
        """Check a call, take (or read) its batch and move the stream on by `global_batch`."""
        if global_batch < 1 or global_batch % self.world_size:
            raise ValueError(
                f"global batch {global_batch} is not a positive multiple of "
                f"world_size {self.world_size}"
            )
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha {alpha} is outside [0, 1]")
        self.dataset.shape(resolution)  # UserError if the level does not exist
        level = _level_below(self.dataset, resolution) if alpha == 0.0 else resolution
        request = _Request(resolution, global_batch, self.position, level)
        fetched = self._take_prefetched(request) or self._fetch(request)
        self.position += global_batch
        self._prefetch_after(request)
        return fetched

    @property
    def epoch(self) -> int:
        """Epoch of the next image to be drawn."""
        return self.position // self.dataset.num_images

    def state_dict(self) -> dict[str, Any]:
        """Plain-JSON state; `load_state_dict` on it continues with the same batches."""
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "position": self.position,
            "epoch": self.epoch,
            "index_in_epoch": self.position % self.dataset.num_images,
            "num_images": self.dataset.num_images,
            "mirror": self.mirror,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore seed and position; ValueError if the state is for another dataset/mirroring."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"loader state version {state.get('version')!r} is not supported")
        if state["num_images"] != self.dataset.num_images:
            raise ValueError(
                f"loader state is for {state['num_images']} images, "
                f"this dataset has {self.dataset.num_images}"
            )
        if bool(state["mirror"]) != self.mirror:
            raise ValueError(f"loader state has mirror={state['mirror']}, loader has {self.mirror}")
        self._drop_prefetched()
        self.seed = int(state["seed"])
        self.position = int(state["position"])

    def close(self) -> None:
        """Stop the prefetch threads (also done at interpreter exit)."""
        self._drop_prefetched()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> ImageLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading --------------------------------------------------------------------------

    def _epoch_tables(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(permutation of all images, per-image flip flags) of `epoch`, from (seed, epoch)."""
        key = (self.seed, epoch)
        with self._epoch_lock:
            if key not in self._epochs:
                perm_seq, flip_seq = np.random.SeedSequence(list(key)).spawn(2)
                n = self.dataset.num_images
                perm = np.random.default_rng(perm_seq).permutation(n)
                flips = np.random.default_rng(flip_seq).integers(0, 2, n).astype(bool)
                self._epochs[key] = (perm, flips)
                while len(self._epochs) > _EPOCH_CACHE:
                    self._epochs.popitem(last=False)
            return self._epochs[key]

    def _indices(self, request: _Request) -> tuple[np.ndarray, np.ndarray]:
        """Image index and flip flag of each position in this rank's slice."""
        share = request.global_batch // self.world_size
        start = request.position + self.rank * share
        positions = np.arange(start, start + share)
        n = self.dataset.num_images
        epochs, offsets = np.divmod(positions, n)
        index = np.empty(share, dtype=np.int64)
        flip = np.zeros(share, dtype=bool)
        for epoch in np.unique(epochs):
            here = epochs == epoch
            perm, flips = self._epoch_tables(int(epoch))
            index[here] = perm[offsets[here]]
            if self.mirror:
                flip[here] = flips[index[here]]
        return index, flip

    def _read(self, resolution: int, index: np.ndarray, flip: np.ndarray) -> Array:
        """Rows `index` of a level, flipped where asked: float32 [-1, 1] numpy on the CPU, or
        pinned uint8 tensor for a CUDA device (converted there). Rows are read in ascending
        index order (memmap locality), each converted straight into the batch (no uint8 copy)."""
        level = self.dataset.images(resolution).view(np.ndarray)  # plain view: cheap row access
        shape = (len(index), *level.shape[1:])
        pinned = torch.empty(shape, dtype=torch.uint8, pin_memory=True) if self._pin else None
        out = np.empty(shape, dtype=np.float32) if pinned is None else pinned.numpy()
        for j in np.argsort(index, kind="stable"):
            row = level[index[j]]
            row = row[..., ::-1] if flip[j] else row
            if pinned is None:
                np.subtract(row, _HALF, out=out[j])  # first half of (v - 127.5) / 127.5
            else:
                out[j] = row
        if pinned is not None:
            return pinned
        np.divide(out, _HALF, out=out)
        return out

    def _fetch(self, request: _Request) -> _Fetched:
        index, flip = self._indices(request)
        labels = self.dataset.labels
        classes = None if labels is None else labels[index]
        return _Fetched(request, self._read(request.level, index, flip), classes)

    def _images(self, fetched: _Fetched, alpha: float) -> torch.Tensor:
        """The batch on the device: converted, then faded (alpha < 1) or upsampled from the
        level below (alpha = 0)."""
        upsample = fetched.request.level != fetched.request.resolution
        if isinstance(fetched.images, torch.Tensor):  # pinned uint8: to the device, convert there
            images = _to_float_torch(fetched.images.to(self.device, non_blocking=True))
            return upsample2x(images) if upsample else fade_reals(images, alpha)
        array = fetched.images  # float32 numpy: the fade runs in numpy (see the docstring)
        return torch.from_numpy(upsample2x(array) if upsample else fade_reals(array, alpha))

    # ---- prefetching ----------------------------------------------------------------------

    def _take_prefetched(self, request: _Request) -> _Fetched | None:
        """The queued result for `request` if the guess was right; otherwise drop the queue."""
        while self._queue:
            queued, future = self._queue.popleft()
            if queued == request:
                return future.result()
            future.cancel()
            self._drop_prefetched()
        return None

    def _prefetch_after(self, request: _Request) -> None:
        """Keep `workers` guesses queued: the same request at the following positions."""
        if self._pool is None:
            return
        queued_up_to = self._queue[-1][0].position if self._queue else request.position
        while len(self._queue) < self.workers:
            queued_up_to += request.global_batch
            guess = _Request(request.resolution, request.global_batch, queued_up_to, request.level)
            self._queue.append((guess, self._pool.submit(self._fetch, guess)))

    def _drop_prefetched(self) -> None:
        while self._queue:
            _, future = self._queue.popleft()
            future.cancel()


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1], exactly as batches are converted: (v - 127.5) / 127.5."""
    out = np.subtract(images, _HALF, dtype=np.float32)
    return np.divide(out, _HALF, out=out)


def served_reals(
    dataset: ImageDataset, resolution: int, index: np.ndarray, alpha: float
) -> np.ndarray:
    """Images `index` of level `resolution` exactly as the loader serves them at `alpha` (without
    mirroring): float32 [len(index), C, H, W] in [-1, 1]; at alpha = 0 the stored level below,
    upsampled. For code that compares with what D sees (metrics during training)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha {alpha} is outside [0, 1]")
    if alpha == 0.0:
        below = dataset.images(_level_below(dataset, resolution))
        return upsample2x(to_float(np.asarray(below[index])))
    return fade_reals(to_float(np.asarray(dataset.images(resolution)[index])), alpha)


def _level_below(dataset: ImageDataset, resolution: int) -> int:
    """The level an alpha = 0 batch at `resolution` comes from: the next lower one."""
    dataset.shape(resolution)  # UserError if the level does not exist
    position = dataset.resolutions.index(resolution)
    if position == 0:
        raise ValueError(
            f"alpha 0 at resolution {resolution} serves the level below, but {resolution} is the "
            f"dataset's lowest level (a fade-in starts above the base resolution)"
        )
    return dataset.resolutions[position - 1]


def upsample2x(images: ArrayT) -> ArrayT:
    """[N, C, h, w] -> [N, C, 2h, 2w], each pixel repeated 2x2 (nearest), numpy or torch."""
    n, c, h, w = images.shape
    if isinstance(images, torch.Tensor):
        wide = images[:, :, :, None, :, None].expand(n, c, h, 2, w, 2)
        return wide.reshape(n, c, 2 * h, 2 * w)
    out = np.empty((n, c, 2 * h, 2 * w), dtype=images.dtype)
    out.reshape(n, c, h, 2, w, 2)[...] = images[:, :, :, None, :, None]
    return out


def _to_float_torch(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] on the device, as `_read` does on the CPU:
    (v - 127.5) / 127.5, so 0 -> -1 and 255 -> 1 exactly."""
    return images.to(torch.float32).sub_(127.5).div_(127.5)


def fade_reals(images: ArrayT, alpha: float) -> ArrayT:
    """In place: images <- lerp(up, images, alpha), `up` = the float 2x2 mean of `images`
    upsampled 2x (nearest): the real-image fade-in of the official code ('FadeLOD') for
    0 < alpha < 1. float32 [N, C, H, W] numpy arrays (CPU) or torch tensors (GPU); alpha = 1
    leaves them unchanged. (At alpha = 0 the loader serves the stored level below instead,
    `served_reals`; this function, given only level R, computes the blend's limit.)
    Runs over cache-sized chunks of images; `up` is never built at full size."""
    if alpha >= 1.0:
        return images
    step = max(1, _FADE_CHUNK_BYTES // max(images[0].nbytes, 1))
    for i in range(0, len(images), step):
        _fade_chunk(images[i : i + step], alpha)
    return images


def _fade_chunk(high: Array, alpha: float) -> None:
    n, c, h, w = high.shape
    blocks = high.reshape(n, c, h // 2, 2, w // 2, 2)  # a view: `high` is contiguous
    if isinstance(blocks, torch.Tensor):
        low_term = blocks.mean(dim=(3, 5), keepdim=True) * (1.0 - alpha)
    else:
        low_term = blocks.mean(axis=(3, 5), keepdims=True, dtype=np.float32) * np.float32(
            1.0 - alpha
        )
    blocks *= alpha
    blocks += low_term
