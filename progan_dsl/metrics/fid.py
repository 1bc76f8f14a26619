"""Fréchet Inception distance (FID, Heusel et al. 2017) and kernel Inception distance (KID,
Binkowski et al. 2018) on Inception-v3 pool features, and the on-disk cache of real-image features.

Owns the statistics of a feature set (`FeatureStats`), the Fréchet distance between two Gaussians
(the trace of the matrix square root from symmetric eigendecompositions or, for sets smaller than
the feature dimension, from the singular values of the cross-Gram matrix; float64, no scipy), the
unbiased polynomial-kernel MMD over random subsets, and `cached_real_stats`, which computes a
dataset level's features once and keeps them in an `.npz` keyed by the dataset's manifest
checksum, the resolution and the number of images. Features come from `inception.py`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from progan_dsl.data.manifest import MANIFEST_NAME, read_manifest
from progan_dsl.errors import UserError
from progan_dsl.metrics.images import read_real_images
from progan_dsl.metrics.inception import FEATURE_EXTRACTOR, inception_features
from progan_dsl.metrics.progress import bar, step

# KID defaults of Binkowski et al. 2018 (and the StyleGAN2-ADA implementation): 100 subsets of
# 1000 images each, the subset size capped to the smaller set.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


@dataclass(frozen=True)
class FeatureStats:
    """Inception features of one image set with their mean and (unbiased) covariance."""

    features: torch.Tensor  # [N, 2048] float32
    mu: torch.Tensor  # [2048] float64
    sigma: torch.Tensor  # [2048, 2048] float64

    @classmethod
    def from_features(cls, features: torch.Tensor) -> FeatureStats:
        if features.ndim != 2 or features.shape[0] < 2:
            raise UserError(
                f"FID needs features of at least 2 images, got shape {tuple(features.shape)}"
            )
        wide = features.double()
        return cls(features=features.float(), mu=wide.mean(dim=0), sigma=torch.cov(wide.T))

    @classmethod
    def from_images(
        cls,
        images: torch.Tensor,
        *,
        device: str | torch.device = "cpu",
        desc: str = "Inception features",
    ) -> FeatureStats:
        return cls.from_features(inception_features(images, device=device, desc=desc))

    def save(self, path: Path) -> None:
        """Write to `path` (.npz) atomically: a crash never leaves a truncated cache file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    features=self.features.numpy(),
                    mu=self.mu.numpy(),
                    sigma=self.sigma.numpy(),
                    extractor=np.array(FEATURE_EXTRACTOR),
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> FeatureStats:
        with np.load(path, allow_pickle=False) as data:
            if str(data["extractor"]) != FEATURE_EXTRACTOR:
                raise UserError(
                    f"{path}: features from {data['extractor']}, expected {FEATURE_EXTRACTOR}"
                )
            return cls(
                features=torch.from_numpy(data["features"]),
                mu=torch.from_numpy(data["mu"]),
                sigma=torch.from_numpy(data["sigma"]),
            )


def trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> float:
    """tr(sqrtm(sigma1 @ sigma2)) for covariance matrices [D, D], in float64.

    sigma1 @ sigma2 is similar to the symmetric PSD matrix sqrt(sigma1) sigma2 sqrt(sigma1), so the
    eigenvalues of the product's square root are the square roots of that matrix's eigenvalues
    (rounding below zero is clipped). NumPy's LAPACK is used: on CPUs it is up to 2x faster than
    torch's for these 2048x2048 decompositions.
    """
    s1, s2 = sigma1.double().cpu().numpy(), sigma2.double().cpu().numpy()
    values, vectors = np.linalg.eigh(s1)
    root1 = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    inner = root1 @ s2 @ root1
    inner = (inner + inner.T) / 2  # symmetric up to rounding; make it exactly so for eigvalsh
    return float(np.sqrt(np.linalg.eigvalsh(inner).clip(min=0)).sum())


def trace_sqrt_product_of_features(features1: torch.Tensor, features2: torch.Tensor) -> float:
    """tr(sqrtm(S1 @ S2)) for the sample covariances S1, S2 of two feature sets [n1, D], [n2, D].

    With the centred features A1, A2 and S_i = A_i^T A_i / (n_i - 1), the non-zero eigenvalues of
    S1 S2 = A1^T (A1 A2^T A2) are those of (A1 A2^T)(A1 A2^T)^T (XY and YX share them), i.e. the
    squared singular values of A1 A2^T / sqrt((n1 - 1)(n2 - 1)): the trace is that matrix's nuclear
    norm. An [n1, n2] decomposition instead of [D, D] ones: much faster for small sets.
    """
    a1 = features1.double().cpu().numpy()
    a2 = features2.double().cpu().numpy()
    cross = (a1 - a1.mean(axis=0)) @ (a2 - a2.mean(axis=0)).T
    scale = np.sqrt((a1.shape[0] - 1) * (a2.shape[0] - 1))
    return float(np.linalg.svd(cross, compute_uv=False).sum() / scale)


def frechet_distance(
    mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))."""
    return _frechet(mu1, sigma1, mu2, sigma2, trace_sqrt_product(sigma1, sigma2))


def _frechet(
    mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor, tr_sqrt: float
) -> float:
    mean_term = (mu1.double() - mu2.double()).square().sum().item()
    trace_term = sigma1.double().trace().item() + sigma2.double().trace().item()
    return mean_term + trace_term - 2.0 * tr_sqrt


def fid_from_stats(real: FeatureStats, fake: FeatureStats) -> float:
    """FID of two feature sets; the trace term comes from whichever decomposition is cheaper:
    [n1, n2] singular values (n1 n2 min(n1, n2) work) or [D, D] eigendecompositions (D^3)."""
    n1, n2 = real.features.shape[0], fake.features.shape[0]
    step(f"FID of {n1:,} real and {n2:,} generated images (matrix square root)")
    if n1 * n2 * min(n1, n2) < real.sigma.shape[0] ** 3:
        tr_sqrt = trace_sqrt_product_of_features(real.features, fake.features)
    else:
        tr_sqrt = trace_sqrt_product(real.sigma, fake.sigma)
    return _frechet(real.mu, real.sigma, fake.mu, fake.sigma, tr_sqrt)


def _polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x . y / d + 1)^3, the KID kernel (Binkowski et al. 2018)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased estimate of the squared MMD between two equal-size samples under the cubic kernel:
    off-diagonal means of k(x, x) and k(y, y) minus twice the mean of k(x, y)."""
    m = x.shape[0]
    k_xx = _polynomial_kernel(x, x)
    k_yy = _polynomial_kernel(y, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (
        m * (m - 1)
    )
    return (within - 2.0 * _polynomial_kernel(x, y).mean()).item()


def kernel_inception_distance(
    real_features: torch.Tensor,  # [N_real, D]
    fake_features: torch.Tensor,  # [N_fake, D]
    *,
    num_subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> float:
    """KID: the unbiased squared MMD averaged over `num_subsets` random subsets of `subset_size`
    images of each set (drawn without replacement within a subset). It is unbiased, so it can be
    slightly negative when the sets come from one distribution. When both sets have at most
    `subset_size` images every subset is the whole set and one computation is exact."""
    m = min(subset_size, real_features.shape[0], fake_features.shape[0])
    if m < 2:
        raise UserError("KID needs at least 2 images in each set")
    real = real_features.to(device=device, dtype=torch.float64)
    fake = fake_features.to(device=device, dtype=torch.float64)
    if m == real.shape[0] == fake.shape[0]:
        return mmd2_unbiased(fake, real)
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in bar(range(num_subsets), total=num_subsets, desc=f"KID subsets of {m}", unit="subset"):
        fake_idx = torch.randperm(fake.shape[0], generator=generator)[:m].to(device)
        real_idx = torch.randperm(real.shape[0], generator=generator)[:m].to(device)
        total += mmd2_unbiased(fake[fake_idx], real[real_idx])
    return total / num_subsets


def dataset_fingerprint(dataset_dir: str | Path) -> str:
    """SHA-256 of a dataset's `manifest.json`, which lists the sha256 of every level file, so it
    changes whenever the images do. `UserError` if the directory is not a dataset."""
    root = Path(dataset_dir)
    read_manifest(root)  # validates, with the dataset tool's own messages
    return hashlib.sha256((root / MANIFEST_NAME).read_bytes()).hexdigest()


def real_stats_cache_path(
    dataset_dir: str | Path, resolution: int, num: int | None, cache_dir: str | Path
) -> Path:
    """`<cache_dir>/inception-<fingerprint[:16]>-<resolution>px-<num|all>.npz`."""
    count = "all" if num is None else str(num)
    name = f"inception-{dataset_fingerprint(dataset_dir)[:16]}-{resolution}px-{count}.npz"
    return Path(cache_dir) / name


def cached_real_stats(
    dataset_dir: str | Path,
    resolution: int,
    num: int | None,
    cache_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    images: torch.Tensor | None = None,
) -> FeatureStats:
    """Inception statistics of `num` real images (all when None) of one dataset level, computed
    once and then read from `cache_dir`.

    `images`, when given, must be exactly the images `read_real_images(dataset_dir, resolution,
    num)` returns; a caller that already read them passes them to avoid a second read on a miss.
    """
    path = real_stats_cache_path(dataset_dir, resolution, num, cache_dir)
    if path.is_file():
        return FeatureStats.load(path)
    if images is None:
        images = read_real_images(dataset_dir, resolution, num)
    stats = FeatureStats.from_images(images, device=device, desc="Inception features, real")
    stats.save(path)
    return stats
