"""An independent float64 numpy computation of the official G_paper / D_paper (networks.py).

Written from the official semantics, layer by layer, with nothing from progan_dsl: TensorFlow
'SAME' padding rules, HWIO kernels, conv2d_transpose as the adjoint of the strided conv,
`upscale2d_conv2d` / `conv2d_downscale2d` built as the official code builds them (pad the kernel,
sum its four shifts, 0.25 for the down-conv), equalized learning rate as gain / sqrt(fan_in),
and the 'linear' network structure with `lod_in` (lerp_clip between resolutions).
"""

from __future__ import annotations

from typing import Any

import numpy as np

SQRT2 = np.sqrt(2.0)
Array = np.ndarray


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF 'SAME': output ceil(size / stride), total padding split with the extra at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def conv2d(x: Array, w: Array, stride: int = 1) -> Array:
    """tf.nn.conv2d NCHW, SAME: a correlation with HWIO kernel w."""
    n, c, h, width = x.shape
    k = w.shape[0]
    oh, top, bottom = same_padding(h, k, stride)
    ow, left, right = same_padding(width, k, stride)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    out = np.zeros((n, w.shape[3], oh, ow))
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, :, dy : dy + stride * oh : stride, dx : dx + stride * ow : stride]
            out += np.einsum("nchw,co->nohw", patch, w[dy, dx])
    return out


def conv2d_transpose(x: Array, w: Array, out_hw: tuple[int, int], stride: int) -> Array:
    """tf.nn.conv2d_transpose NCHW, SAME, filter [k, k, out, in]: the adjoint of conv2d with
    that filter read as HWIO [k, k, out, in] from the output size down to x's size."""
    n, c, h, width = x.shape
    k = w.shape[0]
    H, W = out_hw
    _, top, bottom = same_padding(H, k, stride)
    _, left, right = same_padding(W, k, stride)
    yp = np.zeros((n, w.shape[2], H + top + bottom, W + left + right))
    for dy in range(k):
        for dx in range(k):
            yp[:, :, dy : dy + stride * h : stride, dx : dx + stride * width : stride] += np.einsum(
                "nchw,oc->nohw", x, w[dy, dx]
            )
    return yp[:, :, top : top + H, left : left + W]


def upscale2d(x: Array, factor: int = 2) -> Array:
    return x.repeat(factor, axis=2).repeat(factor, axis=3)


def downscale2d(x: Array, factor: int = 2) -> Array:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))


def pixel_norm(x: Array, eps: float) -> Array:
    return x / np.sqrt(np.mean(x**2, axis=1, keepdims=True) + eps)


def leaky_relu(x: Array, alpha: float = 0.2) -> Array:
    return np.maximum(x * alpha, x)


def relu(x: Array) -> Array:
    return np.maximum(x, 0.0)


def minibatch_stddev(x: Array, group_size: int) -> Array:
    g = min(group_size, x.shape[0])
    n, c, h, w = x.shape
    y = x.reshape(g, -1, c, h, w)
    y = y - y.mean(axis=0, keepdims=True)
    y = np.sqrt(np.mean(y**2, axis=0) + 1e-8)
    y = y.mean(axis=(1, 2, 3), keepdims=True)  # [M, 1, 1, 1]
    y = np.tile(y, (g, 1, h, w))  # [N, 1, H, W]: sample n -> group n % M
    return np.concatenate([x, y], axis=1)


class Official:
    """G_paper / D_paper with given static kwargs and variables (name -> array)."""

    def __init__(self, kwargs: dict[str, Any], variables: dict[str, Array]) -> None:
        self.kw = kwargs
        self.v = {k: np.asarray(a, dtype=np.float64) for k, a in variables.items()}
        self.R = int(np.log2(kwargs["resolution"]))

    def nf(self, stage: int) -> int:
        k = self.kw
        return min(int(k["fmap_base"] / (2.0 ** (stage * k["fmap_decay"]))), k["fmap_max"])

    def weight(self, scope: str, gain: float = SQRT2, fan_in: int | None = None) -> Array:
        w = self.v[f"{scope}/weight"]
        if fan_in is None:
            fan_in = int(np.prod(w.shape[:-1]))
        return w * (gain / np.sqrt(fan_in)) if self.kw["use_wscale"] else w

    def bias(self, x: Array, scope: str) -> Array:
        b = self.v[f"{scope}/bias"]
        return x + (b if x.ndim == 2 else b.reshape(1, -1, 1, 1))


class OfficialG(Official):
    def act(self, x: Array) -> Array:
        return leaky_relu(x) if self.kw["use_leakyrelu"] else relu(x)

    def pn(self, x: Array) -> Array:
        return pixel_norm(x, self.kw["pixelnorm_epsilon"]) if self.kw["use_pixelnorm"] else x

    def block(self, x: Array, res: int) -> Array:
        s = f"{2**res}x{2**res}"
        if res == 2:
            if self.kw["normalize_latents"]:
                x = pixel_norm(x, self.kw["pixelnorm_epsilon"])
            x = x @ self.weight(f"{s}/Dense", gain=SQRT2 / 4)
            x = x.reshape(-1, self.nf(1), 4, 4)
            x = self.pn(self.act(self.bias(x, f"{s}/Dense")))
            return self.pn(self.act(self.bias(conv2d(x, self.weight(f"{s}/Conv")), f"{s}/Conv")))
        if self.kw["fused_scale"]:
            w = self.weight(f"{s}/Conv0_up", fan_in=9 * x.shape[1])
            w = np.pad(w, ((1, 1), (1, 1), (0, 0), (0, 0)))
            w = w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]
            x = conv2d_transpose(x, w, (x.shape[2] * 2, x.shape[3] * 2), stride=2)
            x = self.pn(self.act(self.bias(x, f"{s}/Conv0_up")))
        else:
            x = upscale2d(x)
            x = self.pn(self.act(self.bias(conv2d(x, self.weight(f"{s}/Conv0")), f"{s}/Conv0")))
        return self.pn(self.act(self.bias(conv2d(x, self.weight(f"{s}/Conv1")), f"{s}/Conv1")))

    def torgb(self, x: Array, res: int) -> Array:
        scope = f"ToRGB_lod{self.R - res}"
        return self.bias(conv2d(x, self.weight(scope, gain=1.0)), scope)

    def __call__(self, latents: Array, lod_in: float = 0.0) -> Array:
        x = self.block(latents.astype(np.float64), 2)
        images = self.torgb(x, 2)
        for res in range(3, self.R + 1):
            lod = self.R - res
            x = self.block(x, res)
            img = self.torgb(x, res)
            images = upscale2d(images)
            images = img + (images - img) * np.clip(lod_in - lod, 0.0, 1.0)  # lerp_clip
        return images


class OfficialD(Official):
    def fromrgb(self, x: Array, res: int) -> Array:
        scope = f"FromRGB_lod{self.R - res}"
        return leaky_relu(self.bias(conv2d(x, self.weight(scope)), scope))

    def block(self, x: Array, res: int) -> Array:
        s = f"{2**res}x{2**res}"
        if res >= 3:
            x = leaky_relu(self.bias(conv2d(x, self.weight(f"{s}/Conv0")), f"{s}/Conv0"))
            if self.kw["fused_scale"]:
                w = self.weight(f"{s}/Conv1_down")
                w = np.pad(w, ((1, 1), (1, 1), (0, 0), (0, 0)))
                w = (w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]) * 0.25
                return leaky_relu(self.bias(conv2d(x, w, stride=2), f"{s}/Conv1_down"))
            x = leaky_relu(self.bias(conv2d(x, self.weight(f"{s}/Conv1")), f"{s}/Conv1"))
            return downscale2d(x)
        if self.kw["mbstd_group_size"] > 1:
            x = minibatch_stddev(x, self.kw["mbstd_group_size"])
        x = leaky_relu(self.bias(conv2d(x, self.weight(f"{s}/Conv")), f"{s}/Conv"))
        x = x.reshape(x.shape[0], -1)
        x = leaky_relu(self.bias(x @ self.weight(f"{s}/Dense0"), f"{s}/Dense0"))
        return self.bias(x @ self.weight(f"{s}/Dense1", gain=1.0), f"{s}/Dense1")

    def __call__(self, images: Array, lod_in: float = 0.0) -> Array:
        img = images.astype(np.float64)
        x = self.fromrgb(img, self.R)
        for res in range(self.R, 2, -1):
            lod = self.R - res
            x = self.block(x, res)
            img = downscale2d(img)
            y = self.fromrgb(img, res - 1)
            x = x + (y - x) * np.clip(lod_in - lod, 0.0, 1.0)  # lerp_clip
        return self.block(x, 2)[:, :1]  # scores_out
