"""Differentiable augmentation of the images D sees: ADA's pipeline and DiffAugment's policies.

Owns the pure tensor transforms only; the trainer decides where they run (reals, fakes and the
gradient-penalty inputs all go through the same pipeline) and owns the probability ``p``.

- `AdaPipeline`: the 'bgc' pipeline of Karras et al. 2020 ("Training Generative Adversarial
  Networks with Limited Data"): pixel blitting (xflip, rotate90, xint), general geometric
  transforms (scale, rotate, aniso, xfrac) and color transforms (brightness, contrast, lumaflip,
  hue, saturation). Each listed transform is applied to each sample with probability ``p``.
- `DiffAugmentPipeline`: the policies of Zhao et al. 2020 ("Differentiable Augmentation for
  Data-Efficient GAN Training"): color, translation, cutout, always applied.

Every random number comes from ``u`` ([N, draws], uniform in [0, 1), drawn by the caller from the
run's checkpointed generator), so a call is deterministic, resumable and the same on every device.
``columns`` names what each column of ``u`` means (``"<transform>.<role>"``).

For fixed ``u`` and ``p`` every pipeline is an affine map of the pixel values, so an augmented mix
of two batches is the mix of the augmented batches (the gradient penalty relies on it), and it is
differentiable w.r.t. the images to any order: the geometric warp is index arithmetic and
``gather`` (bilinear weights of four reflected neighbours), not ``grid_sample``.

Simplified relative to the official ADA code (stylegan2-ada-pytorch training/augment.py):
- the geometric warp is one bilinear resampling with reflection repeated indefinitely; ADA first
  pads by a data-dependent margin (a host sync), upsamples 2x with a wavelet filter, resamples
  and downsamples again (anti-aliasing). Leaving the filter out makes the warp cheaper and a
  little more aliased; integer transforms (xflip, rotate90, xint) are exact either way.
- the 'filter', 'noise' and 'cutout' groups of ADA are not offered.
As in ADA, xflip and lumaflip, when applied, choose mirror or identity with equal chance (so a
sample is mirrored with probability p / 2), and rotate90 chooses k in 0..3 uniformly: the identity
stays the most likely outcome, which keeps the augmentations from leaking for p below ~0.8.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

from progan_dsl import paper

ADA_TRANSFORMS: tuple[str, ...] = (
    "xflip",
    "rotate90",
    "xint",
    "scale",
    "rotate",
    "aniso",
    "xfrac",
    "brightness",
    "contrast",
    "lumaflip",
    "hue",
    "saturation",
)
ADA_GROUPS: dict[str, tuple[str, ...]] = {
    "blit": ("xflip", "rotate90", "xint"),
    "geom": ("scale", "rotate", "aniso", "xfrac"),
    "color": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
}
DIFFAUGMENT_POLICIES: tuple[str, ...] = ("color", "translation", "cutout")

# The columns of u each transform consumes, in order (a transform's columns sit together, the
# transforms in the canonical order above, whatever order the caller listed them in).
_ADA_COLUMNS: dict[str, tuple[str, ...]] = {
    "xflip": ("gate", "mirror"),  # applied iff gate < p; then mirrored iff mirror < 1/2
    "rotate90": ("gate", "quarter_turns"),  # k = floor(4 u) quarter turns
    "xint": ("gate", "x", "y"),  # shift round((2u - 1) * xint_max * side) pixels
    "scale": ("gate", "log2_scale"),  # normal via the inverse CDF, times scale_std
    "rotate": ("gate_pre", "angle_pre", "gate_post", "angle_post"),  # ADA's two halves
    "aniso": ("gate", "log2_scale"),
    "xfrac": ("gate", "x", "y"),  # normal shifts, times xfrac_std * side
    "brightness": ("gate", "offset"),  # normal, times brightness_std
    "contrast": ("gate", "log2_scale"),
    "lumaflip": ("gate", "flip"),  # applied iff gate < p; then reflected iff flip < 1/2
    "hue": ("gate", "angle"),  # (2u - 1) * pi * hue_max
    "saturation": ("gate", "log2_scale"),
}
_DIFFAUGMENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "color": ("brightness", "saturation", "contrast"),  # uniform factors/offsets
    "translation": ("x", "y"),  # integer shift in [-s, s], s = round(ratio * side)
    "cutout": ("x", "y"),  # centre of the zeroed square
}

# torch.rand's float32 draws are multiples of 2**-24 in [0, 1); the inverse normal CDF is taken of
# u clamped to [2**-24, 1 - 2**-24], so a draw of exactly 0 gives -5.3 sigma instead of -inf.
_U_EPS = 2.0**-24
# ADA's luma axis: grey, (1, 1, 1) / sqrt(3).
_LUMA = 1.0 / math.sqrt(3.0)


def _normal(u: Tensor) -> Tensor:
    """Standard normal deviates from uniforms (inverse CDF), float32."""
    return torch.special.ndtri(u.clamp(_U_EPS, 1.0 - _U_EPS))


def _check_names(kind: str, names: Sequence[str], allowed: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(names, str):
        raise ValueError(f"{kind}: expected a sequence of names, got the string {names!r}")
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(
            f"{kind}: unknown name(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(allowed)}"
        )
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ValueError(f"{kind}: name(s) listed twice: {', '.join(repeated)}")
    return tuple(n for n in allowed if n in names)


class Pipeline(ABC):
    """A batched augmentation whose randomness is ``u`` ([N, draws], uniform in [0, 1))."""

    columns: tuple[str, ...]  # what each column of u means, "<transform>.<role>"

    @property
    def draws(self) -> int:
        """Uniform random numbers each sample consumes (the width of ``u``)."""
        return len(self.columns)

    def __call__(self, images: Tensor, u: Tensor, p: Tensor | float = 1.0) -> Tensor:
        """Augment ``images`` [N, C, H, W]; computes in float32 (float64 stays float64)."""
        if images.dim() != 4 or images.shape[2] < 4 or images.shape[3] < 4:
            raise ValueError(
                f"images must be [N, C, H, W] with H, W >= 4, got {list(images.shape)}"
            )
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point, got {images.dtype}")
        if u.shape != (images.shape[0], self.draws):
            raise ValueError(
                f"u must be [N, draws] = [{images.shape[0]}, {self.draws}], got {list(u.shape)}"
            )
        if u.device != images.device:
            raise ValueError(f"u is on {u.device}, the images on {images.device}")
        compute = torch.float64 if images.dtype == torch.float64 else torch.float32
        out = self._augment(images.to(compute), u.to(torch.float32), p)
        return out.to(images.dtype)

    @abstractmethod
    def _augment(self, x: Tensor, u: Tensor, p: Tensor | float) -> Tensor:
        """The transform on float32/float64 images; u is float32."""

    def __repr__(self) -> str:
        names = sorted({c.split(".")[0] for c in self.columns}, key=self._order)
        return f"{type(self).__name__}({names!r})"

    @staticmethod
    @abstractmethod
    def _order(name: str) -> int:
        """Position of a transform in the pipeline's canonical order."""


# ---- ADA -----------------------------------------------------------------------------------------


def _mat3(a: Tensor, b: Tensor, c: Tensor, d: Tensor, e: Tensor, f: Tensor) -> Tensor:
    """[N, 3, 3] matrices [[a, b, c], [d, e, f], [0, 0, 1]] from [N] entries."""
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([a, b, c, d, e, f, zero, zero, one], dim=1).reshape(-1, 3, 3)


def _scale2(sx: Tensor, sy: Tensor) -> Tensor:
    zero = torch.zeros_like(sx)
    return _mat3(sx, zero, zero, zero, sy, zero)


def _shift2(tx: Tensor, ty: Tensor) -> Tensor:
    one, zero = torch.ones_like(tx), torch.zeros_like(tx)
    return _mat3(one, zero, tx, zero, one, ty)


def _rotation2(cos: Tensor, sin: Tensor) -> Tensor:
    return _mat3(cos, -sin, torch.zeros_like(cos), sin, cos, torch.zeros_like(cos))


def _reflect(coord: Tensor, size: int) -> Tensor:
    """Mirror coordinates into [0, size - 1] about the edge pixels' centres, any distance away.

    Bilinear sampling of the infinitely reflected image equals bilinear sampling of the image at
    the reflected coordinate (its interpolant is mirror-symmetric about every pixel centre), so
    the coordinate is reflected once instead of each of the four neighbour indices.
    """
    period = 2.0 * (size - 1)
    m = torch.remainder(coord, period)
    return torch.where(m > size - 1, period - m, m)


def _warp(x: Tensor, inverse: Tensor) -> Tensor:
    """Resample x [N, C, H, W] bilinearly: output pixel q takes the source at ``inverse @ q``.

    Coordinates are in pixels from the image centre; sources outside the image are reflected.
    Linear in x, built from gather, so differentiable w.r.t. x to any order.
    """
    n, c, h, w = x.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    xs = torch.arange(w, device=x.device, dtype=torch.float32) - cx  # [W]
    ys = torch.arange(h, device=x.device, dtype=torch.float32) - cy  # [H]
    g = inverse[:, :2, :, None, None]  # [N, 2, 3, 1, 1]
    src_x = _reflect(g[:, 0, 0] * xs + g[:, 0, 1] * ys[:, None] + g[:, 0, 2] + cx, w)  # [N, H, W]
    src_y = _reflect(g[:, 1, 0] * xs + g[:, 1, 1] * ys[:, None] + g[:, 1, 2] + cy, h)  # [N, H, W]
    x0, y0 = src_x.floor(), src_y.floor()
    fx = (src_x - x0).to(x.dtype).reshape(n, 1, h * w)
    fy = (src_y - y0).to(x.dtype).reshape(n, 1, h * w)
    col0 = x0.long()
    row0 = y0.long() * w
    col1 = (col0 + 1).clamp(max=w - 1)  # only reached with weight 0 when clamped
    row1 = (row0 + w).clamp(max=(h - 1) * w)
    flat = x.reshape(n, c, h * w)

    def tap(row: Tensor, col: Tensor) -> Tensor:  # [N, C, H*W]
        index = (row + col).reshape(n, 1, h * w).expand(n, c, h * w)
        return flat.gather(2, index)

    # lerp: an exact copy where a weight is 0 (integer transforms), one pass per blend
    top = torch.lerp(tap(row0, col0), tap(row0, col1), fx)
    bottom = torch.lerp(tap(row1, col0), tap(row1, col1), fx)
    return torch.lerp(top, bottom, fy).reshape(n, c, h, w)


def _luma_outer(device: torch.device) -> Tensor:
    """v v^T for ADA's luma axis v = (1, 1, 1, 0) / sqrt(3), [4, 4]."""
    v = torch.tensor([_LUMA, _LUMA, _LUMA, 0.0], device=device)
    return torch.outer(v, v)


class AdaPipeline(Pipeline):
    """ADA's augmentations, each listed transform applied per sample with probability p.

    Geometric transforms compose into one 3x3 matrix per sample (one resampling), then the
    color transforms into one 4x4 matrix on (r, g, b, 1). ``p`` may be a float or a 0-dim tensor
    on any device (no host sync). Samples no transform was applied to come back bitwise unchanged.
    """

    def __init__(self, transforms: Sequence[str] = ADA_TRANSFORMS) -> None:
        self.transforms = _check_names("AdaPipeline", transforms, ADA_TRANSFORMS)
        self.columns = tuple(f"{t}.{role}" for t in self.transforms for role in _ADA_COLUMNS[t])
        self._col = {name: i for i, name in enumerate(self.columns)}

    @staticmethod
    def _order(name: str) -> int:
        return ADA_TRANSFORMS.index(name)

    def __call__(self, images: Tensor, u: Tensor, p: Tensor | float = 1.0) -> Tensor:
        if not isinstance(p, Tensor) and p == 0:
            super().__call__(images, u, p)  # the same argument checks
            return images
        return super().__call__(images, u, p)

    def _u(self, name: str, u: Tensor) -> Tensor:
        return u[:, self._col[name]]

    def _augment(self, x: Tensor, u: Tensor, p: Tensor | float) -> Tensor:
        if isinstance(p, Tensor):
            p = p.to(dtype=torch.float32)
        geom = [t for t in self.transforms if t in ADA_GROUPS["blit"] + ADA_GROUPS["geom"]]
        if geom:
            inverse, applied = self._geometry(x, u, p)
            x = torch.where(applied[:, None, None, None], _warp(x, inverse), x)
        if any(t in ADA_GROUPS["color"] for t in self.transforms):
            x = self._color(x, u, p)
        return x

    def _gate(self, name: str, u: Tensor, p: Tensor | float) -> Tensor:
        return self._u(f"{name}.gate", u) < p

    def _geometry(self, x: Tensor, u: Tensor, p: Tensor | float) -> tuple[Tensor, Tensor]:
        """Per-sample matrices mapping output pixels to source pixels, and which were applied."""
        n, _, h, w = x.shape
        dev = x.device
        one = torch.ones(n, device=dev)
        zero = torch.zeros(n, device=dev)
        inverse = torch.eye(3, device=dev).expand(n, 3, 3)
        applied = torch.zeros(n, dtype=torch.bool, device=dev)
        t = self.transforms

        if "xflip" in t:
            gate = self._gate("xflip", u, p)
            mirror = gate & (self._u("xflip.mirror", u) < 0.5)
            inverse = inverse @ _scale2(torch.where(mirror, -one, one), one)
            applied = applied | gate
        if "rotate90" in t:
            gate = self._gate("rotate90", u, p)
            k = (self._u("rotate90.quarter_turns", u) * 4).long().clamp(0, 3)
            k = torch.where(gate, k, torch.zeros_like(k))
            # exact cos / sin of k quarter turns (no rounding of pi / 2)
            cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=dev)[k]
            sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=dev)[k]
            inverse = inverse @ _rotation2(cos, sin)
            applied = applied | gate
        if "xint" in t:
            gate = self._gate("xint", u, p)
            tx = torch.round((self._u("xint.x", u) * 2 - 1) * paper.ADA_XINT_MAX * w)
            ty = torch.round((self._u("xint.y", u) * 2 - 1) * paper.ADA_XINT_MAX * h)
            inverse = inverse @ _shift2(-torch.where(gate, tx, zero), -torch.where(gate, ty, zero))
            applied = applied | gate
        if "scale" in t:
            gate = self._gate("scale", u, p)
            s = torch.exp2(_normal(self._u("scale.log2_scale", u)) * paper.ADA_SCALE_STD)
            s = torch.where(gate, s, one)
            inverse = inverse @ _scale2(1 / s, 1 / s)
            applied = applied | gate
        # ADA splits the rotation in two, each half applied with 1 - sqrt(1 - p), so that some
        # rotation happens with probability p; anisotropic scaling sits between the halves.
        p_half = 1 - (1 - p) ** 0.5
        if "rotate" in t:
            inverse, applied = self._rotate(inverse, applied, "pre", u, p_half)
        if "aniso" in t:
            gate = self._gate("aniso", u, p)
            s = torch.exp2(_normal(self._u("aniso.log2_scale", u)) * paper.ADA_ANISO_STD)
            s = torch.where(gate, s, one)
            inverse = inverse @ _scale2(1 / s, s)
            applied = applied | gate
        if "rotate" in t:
            inverse, applied = self._rotate(inverse, applied, "post", u, p_half)
        if "xfrac" in t:
            gate = self._gate("xfrac", u, p)
            tx = _normal(self._u("xfrac.x", u)) * paper.ADA_XFRAC_STD * w
            ty = _normal(self._u("xfrac.y", u)) * paper.ADA_XFRAC_STD * h
            inverse = inverse @ _shift2(-torch.where(gate, tx, zero), -torch.where(gate, ty, zero))
            applied = applied | gate
        return inverse, applied

    def _rotate(
        self, inverse: Tensor, applied: Tensor, half: str, u: Tensor, p_half: Tensor | float
    ) -> tuple[Tensor, Tensor]:
        gate = self._u(f"rotate.gate_{half}", u) < p_half
        angle = (self._u(f"rotate.angle_{half}", u) * 2 - 1) * math.pi * paper.ADA_ROTATE_MAX
        angle = torch.where(gate, angle, torch.zeros_like(angle))
        return inverse @ _rotation2(torch.cos(angle), torch.sin(angle)), applied | gate

    def _color(self, x: Tensor, u: Tensor, p: Tensor | float) -> Tensor:
        """One 4x4 matrix per sample on (r, g, b, 1); grey images as (g, g, g)."""
        n, c, h, w = x.shape
        if c not in (1, 3):
            raise ValueError(f"AdaPipeline color transforms need 1 or 3 channels, got {c}")
        dev = x.device
        one = torch.ones(n, device=dev)
        eye = torch.eye(4, device=dev)
        vv = _luma_outer(dev)
        mat = eye.expand(n, 4, 4)
        applied = torch.zeros(n, dtype=torch.bool, device=dev)
        t = self.transforms

        if "brightness" in t:
            gate = self._gate("brightness", u, p)
            b = _normal(self._u("brightness.offset", u)) * paper.ADA_BRIGHTNESS_STD
            b = torch.where(gate, b, torch.zeros_like(b))
            shift = eye.repeat(n, 1, 1)
            shift[:, :3, 3] = b[:, None]
            mat = shift @ mat
            applied = applied | gate
        if "contrast" in t:
            gate = self._gate("contrast", u, p)
            s = torch.exp2(_normal(self._u("contrast.log2_scale", u)) * paper.ADA_CONTRAST_STD)
            s = torch.where(gate, s, one)
            mat = torch.diag_embed(torch.stack([s, s, s, one], dim=1)) @ mat
            applied = applied | gate
        if "lumaflip" in t:
            gate = self._gate("lumaflip", u, p)
            flip = (gate & (self._u("lumaflip.flip", u) < 0.5)).to(torch.float32)
            mat = (eye - 2 * vv * flip[:, None, None]) @ mat  # Householder reflection
            applied = applied | gate
        if "hue" in t and c == 3:  # a rotation about the grey axis leaves grey unchanged
            gate = self._gate("hue", u, p)
            angle = (self._u("hue.angle", u) * 2 - 1) * math.pi * paper.ADA_HUE_MAX
            angle = torch.where(gate, angle, torch.zeros_like(angle))
            cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
            a = _LUMA
            cross = torch.tensor(  # [v]_x, the cross product with v, in (r, g, b)
                [[0, -a, a, 0], [a, 0, -a, 0], [-a, a, 0, 0], [0, 0, 0, 0]], device=dev
            )
            # Rodrigues: cos I + sin [v]_x + (1 - cos) v v^T on rgb; the 4th coordinate kept
            rgb = torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev))
            rot = cos * rgb + sin * cross + (1 - cos) * vv + (eye - rgb)
            mat = rot @ mat
            applied = applied | gate
        if "saturation" in t and c == 3:  # scaling orthogonal to grey leaves grey unchanged
            gate = self._gate("saturation", u, p)
            s = torch.exp2(_normal(self._u("saturation.log2_scale", u)) * paper.ADA_SATURATION_STD)
            s = torch.where(gate, s, one)[:, None, None]
            mat = (vv + (eye - vv) * s) @ mat
            applied = applied | gate

        mat = mat.to(x.dtype)
        flat = x.reshape(n, c, h * w)
        if c == 3:
            out = mat[:, :3, :3] @ flat + mat[:, :3, 3:]
        else:  # (g, g, g) through the matrix, then the mean of the three channels
            rows = mat[:, :3, :].mean(dim=1)  # [N, 4]
            out = flat * rows[:, :3].sum(dim=1)[:, None, None] + rows[:, 3, None, None]
        return torch.where(applied[:, None, None, None], out.reshape(n, c, h, w), x)


# ---- DiffAugment ---------------------------------------------------------------------------------


class DiffAugmentPipeline(Pipeline):
    """DiffAugment's policies, applied to every sample in the order color, translation, cutout.

    color: brightness + U(-0.5, 0.5); saturation x U(0, 2) about each pixel's channel mean;
    contrast x U(0.5, 1.5) about the image mean. translation: an integer shift of up to 1/8 of
    each side, zero-filled. cutout: a zeroed square of half the side at a uniform position.
    ``p`` is ignored (DiffAugment always augments).
    """

    def __init__(self, policy: Sequence[str] = DIFFAUGMENT_POLICIES) -> None:
        self.policy = _check_names("DiffAugmentPipeline", policy, DIFFAUGMENT_POLICIES)
        self.columns = tuple(f"{t}.{r}" for t in self.policy for r in _DIFFAUGMENT_COLUMNS[t])
        self._col = {name: i for i, name in enumerate(self.columns)}

    @staticmethod
    def _order(name: str) -> int:
        return DIFFAUGMENT_POLICIES.index(name)

    def _u(self, name: str, u: Tensor, dtype: torch.dtype) -> Tensor:
        return u[:, self._col[name], None, None, None].to(dtype)  # [N, 1, 1, 1]

    def _augment(self, x: Tensor, u: Tensor, p: Tensor | float) -> Tensor:
        n, c, h, w = x.shape
        if "color" in self.policy:
            offset = (
                self._u("color.brightness", u, x.dtype) * 2 - 1
            ) * paper.DIFFAUGMENT_BRIGHTNESS
            x = x + offset
            mean = x.mean(dim=1, keepdim=True)
            factor = self._u("color.saturation", u, x.dtype) * paper.DIFFAUGMENT_SATURATION_MAX
            x = (x - mean) * factor + mean
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            lo, hi = paper.DIFFAUGMENT_CONTRAST_MIN, paper.DIFFAUGMENT_CONTRAST_MAX
            x = (x - mean) * (lo + (hi - lo) * self._u("color.contrast", u, x.dtype)) + mean
        if "translation" in self.policy:
            x = self._translate(x, u)
        if "cutout" in self.policy:
            x = self._cutout(x, u)
        return x

    def _offsets(self, name: str, u: Tensor, count: int) -> Tensor:
        """Integers uniform in [0, count) from a column of u, [N]."""
        return (u[:, self._col[name]] * count).long().clamp(0, count - 1)

    def _translate(self, x: Tensor, u: Tensor) -> Tensor:
        n, c, h, w = x.shape
        sx = int(w * paper.DIFFAUGMENT_TRANSLATION_RATIO + 0.5)
        sy = int(h * paper.DIFFAUGMENT_TRANSLATION_RATIO + 0.5)
        tx = self._offsets("translation.x", u, 2 * sx + 1) - sx  # [N]
        ty = self._offsets("translation.y", u, 2 * sy + 1) - sy
        src_x = torch.arange(w, device=x.device) - tx[:, None]  # [N, W]
        src_y = torch.arange(h, device=x.device) - ty[:, None]  # [N, H]
        inside = ((src_y >= 0) & (src_y < h))[:, :, None] & ((src_x >= 0) & (src_x < w))[:, None]
        index = src_y.clamp(0, h - 1)[:, :, None] * w + src_x.clamp(0, w - 1)[:, None, :]
        moved = x.reshape(n, c, h * w).gather(2, index.reshape(n, 1, h * w).expand(n, c, h * w))
        return torch.where(inside[:, None], moved.reshape(n, c, h, w), torch.zeros_like(x))

    def _cutout(self, x: Tensor, u: Tensor) -> Tensor:
        n, c, h, w = x.shape
        size_x = int(w * paper.DIFFAUGMENT_CUTOUT_RATIO + 0.5)
        size_y = int(h * paper.DIFFAUGMENT_CUTOUT_RATIO + 0.5)
        # DiffAugment: the centre is uniform over side + (1 if the square's side is even)
        lo_x = self._offsets("cutout.x", u, w + 1 - size_x % 2) - size_x // 2  # [N]
        lo_y = self._offsets("cutout.y", u, h + 1 - size_y % 2) - size_y // 2
        cols = torch.arange(w, device=x.device) - lo_x[:, None]  # [N, W]
        rows = torch.arange(h, device=x.device) - lo_y[:, None]  # [N, H]
        cut = ((rows >= 0) & (rows < size_y))[:, :, None] & ((cols >= 0) & (cols < size_x))[:, None]
        return torch.where(cut[:, None], torch.zeros_like(x), x)
