"""The layer runtime of generated ProGAN modules (paper Section 4). Imports nothing but torch.

This file is copied verbatim next to emitted source (`progan-compile --emit-source`), so the
emitted folder runs with torch alone. Equalized learning rate: weights are stored N(0, 1) and
scaled at run time by the He constant gain / sqrt(fan_in) (Section 4.1); biases start at zero.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import gradfix

SQRT2 = math.sqrt(2.0)  # He gain for (leaky) ReLU layers (Section 4.1)
LRELU_SLOPE = 0.2  # Appendix A
PIXEL_NORM_EPS = 1e-8  # Section 4.2
# Where convs run through `gradfix` (differentiable backward kernels, for the gradient penalty's
# double backward) unless a module says otherwise (`use_gradfix`): on CUDA. The CPU keeps the
# stock ops: faster there (0.81-1.03x measured), and bit-exact.
GRADFIX_DEFAULT_DEVICES = ("cuda",)


def use_gradfix(module: nn.Module, enabled: bool | None) -> nn.Module:
    """Set every conv of `module` to run through gradfix (True), the stock ops (False) or the
    device default (None). Returns the module."""
    for m in module.modules():
        if isinstance(m, EqConv2d):
            m.gradfix = enabled
    return module


def activate(x: Tensor, act: str, slope: float) -> Tensor:
    if act == "lrelu":
        return F.leaky_relu(x, slope)
    if act == "relu":
        return F.relu(x)
    return x


def pixel_norm(x: Tensor, eps: float = PIXEL_NORM_EPS) -> Tensor:
    """Section 4.2: b = a / sqrt(mean over channels of a^2 + eps), per pixel."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def fused_up_kernel(w: Tensor) -> Tensor:
    """3x3 conv after nearest 2x upsampling == stride-2 transposed conv with this 4x4 kernel.

    Returned in conv_transpose2d layout [in, out, 4, 4]; the flip turns the correlation kernel
    of conv2d into the scatter kernel of the transposed conv."""
    w = F.pad(w, (1, 1, 1, 1))
    w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]
    return w.flip([2, 3]).transpose(0, 1)


def fused_down_kernel(w: Tensor) -> Tensor:
    """3x3 conv followed by 2x2 average pooling == stride-2 conv with this 4x4 kernel."""
    w = F.pad(w, (1, 1, 1, 1))
    return (w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]) * 0.25


class _Weighted(nn.Module):
    """Weight stored N(0, 1); run-time scale gain / sqrt(fan_in) when equalized."""

    def _init_weight(
        self, shape: tuple[int, ...], fan_in: int, gain: float, equalized: bool
    ) -> None:
        he_std = gain / math.sqrt(fan_in)
        if equalized:
            self.weight = nn.Parameter(torch.randn(shape))
            self.scale = he_std
        else:
            self.weight = nn.Parameter(torch.randn(shape) * he_std)
            self.scale = 1.0


class EqConv2d(_Weighted):
    """Conv (same padding) + bias + activation (+ pixel norm). `mode` 'up' / 'down' fuse a 2x
    nearest upsampling before / a 2x2 average pooling after the conv (official fused_scale)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        gain: float = SQRT2,
        act: str = "linear",
        slope: float = LRELU_SLOPE,
        pixel_norm: bool = False,
        eps: float = PIXEL_NORM_EPS,
        equalized: bool = True,
        mode: str = "same",
    ) -> None:
        super().__init__()
        if mode != "same" and kernel != 3:
            raise ValueError("fused up/down convs are defined for 3x3 kernels")
        self._init_weight(
            (out_channels, in_channels, kernel, kernel),
            in_channels * kernel * kernel,
            gain,
            equalized,
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.kernel, self.mode, self.act, self.slope = kernel, mode, act, slope
        self.norm, self.eps = pixel_norm, eps
        self.gradfix: bool | None = None  # None: the device default (see use_gradfix)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight * self.scale
        fix = x.device.type in GRADFIX_DEFAULT_DEVICES if self.gradfix is None else self.gradfix
        ops = gradfix if fix else F
        if self.mode == "up":
            x = ops.conv_transpose2d(x, fused_up_kernel(w), self.bias, 2, 1)
        elif self.mode == "down":
            x = ops.conv2d(x, fused_down_kernel(w), self.bias, 2, 1)
        else:
            x = ops.conv2d(x, w, self.bias, 1, self.kernel // 2)
        x = activate(x, self.act, self.slope)
        return pixel_norm(x, self.eps) if self.norm else x

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel={k}, mode={self.mode}, act={self.act}, pixel_norm={self.norm}"


class EqDense(_Weighted):
    """Flatten + fully connected + bias + activation (D's 'Conv 4x4' and output layer)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        gain: float = SQRT2,
        act: str = "linear",
        slope: float = LRELU_SLOPE,
        equalized: bool = True,
    ) -> None:
        super().__init__()
        self._init_weight((out_features, in_features), in_features, gain, equalized)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.act, self.slope = act, slope

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x.flatten(1), self.weight * self.scale, self.bias)
        return activate(x, self.act, self.slope)


class EqProject(_Weighted):
    """Latent vector -> [C, H, W] maps: dense, reshape, per-channel bias, activation, pixel norm
    (Table 2's first 'Conv 4x4' of G)."""

    def __init__(
        self,
        in_features: int,
        out_shape: list[int],
        *,
        gain: float = SQRT2,
        act: str = "linear",
        slope: float = LRELU_SLOPE,
        pixel_norm: bool = False,
        eps: float = PIXEL_NORM_EPS,
        equalized: bool = True,
    ) -> None:
        super().__init__()
        c, h, w = out_shape
        self._init_weight((c * h * w, in_features), in_features, gain, equalized)
        self.bias = nn.Parameter(torch.zeros(c))
        self.out_shape = (c, h, w)
        self.act, self.slope, self.norm, self.eps = act, slope, pixel_norm, eps

    def forward(self, z: Tensor) -> Tensor:
        x = F.linear(z, self.weight * self.scale).view(-1, *self.out_shape)
        x = activate(x + self.bias.view(1, -1, 1, 1), self.act, self.slope)
        return pixel_norm(x, self.eps) if self.norm else x


class PixelNorm(nn.Module):
    def __init__(self, eps: float = PIXEL_NORM_EPS) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return pixel_norm(x, self.eps)


class Upsample2x(nn.Module):
    """Nearest-neighbour 2x upsampling."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")


class Downsample2x(nn.Module):
    """2x2 average pooling, then the activation it took over from the conv before it (if any)."""

    def __init__(self, act: str = "linear", slope: float = LRELU_SLOPE) -> None:
        super().__init__()
        self.act, self.slope = act, slope

    def forward(self, x: Tensor) -> Tensor:
        return activate(F.avg_pool2d(x, 2), self.act, self.slope)


class MinibatchStddev(nn.Module):
    """Section 3: the stddev of each feature over groups of samples, averaged to one value per
    group, appended as `num_features` extra maps. Sample n belongs to group n % (N / G)."""

    def __init__(self, group_size: int = 4, num_features: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_features = group_size, num_features

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        f = self.num_features
        y = x.reshape(g, -1, f, c // f, h, w)  # [G, M, F, C/F, H, W]
        y = y - y.mean(dim=0)
        y = torch.sqrt(y.square().mean(dim=0) + 1e-8)  # [M, F, C/F, H, W]
        y = y.mean(dim=(2, 3, 4))  # [M, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]
        return torch.cat([x, y.to(x.dtype)], dim=1)


class Concat(nn.Module):
    """Concatenate vectors along the features: G's latent and one-hot labels (official G_paper
    `combo_in = concat([latents_in, labels_in], axis=1)`)."""

    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat([x.to(xs[0].dtype) for x in xs], dim=1)


class EqProjection(EqDense):
    """Projection discriminator head (Miyato & Koyama 2018): a linear score of the features
    plus the inner product of the features with the embedding of the class,
    `w . h + b + <V[y], h>`, for one-hot labels y. The embedding V [classes, features] is stored
    like the weight (N(0, 1), scaled by gain / sqrt(features) at run time when equalized)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        classes: int,
        *,
        gain: float = 1.0,
        act: str = "linear",
        slope: float = LRELU_SLOPE,
        equalized: bool = True,
    ) -> None:
        super().__init__(
            in_features, out_features, gain=gain, act=act, slope=slope, equalized=equalized
        )
        stored = 1.0 if equalized else gain / math.sqrt(in_features)  # as the weight is stored
        self.embed = nn.Parameter(torch.randn(classes, in_features) * stored)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:  # type: ignore[override]
        h = x.flatten(1)  # [N, F]
        score = F.linear(h, self.weight * self.scale, self.bias)  # [N, out]
        v = labels.to(h.dtype) @ (self.embed * self.scale)  # [N, F]: the class's embedding
        score = score + (v * h).sum(dim=1, keepdim=True)
        return activate(score, self.act, self.slope)


class Identity(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x
