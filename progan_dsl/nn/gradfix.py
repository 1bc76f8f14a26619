"""Convolutions whose gradients are themselves differentiable through the dedicated backward
kernels (data-gradient = transposed conv, weight-gradient = `convolution_backward`).

Why: the gradient penalty of WGAN-GP differentiates the gradient of D. With stock autograd the
double backward of a conv computes its weight term as a *forward* convolution whose "kernel" is the
whole feature map (1024x1024 at full resolution), the slowest path cuDNN has. Here every backward
is expressed again through ops of this same family, so a second (or third) derivative costs about
one more backward pass. Same idea as StyleGAN2-ADA's conv2d_gradfix; our own code, torch only
(this file is copied next to emitted source with layers.py).

Use `conv2d` / `conv_transpose2d` below like their `torch.nn.functional` namesakes (groups=1,
dilation=1). Results equal the stock ops; gradcheck and gradgradcheck pass in float64 (tests).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
from torch import Tensor


def conv2d(
    x: Tensor, w: Tensor, bias: Tensor | None = None, stride: int = 1, padding: int = 0
) -> Tensor:
    return _apply(_conv_op(False, tuple(w.shape), stride, padding, 0), x, w, bias)


def conv_transpose2d(
    x: Tensor,
    w: Tensor,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
) -> Tensor:
    return _apply(_conv_op(True, tuple(w.shape), stride, padding, output_padding), x, w, bias)


def _apply(op: Any, x: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
    """Run under autocast the way a stock conv would: inputs cast to the autocast dtype, the op
    itself (and so its backward kernels) in that one dtype."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        x, w = x.to(dtype), w.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
        with torch.autocast(device, enabled=False):
            return op.apply(x, w, bias)
    return op.apply(x, w, bias)


def _data_grad_padding(
    transpose: bool,
    w_shape: tuple[int, ...],
    stride: int,
    padding: int,
    x_shape: tuple[int, ...],
    y_shape: tuple[int, ...],
) -> tuple[int, int]:
    """Output padding that makes the data-gradient op return exactly x's spatial size."""
    if transpose:
        return (0, 0)
    k_h, k_w = w_shape[2], w_shape[3]
    return (
        x_shape[2] - ((y_shape[2] - 1) * stride - 2 * padding + k_h),
        x_shape[3] - ((y_shape[3] - 1) * stride - 2 * padding + k_w),
    )


@cache
def _conv_op(
    transpose: bool,
    w_shape: tuple[int, ...],
    stride: int,
    padding: int,
    output_padding: int | tuple[int, int],
) -> Any:
    """The autograd Function of one conv configuration (cached: configurations are few)."""

    class Conv(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
            ctx.save_for_backward(x, w)
            ctx.has_bias = bias is not None
            if transpose:
                return torch.nn.functional.conv_transpose2d(
                    x, w, bias, stride, padding, output_padding
                )
            return torch.nn.functional.conv2d(x, w, bias, stride, padding)

        @staticmethod
        def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
            x, w = ctx.saved_tensors
            gx = gw = gb = None
            if ctx.needs_input_grad[0]:
                op = _data_grad_padding(
                    transpose, w_shape, stride, padding, tuple(x.shape), tuple(gy.shape)
                )
                gx = _conv_op(not transpose, w_shape, stride, padding, op).apply(gy, w, None)
            if ctx.needs_input_grad[1]:
                gw = _weight_grad_op(transpose, w_shape, stride, padding, output_padding).apply(
                    gy, x
                )
            if ctx.has_bias and ctx.needs_input_grad[2]:
                gb = gy.sum(dim=(0, 2, 3))
            return gx, gw, gb

    return Conv


@cache
def _weight_grad_op(
    transpose: bool,
    w_shape: tuple[int, ...],
    stride: int,
    padding: int,
    output_padding: int | tuple[int, int],
) -> Any:
    """gw = dL/dw of a conv from (gy, x), differentiable through convs of the same family."""
    out_pad = output_padding if isinstance(output_padding, tuple) else (output_padding,) * 2

    class WeightGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, gy: Tensor, x: Tensor) -> Tensor:
            ctx.save_for_backward(gy, x)
            empty = torch.empty(w_shape, dtype=x.dtype, device=x.device)
            return torch.ops.aten.convolution_backward(
                gy,
                x,
                empty,
                None,
                [stride, stride],
                [padding, padding],
                [1, 1],
                transpose,
                list(out_pad),
                1,
                [False, True, False],
            )[1]

        @staticmethod
        def backward(ctx: Any, ggw: Tensor) -> tuple[Tensor | None, Tensor | None]:
            gy, x = ctx.saved_tensors
            g_gy = g_x = None
            if ctx.needs_input_grad[0]:  # gy enters gw linearly: d/dgy = the forward conv with ggw
                g_gy = _conv_op(transpose, w_shape, stride, padding, output_padding).apply(
                    x, ggw, None
                )
            if ctx.needs_input_grad[
                1
            ]:  # x enters gw linearly: d/dx = the data-gradient conv with ggw
                op = _data_grad_padding(
                    transpose, w_shape, stride, padding, tuple(x.shape), tuple(gy.shape)
                )
                g_x = _conv_op(not transpose, w_shape, stride, padding, op).apply(gy, ggw, None)
            return g_gy, g_x

    return WeightGrad
