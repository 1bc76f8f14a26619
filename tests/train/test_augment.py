"""The augmentation pipelines for D's inputs: values, exactness, probability, differentiability."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from progan_dsl import paper
from progan_dsl.train.augment import (
    ADA_GROUPS,
    ADA_TRANSFORMS,
    DIFFAUGMENT_POLICIES,
    AdaPipeline,
    DiffAugmentPipeline,
    Pipeline,
)

GEOMETRIC = ADA_GROUPS["blit"] + ADA_GROUPS["geom"]
PHI_1 = float(torch.special.ndtr(torch.tensor(1.0, dtype=torch.float64)))  # u giving a +1 sigma


def _images(
    shape: tuple[int, ...], seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)


def _uniforms(pipe: Pipeline, n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, pipe.draws, generator=torch.Generator().manual_seed(seed))


def _set(pipe: Pipeline, u: torch.Tensor, **columns: float | list[float]) -> torch.Tensor:
    """u with named columns ("xflip__gate" for "xflip.gate") set to given values."""
    u = u.clone()
    for key, value in columns.items():
        u[:, pipe.columns.index(key.replace("__", "."))] = torch.tensor(value)
    return u


# ---- construction --------------------------------------------------------------------------------


def test_groups_partition_the_transforms() -> None:
    assert sum(ADA_GROUPS.values(), ()) == ADA_TRANSFORMS
    assert DIFFAUGMENT_POLICIES == ("color", "translation", "cutout")


def test_draws_and_columns() -> None:
    assert AdaPipeline().draws == 28  # 2+2+3 blit, 2+4+2+3 geom, 2*5 color
    assert [AdaPipeline([t]).draws for t in ADA_TRANSFORMS] == [2, 2, 3, 2, 4, 2, 3, 2, 2, 2, 2, 2]
    assert DiffAugmentPipeline().draws == 7
    assert DiffAugmentPipeline(["cutout"]).columns == ("cutout.x", "cutout.y")
    # canonical order whatever order the caller lists
    assert AdaPipeline(["hue", "xflip"]).columns == (
        "xflip.gate",
        "xflip.mirror",
        "hue.gate",
        "hue.angle",
    )


def test_unknown_and_repeated_names_are_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown name\(s\) 'flip'; allowed: xflip, rotate90"):
        AdaPipeline(["flip"])
    with pytest.raises(ValueError, match="listed twice: hue"):
        AdaPipeline(["hue", "hue"])
    with pytest.raises(ValueError, match="got the string 'xflip'"):
        AdaPipeline("xflip")
    with pytest.raises(ValueError, match="unknown name.*'colour'.*allowed: color, translation"):
        DiffAugmentPipeline(["colour"])


def test_bad_arguments_are_errors() -> None:
    pipe = AdaPipeline()
    x = _images((2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"u must be \[N, draws\] = \[2, 28\], got \[2, 27\]"):
        pipe(x, torch.rand(2, 27))
    with pytest.raises(ValueError, match=r"H, W >= 4, got \[2, 3, 3, 8\]"):
        pipe(x[:, :, :3], torch.rand(2, 28))
    with pytest.raises(ValueError, match="need 1 or 3 channels, got 2"):
        pipe(x[:, :2], torch.rand(2, 28))
    AdaPipeline(GEOMETRIC)(x[:, :2], torch.rand(2, 18))  # geometry alone takes any channels


# ---- exact expectations --------------------------------------------------------------------------


def test_xflip_mirrors_the_chosen_samples() -> None:
    pipe = AdaPipeline(["xflip"])
    x = _images((3, 3, 5, 7))
    u = _set(pipe, _uniforms(pipe, 3), xflip__gate=[0.0, 0.0, 0.9], xflip__mirror=[0.2, 0.7, 0.1])
    out = pipe(x, u, 0.5)
    assert torch.equal(out[0], torch.flip(x[0], [2]))  # applied, mirror
    assert torch.equal(out[1], x[1])  # applied, identity chosen
    assert torch.equal(out[2], x[2])  # not applied (gate 0.9 >= p)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotate90_equals_rot90(k: int) -> None:
    pipe = AdaPipeline(["rotate90"])
    x = _images((2, 3, 6, 6))
    u = _set(pipe, _uniforms(pipe, 2), rotate90__gate=0.0, rotate90__quarter_turns=(k + 0.5) / 4)
    assert torch.equal(pipe(x, u), torch.rot90(x, k, [2, 3]))


def test_rotate90_half_turn_on_a_non_square_image() -> None:
    pipe = AdaPipeline(["rotate90"])
    x = _images((2, 1, 4, 8))
    u = _set(pipe, _uniforms(pipe, 2), rotate90__gate=0.0, rotate90__quarter_turns=0.6)
    assert torch.equal(pipe(x, u), torch.flip(x, [2, 3]))


def test_xint_is_a_reflected_roll() -> None:
    pipe = AdaPipeline(["xint"])
    x = _images((2, 3, 16, 16))
    # shift = round((2u - 1) * 0.125 * 16): x 0.9 -> +1.6 -> +2; y 0.2 -> -1.2 -> -1
    u = _set(pipe, _uniforms(pipe, 2), xint__gate=0.0, xint__x=0.9, xint__y=0.2)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")  # torch's reflect: edge not repeated
    expected = padded[:, :, 2 + 1 : 2 + 1 + 16, 2 - 2 : 2 - 2 + 16]  # out[i, j] = x[i + 1, j - 2]
    assert torch.equal(pipe(x, u), expected)


def test_parameters_at_identity_give_the_identity() -> None:
    x = _images((2, 3, 8, 8))
    for names in (GEOMETRIC, ADA_TRANSFORMS):
        pipe = AdaPipeline(names)
        u = torch.full((2, pipe.draws), 0.5)
        # applied (gate 0); every parameter at its identity: uniform 0.5 -> shift 0, angle 0,
        # N(0, 1) = 0 -> factor 1; mirror / flip 0.5 -> identity; quarter turns 0.1 -> k = 0
        u[:, [i for i, c in enumerate(pipe.columns) if ".gate" in c]] = 0.0
        u[:, pipe.columns.index("rotate90.quarter_turns")] = 0.1
        if names == GEOMETRIC:
            assert torch.equal(pipe(x, u), x)
        else:
            torch.testing.assert_close(pipe(x, u), x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("pipe", [AdaPipeline(), AdaPipeline(["hue"]), DiffAugmentPipeline()])
def test_p_zero_and_determinism(pipe: Pipeline) -> None:
    x = _images((3, 3, 8, 8))
    u = _uniforms(pipe, 3)
    if isinstance(pipe, AdaPipeline):
        assert pipe(x, u, 0.0) is x
        assert torch.equal(pipe(x, u, torch.tensor(0.0)), x)
        assert torch.equal(pipe(x, u, torch.tensor(0.7)), pipe(x, u, 0.7))
    first = pipe(x, u, 0.7)
    assert not torch.equal(first, x)
    assert torch.equal(pipe(x.clone(), u.clone(), 0.7), first)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_dtype_is_preserved(dtype: torch.dtype) -> None:
    for pipe in (AdaPipeline(), DiffAugmentPipeline()):
        x = _images((2, 3, 8, 8), dtype=dtype)
        u = _uniforms(pipe, 2)
        out = pipe(x, u, 0.5)
        assert out.dtype == dtype
        expected = pipe(x.float(), u, 0.5)  # the same float32 computation
        if dtype == torch.bfloat16:
            assert torch.equal(out, expected.to(dtype))
        else:
            torch.testing.assert_close(out.float(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("pipe", [AdaPipeline(), DiffAugmentPipeline()], ids=["ada", "diffaug"])
def test_affine_in_the_pixels(pipe: Pipeline, channels: int) -> None:
    """T(lerp(x, y, w)) == lerp(T(x), T(y), w): an augmented mix is a mix of augmented images."""
    x = _images((6, channels, 8, 12), seed=2)
    y = _images((6, channels, 8, 12), seed=3)
    w = torch.rand(6, 1, 1, 1, generator=torch.Generator().manual_seed(4))
    u = _uniforms(pipe, 6)
    p = torch.tensor(0.7)
    torch.testing.assert_close(
        pipe(torch.lerp(x, y, w), u, p),
        torch.lerp(pipe(x, u, p), pipe(y, u, p), w),
        atol=2e-5,
        rtol=1e-5,
    )


def test_color_values_by_hand() -> None:
    def one(name: str, x: torch.Tensor, **cols: float) -> torch.Tensor:
        pipe = AdaPipeline([name])
        u = _set(pipe, _uniforms(pipe, x.shape[0]), **{f"{name}__gate": 0.0}, **cols)
        return pipe(x, u)

    gray = _images((2, 1, 4, 4))
    rgb = _images((2, 3, 4, 4))
    # +1 sigma: brightness + 0.2, contrast x 2**0.5, saturation x 2 (std 1 in log2)
    torch.testing.assert_close(one("brightness", rgb, brightness__offset=PHI_1), rgb + 0.2)
    torch.testing.assert_close(
        one("contrast", rgb, contrast__log2_scale=PHI_1), rgb * 2**paper.ADA_CONTRAST_STD
    )
    mean = rgb.mean(dim=1, keepdim=True)
    torch.testing.assert_close(
        one("saturation", rgb, saturation__log2_scale=PHI_1), mean + 2 * (rgb - mean)
    )
    # lumaflip (reflection along grey): grey negates, the chroma part is kept
    torch.testing.assert_close(one("lumaflip", gray, lumaflip__flip=0.1), -gray)
    torch.testing.assert_close(one("lumaflip", rgb, lumaflip__flip=0.1), rgb - 2 * mean)
    assert torch.equal(one("lumaflip", rgb, lumaflip__flip=0.6), rgb)
    # hue: a third of a turn about grey permutes the channels (u = 5/6 -> angle 2 pi / 3)
    turned = one("hue", rgb, hue__angle=5 / 6)
    torch.testing.assert_close(turned, rgb[:, [2, 0, 1]], atol=1e-6, rtol=0)
    # hue and saturation leave grey unchanged
    assert torch.equal(one("hue", gray, hue__angle=0.3), gray)
    assert torch.equal(one("saturation", gray, saturation__log2_scale=0.9), gray)


def test_grey_images_are_grey_rgb() -> None:
    pipe = AdaPipeline(ADA_GROUPS["color"])
    gray = _images((4, 1, 5, 5))
    u = _uniforms(pipe, 4)
    as_rgb = pipe(gray.expand(4, 3, 5, 5), u, 1.0)
    torch.testing.assert_close(as_rgb, pipe(gray, u, 1.0).expand(4, 3, 5, 5), atol=1e-5, rtol=0)


# ---- probability ---------------------------------------------------------------------------------


def test_mirror_probability() -> None:
    """Applied with probability p, then mirror or not with equal chance (ADA): p / 2 mirrored."""
    n, p = 20_000, 0.3
    pipe = AdaPipeline(["xflip"])
    x = torch.arange(4.0).expand(n, 1, 4, 4)
    out = pipe(x, _uniforms(pipe, n, seed=5), torch.tensor(p))
    mirrored = (out[:, 0, 0, 0] == 3).double().mean().item()
    assert torch.equal(out[:, 0, 0, 0] == 3, out[:, 0, 0, 3] == 0)  # whole rows mirrored
    assert abs(mirrored - p / 2) < 5 * math.sqrt(p / 2 * (1 - p / 2) / n)


def test_rotate_happens_with_probability_p() -> None:
    """ADA's two half rotations, each with 1 - sqrt(1 - p): some rotation with probability p."""
    n, p = 20_000, 0.3
    pipe = AdaPipeline(["rotate"])
    x = _images((1, 1, 4, 4)).expand(n, 1, 4, 4)
    out = pipe(x, _uniforms(pipe, n, seed=6), p)
    changed = (out != x).flatten(1).any(dim=1).double().mean().item()
    assert abs(changed - p) < 5 * math.sqrt(p * (1 - p) / n)


# ---- DiffAugment ---------------------------------------------------------------------------------


def test_diffaugment_translation_zero_fills() -> None:
    pipe = DiffAugmentPipeline(["translation"])
    x = _images((1, 3, 8, 16))
    # shift s = round(side / 8): 2 of 16 across, 1 of 8 down; u -> floor(u * (2s + 1)) - s
    u = torch.tensor([[0.9, 0.1]])  # x: floor(4.5) - 2 = +2; y: floor(0.3) - 1 = -1
    expected = torch.zeros_like(x)
    expected[:, :, :7, 2:] = x[:, :, 1:, :14]
    assert torch.equal(pipe(x, u), expected)


def test_diffaugment_cutout_zeroes_half_a_side() -> None:
    pipe = DiffAugmentPipeline(["cutout"])
    x = _images((1, 1, 8, 8)) + 3  # no zero pixel of its own
    # size 4 (even): centre uniform in 0..8, lo = centre - 2; u = 0.5 -> centre 4, rows/cols 2..5
    out = pipe(x, torch.tensor([[0.5, 0.5]]))
    assert torch.equal(out[0, 0, 2:6, 2:6], torch.zeros(4, 4))
    assert int((out == 0).sum()) == 16
    corner = pipe(x, torch.tensor([[0.0, 0.99]]))  # lo x = -2, lo y = 8 - 2: a clipped square
    assert torch.equal(corner[0, 0, 6:, :2], torch.zeros(2, 2))
    assert int((corner == 0).sum()) == 4


def test_diffaugment_color_by_hand() -> None:
    pipe = DiffAugmentPipeline(["color"])
    x = _images((2, 3, 4, 4))
    u = torch.tensor([[0.75, 0.5, 0.5], [0.5, 0.25, 0.0]])
    out = pipe(x, u)
    torch.testing.assert_close(out[0], x[0] + 0.25)  # brightness only (others factor 1)
    # saturation x 0.5 about the pixel mean, then contrast x 0.5 about the image mean
    mean = x[1].mean(dim=0, keepdim=True)
    sat = mean + 0.5 * (x[1] - mean)
    torch.testing.assert_close(out[1], sat.mean() + 0.5 * (sat - sat.mean()))


def test_diffaugment_ignores_p() -> None:
    pipe = DiffAugmentPipeline()
    x = _images((2, 3, 8, 8))
    u = _uniforms(pipe, 2)
    assert torch.equal(pipe(x, u, 0.0), pipe(x, u, 1.0))


# ---- differentiability ---------------------------------------------------------------------------


def _check_grad(pipe: Pipeline, shape: tuple[int, ...], second: bool) -> None:
    x = _images(shape, dtype=torch.float64).requires_grad_(True)
    u = _uniforms(pipe, shape[0], seed=7)

    def f(images: torch.Tensor) -> torch.Tensor:
        return pipe(images, u, 1.0)

    assert torch.autograd.gradcheck(f, (x,), fast_mode=True)
    if second:
        assert torch.autograd.gradgradcheck(f, (x,), fast_mode=True)


@pytest.mark.parametrize("name", ADA_TRANSFORMS)
def test_ada_transform_gradients(name: str) -> None:
    second = name in GEOMETRIC or name == "hue"
    for shape in ((2, 1, 6, 6), (2, 3, 5, 7)):
        _check_grad(AdaPipeline([name]), shape, second)


@pytest.mark.parametrize("policy", DIFFAUGMENT_POLICIES)
def test_diffaugment_gradients(policy: str) -> None:
    for shape in ((2, 1, 6, 6), (2, 3, 5, 7)):
        _check_grad(DiffAugmentPipeline([policy]), shape, second=True)


def test_penalty_gradient_reaches_a_critic_weight() -> None:
    """create_graph through the augmentation: d/dw ||d D(T(x))/dx||^2 is nonzero and finite."""
    pipe = AdaPipeline()
    weight = torch.randn(3, 8, 8, dtype=torch.float64, requires_grad=True)
    x = _images((2, 3, 8, 8), dtype=torch.float64).requires_grad_(True)
    out = pipe(x, _uniforms(pipe, 2), 1.0)
    score = (torch.tanh(out) * weight).sum()
    (grad,) = torch.autograd.grad(score, x, create_graph=True)
    (dw,) = torch.autograd.grad(grad.square().sum(), weight)
    assert torch.isfinite(dw).all() and dw.abs().sum() > 0


# ---- CUDA ----------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("pipe", [AdaPipeline(), DiffAugmentPipeline()], ids=["ada", "diffaug"])
def test_cpu_and_cuda_agree(pipe: Pipeline) -> None:
    x = _images((8, 3, 32, 24))
    u = _uniforms(pipe, 8)
    p = torch.tensor(0.6)
    on_cuda = pipe(x.cuda(), u.cuda(), p.cuda())
    torch.testing.assert_close(on_cuda.cpu(), pipe(x, u, p), atol=1e-4, rtol=1e-4)
