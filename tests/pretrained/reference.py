"""An independent float64 numpy computation of the official G_paper / D_paper (networks.py).

Written from the official semantics, layer by layer, with nothing from progan_dsl: TensorFlow
'SAME' padding rules, HWIO kernels, conv2d_transpose as the adjoint of the strided conv,
`upscale2d_conv2d` / `conv2d_downscale2d` built as the official code builds them (pad the kernel,
sum its four shifts, 0.25 for the down-conv), equalized learning rate as gain / sqrt(fan_in),
and the 'linear' network structure with `lod_in` (lerp_clip between resolutions).

Class-conditional networks (label_size > 0): G concatenates the labels to the latents before the
latent pixel norm (`combo_in`), D's last dense layer has 1 + label_size outputs, split into
`scores_out` (the first) and `labels_out` (the rest): `OfficialG(latents, labels)`,
`OfficialD.outputs(images) -> (scores, labels_out)` (`OfficialD(images)` is the scores alone).

`TorchG` / `TorchD` are a second, float64 torch writing of the same networks (torch's own conv,
transposed conv and pooling ops instead of the einsums here), differentiable, with the official
losses `d_wgangp_acgan` / `g_wgan_acgan` (loss.py): they give the reference gradients. Tests
check that the two writings agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

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

    def __call__(self, latents: Array, labels: Array | None = None, lod_in: float = 0.0) -> Array:
        x = self.block(combo_in(latents, labels, self.kw["label_size"]), 2)
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
        return self.outputs(images, lod_in)[0]  # scores_out

    def outputs(self, images: Array, lod_in: float = 0.0) -> tuple[Array, Array]:
        """(scores_out [N, 1], labels_out [N, label_size]) as D_paper returns them."""
        img = images.astype(np.float64)
        x = self.fromrgb(img, self.R)
        for res in range(self.R, 2, -1):
            lod = self.R - res
            x = self.block(x, res)
            img = downscale2d(img)
            y = self.fromrgb(img, res - 1)
            x = x + (y - x) * np.clip(lod_in - lod, 0.0, 1.0)  # lerp_clip
        combo_out = self.block(x, 2)
        return combo_out[:, :1], combo_out[:, 1:]


def combo_in(latents: Array, labels: Array | None, label_size: int) -> Array:
    """G_paper's `combo_in`: [latents, labels] concatenated (labels [N, label_size])."""
    if labels is None:
        labels = np.zeros((latents.shape[0], 0))
    assert labels.shape == (latents.shape[0], label_size), (labels.shape, label_size)
    return np.concatenate([latents, labels], axis=1).astype(np.float64)


# ---- the same networks in float64 torch, differentiable, and the official losses ----------------

# Official loss.py D_wgangp_acgan / G_wgan_acgan defaults.
WGAN_LAMBDA = 10.0  # wgan_lambda: weight of the gradient penalty
WGAN_EPSILON = 0.001  # wgan_epsilon: weight of the drift term E[D(real)^2]
WGAN_TARGET = 1.0  # wgan_target: target gradient norm
COND_WEIGHT = 1.0  # cond_weight: weight of the label penalties
MBSTD_EPSILON = 1e-8  # networks.py minibatch_stddev_layer: sqrt(variance + 1e-8)


def t_conv2d(x: Tensor, w: Tensor, stride: int = 1) -> Tensor:
    """tf.nn.conv2d NCHW, SAME, HWIO kernel: explicit TF padding, then torch's correlation."""
    k = w.shape[0]
    _, top, bottom = same_padding(x.shape[2], k, stride)
    _, left, right = same_padding(x.shape[3], k, stride)
    x = F.pad(x, (left, right, top, bottom))
    return F.conv2d(x, w.permute(3, 2, 0, 1), stride=stride)


def t_conv2d_transpose(x: Tensor, w: Tensor, out_hw: tuple[int, int], stride: int) -> Tensor:
    """tf.nn.conv2d_transpose NCHW, SAME, filter [k, k, out, in]: torch's full transposed conv
    (the adjoint of the unpadded strided correlation), cropped where TF's SAME padding starts."""
    k = w.shape[0]
    H, W = out_hw
    _, top, _ = same_padding(H, k, stride)
    _, left, _ = same_padding(W, k, stride)
    y = F.conv_transpose2d(x, w.permute(3, 2, 0, 1), stride=stride)
    return y[:, :, top : top + H, left : left + W]


def t_upscale2d(x: Tensor, factor: int = 2) -> Tensor:
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def t_downscale2d(x: Tensor, factor: int = 2) -> Tensor:
    return F.avg_pool2d(x, factor) if factor > 1 else x


def t_pixel_norm(x: Tensor, eps: float) -> Tensor:
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def t_leaky_relu(x: Tensor, alpha: float = 0.2) -> Tensor:
    return torch.maximum(x * alpha, x)


def t_minibatch_stddev(x: Tensor, group_size: int) -> Tensor:
    """Groups of G samples n, n + M, n + 2M, ... (M = N / G), as the official reshape makes them."""
    g = min(group_size, x.shape[0])
    n, c, h, w = x.shape
    y = x.reshape(g, -1, c, h, w)
    y = y - y.mean(dim=0, keepdim=True)
    y = torch.sqrt(y.square().mean(dim=0) + MBSTD_EPSILON)
    y = y.mean(dim=(1, 2, 3), keepdim=True)  # [M, 1, 1, 1]
    y = y.repeat(g, 1, h, w)  # [N, 1, H, W]
    return torch.cat([x, y], dim=1)


def t_lerp_clip(a: Tensor, b: Tensor, t: float) -> Tensor:
    return a + (b - a) * float(np.clip(t, 0.0, 1.0))


class TorchOfficial:
    """G_paper / D_paper in float64 torch. `variables`: name -> float64 tensor (leaves that may
    require grad), in the official layouts."""

    def __init__(self, kwargs: dict[str, Any], variables: dict[str, Tensor]) -> None:
        self.kw, self.v = kwargs, variables
        self.R = int(np.log2(kwargs["resolution"]))
        # the smallest |input| of any (leaky) ReLU so far: how near a float32 run of the same
        # maths is to taking the activation's other branch (a finite change of its gradient)
        self.kink_margin = float("inf")

    def lrelu(self, x: Tensor) -> Tensor:
        self.kink_margin = min(self.kink_margin, x.detach().abs().min().item())
        return t_leaky_relu(x)

    def nf(self, stage: int) -> int:
        k = self.kw
        return min(int(k["fmap_base"] / (2.0 ** (stage * k["fmap_decay"]))), k["fmap_max"])

    def weight(self, scope: str, gain: float = SQRT2, fan_in: int | None = None) -> Tensor:
        w = self.v[f"{scope}/weight"]
        if fan_in is None:
            fan_in = int(np.prod(w.shape[:-1]))
        return w * (gain / np.sqrt(fan_in)) if self.kw["use_wscale"] else w

    def bias(self, x: Tensor, scope: str) -> Tensor:
        b = self.v[f"{scope}/bias"]
        return x + (b if x.ndim == 2 else b.reshape(1, -1, 1, 1))


class TorchG(TorchOfficial):
    def act(self, x: Tensor) -> Tensor:
        if self.kw["use_leakyrelu"]:
            return self.lrelu(x)
        self.kink_margin = min(self.kink_margin, x.detach().abs().min().item())
        return torch.relu(x)

    def pn(self, x: Tensor) -> Tensor:
        return t_pixel_norm(x, self.kw["pixelnorm_epsilon"]) if self.kw["use_pixelnorm"] else x

    def block(self, x: Tensor, res: int) -> Tensor:
        s = f"{2**res}x{2**res}"
        if res == 2:
            if self.kw["normalize_latents"]:
                x = t_pixel_norm(x, self.kw["pixelnorm_epsilon"])
            x = x @ self.weight(f"{s}/Dense", gain=SQRT2 / 4)
            x = x.reshape(-1, self.nf(1), 4, 4)
            x = self.pn(self.act(self.bias(x, f"{s}/Dense")))
            return self.pn(self.act(self.bias(t_conv2d(x, self.weight(f"{s}/Conv")), f"{s}/Conv")))
        if self.kw["fused_scale"]:
            w = self.weight(f"{s}/Conv0_up", fan_in=9 * x.shape[1])
            w = F.pad(w.permute(2, 3, 0, 1), (1, 1, 1, 1)).permute(2, 3, 0, 1)
            w = w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]
            x = t_conv2d_transpose(x, w, (x.shape[2] * 2, x.shape[3] * 2), stride=2)
            x = self.pn(self.act(self.bias(x, f"{s}/Conv0_up")))
        else:
            x = t_upscale2d(x)
            x = self.pn(self.act(self.bias(t_conv2d(x, self.weight(f"{s}/Conv0")), f"{s}/Conv0")))
        return self.pn(self.act(self.bias(t_conv2d(x, self.weight(f"{s}/Conv1")), f"{s}/Conv1")))

    def torgb(self, x: Tensor, res: int) -> Tensor:
        scope = f"ToRGB_lod{self.R - res}"
        return self.bias(t_conv2d(x, self.weight(scope, gain=1.0)), scope)

    def __call__(
        self, latents: Tensor, labels: Tensor | None = None, lod_in: float = 0.0
    ) -> Tensor:
        """images_out [N, C, resolution, resolution] (always full size, as officially)."""
        if labels is None:
            labels = latents.new_zeros(latents.shape[0], 0)
        assert labels.shape[1] == self.kw["label_size"]
        x = self.block(torch.cat([latents, labels], dim=1).double(), 2)  # combo_in
        images = self.torgb(x, 2)
        for res in range(3, self.R + 1):
            x = self.block(x, res)
            img = self.torgb(x, res)
            images = t_lerp_clip(img, t_upscale2d(images), lod_in - (self.R - res))
        return images


class TorchD(TorchOfficial):
    def fromrgb(self, x: Tensor, res: int) -> Tensor:
        scope = f"FromRGB_lod{self.R - res}"
        return self.lrelu(self.bias(t_conv2d(x, self.weight(scope)), scope))

    def block(self, x: Tensor, res: int) -> Tensor:
        s = f"{2**res}x{2**res}"
        if res >= 3:
            x = self.lrelu(self.bias(t_conv2d(x, self.weight(f"{s}/Conv0")), f"{s}/Conv0"))
            if self.kw["fused_scale"]:
                w = self.weight(f"{s}/Conv1_down")
                w = F.pad(w.permute(2, 3, 0, 1), (1, 1, 1, 1)).permute(2, 3, 0, 1)
                w = (w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]) * 0.25
                return self.lrelu(self.bias(t_conv2d(x, w, stride=2), f"{s}/Conv1_down"))
            x = self.lrelu(self.bias(t_conv2d(x, self.weight(f"{s}/Conv1")), f"{s}/Conv1"))
            return t_downscale2d(x)
        if self.kw["mbstd_group_size"] > 1:
            x = t_minibatch_stddev(x, self.kw["mbstd_group_size"])
        x = self.lrelu(self.bias(t_conv2d(x, self.weight(f"{s}/Conv")), f"{s}/Conv"))
        x = x.reshape(x.shape[0], -1)
        x = self.lrelu(self.bias(x @ self.weight(f"{s}/Dense0"), f"{s}/Dense0"))
        return self.bias(x @ self.weight(f"{s}/Dense1", gain=1.0), f"{s}/Dense1")

    def __call__(self, images: Tensor, lod_in: float = 0.0) -> tuple[Tensor, Tensor]:
        """(scores_out [N, 1], labels_out [N, label_size]) of full-size images."""
        img = images.double()
        x = self.fromrgb(img, self.R)
        for res in range(self.R, 2, -1):
            x = self.block(x, res)
            img = t_downscale2d(img)
            x = t_lerp_clip(x, self.fromrgb(img, res - 1), lod_in - (self.R - res))
        combo_out = self.block(x, 2)
        return combo_out[:, :1], combo_out[:, 1:]


def softmax_cross_entropy(labels: Tensor, logits: Tensor) -> Tensor:
    """tf.nn.softmax_cross_entropy_with_logits_v2 per sample: -sum(labels * log softmax)."""
    return -(labels * torch.log_softmax(logits, dim=1)).sum(dim=1)


def d_wgangp_acgan(
    G: TorchG,
    D: TorchD,
    reals: Tensor,
    labels: Tensor,
    latents: Tensor,
    mixing_factors: Tensor,
    lod_in: float,
    *,
    wgan_lambda: float = WGAN_LAMBDA,
    wgan_epsilon: float = WGAN_EPSILON,
    wgan_target: float = WGAN_TARGET,
    cond_weight: float = COND_WEIGHT,
) -> Tensor:
    """loss.py D_wgangp_acgan per sample ([N]; train.py minimises its mean over D's variables).
    `reals` full size, the fakes drawn with the reals' labels; the penalty's gradient is taken
    with respect to the full-size mixed images; the label penalties where D has label outputs."""
    fakes = G(latents, labels, lod_in)
    real_scores, real_labels = D(reals, lod_in)
    fake_scores, fake_labels = D(fakes, lod_in)
    loss = fake_scores - real_scores
    mixed = reals + (fakes - reals) * mixing_factors  # tfutil.lerp
    with torch.enable_grad():  # the penalty needs the input gradient even under no_grad
        mixed = mixed.detach().requires_grad_(True)  # tf.gradients(..., [mixed_images_out])
        mixed_scores, _ = D(mixed, lod_in)
        (grads,) = torch.autograd.grad(
            mixed_scores.sum(), mixed, create_graph=torch.is_grad_enabled()
        )
    norms = torch.sqrt(grads.square().sum(dim=(1, 2, 3)))
    loss = loss + ((norms - wgan_target).square() * (wgan_lambda / wgan_target**2))[:, None]
    loss = loss + real_scores.square() * wgan_epsilon
    if real_labels.shape[1] > 0:
        label_penalty = softmax_cross_entropy(labels, real_labels) + softmax_cross_entropy(
            labels, fake_labels
        )
        loss = loss + label_penalty[:, None] * cond_weight
    return loss[:, 0]


def g_wgan_acgan(
    G: TorchG,
    D: TorchD,
    latents: Tensor,
    labels: Tensor,
    lod_in: float,
    *,
    cond_weight: float = COND_WEIGHT,
) -> Tensor:
    """loss.py G_wgan_acgan per sample ([N]; minimised in mean over G's variables)."""
    fake_scores, fake_labels = D(G(latents, labels, lod_in), lod_in)
    loss = -fake_scores[:, 0]
    if fake_labels.shape[1] > 0:
        loss = loss + softmax_cross_entropy(labels, fake_labels) * cond_weight
    return loss
