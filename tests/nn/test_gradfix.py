"""The differentiable-gradient convs: same values as torch, gradcheck and gradgradcheck pass,
and the gradient penalty through them equals the stock one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from progan_dsl.nn import gradfix
from progan_dsl.nn.layers import fused_down_kernel, fused_up_kernel

CASES = [  # (name, transpose, stride, padding, kernel): the convs ProGAN uses
    ("same3x3", False, 1, 1, 3),
    ("rgb1x1", False, 1, 0, 1),
    ("down4x4", False, 2, 1, 4),
    ("up4x4", True, 2, 1, 4),
]


def _inputs(transpose: bool, kernel: int, dtype: torch.dtype = torch.float64):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 4, dtype=dtype, requires_grad=True)
    shape = (2, 3, kernel, kernel) if transpose else (3, 2, kernel, kernel)
    w = torch.randn(shape, dtype=dtype, requires_grad=True)
    b = torch.randn(3, dtype=dtype, requires_grad=True)
    return x, w, b


def _ours(transpose, stride, padding):
    if transpose:
        return lambda x, w, b: gradfix.conv_transpose2d(x, w, b, stride, padding)
    return lambda x, w, b: gradfix.conv2d(x, w, b, stride, padding)


def _stock(transpose, stride, padding):
    if transpose:
        return lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding)
    return lambda x, w, b: F.conv2d(x, w, b, stride, padding)


@pytest.mark.parametrize("name,transpose,stride,padding,kernel", CASES, ids=[c[0] for c in CASES])
def test_values_and_gradients_match_stock(name, transpose, stride, padding, kernel):
    x, w, b = _inputs(transpose, kernel)
    ours, stock = _ours(transpose, stride, padding), _stock(transpose, stride, padding)
    assert torch.allclose(ours(x, w, b), stock(x, w, b), atol=1e-12)
    g1 = torch.autograd.grad(ours(x, w, b).square().sum(), (x, w, b))
    g2 = torch.autograd.grad(stock(x, w, b).square().sum(), (x, w, b))
    for a, c in zip(g1, g2):
        assert torch.allclose(a, c, atol=1e-10)


@pytest.mark.parametrize("name,transpose,stride,padding,kernel", CASES, ids=[c[0] for c in CASES])
def test_gradcheck_and_gradgradcheck(name, transpose, stride, padding, kernel):
    x, w, b = _inputs(transpose, kernel)
    fn = _ours(transpose, stride, padding)
    assert gradcheck(fn, (x, w, b), fast_mode=True)
    assert gradgradcheck(fn, (x, w, b), fast_mode=True)


def test_gradient_penalty_matches_stock():
    """WGAN-GP's penalty through a small conv stack: value and parameter gradients agree."""
    torch.manual_seed(1)
    w_up = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    w_down = torch.randn(5, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    img = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)

    def penalty(conv, conv_t):
        h = conv_t(img, fused_up_kernel(w_up), None, 2, 1)
        h = F.leaky_relu(h, 0.2)
        y = conv(h, fused_down_kernel(w_down), None, 2, 1).sum()
        (g,) = torch.autograd.grad(y, img, create_graph=True)
        gp = (g.flatten(1).norm(dim=1) - 1).square().mean()
        return gp, torch.autograd.grad(gp, (w_up, w_down))

    gp_a, grads_a = penalty(gradfix.conv2d, gradfix.conv_transpose2d)
    gp_b, grads_b = penalty(F.conv2d, F.conv_transpose2d)
    assert torch.allclose(gp_a, gp_b, rtol=1e-12)
    for a, b in zip(grads_a, grads_b):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_eqconv_through_gradfix_matches_stock_including_autocast(monkeypatch):
    """The runtime layer gives the same outputs and penalty gradients with gradfix switched on
    (as on CUDA) as with the stock ops; under bf16 autocast within bf16 tolerance."""
    from progan_dsl.nn import layers

    torch.manual_seed(2)
    convs = [layers.EqConv2d(3, 4, 3, act="lrelu", mode=m) for m in ("same", "up", "down")]
    x = torch.randn(2, 3, 8, 8, requires_grad=True)

    def run():
        outs = []
        for conv in convs:
            y = conv(x).square().sum()
            (g,) = torch.autograd.grad(y, x, create_graph=True)
            gp = g.square().sum()
            outs.append((y.detach(), torch.autograd.grad(gp, conv.weight)[0]))
        return outs

    stock = run()
    for conv in convs:
        layers.use_gradfix(conv, True)
    fixed = run()
    for (ya, ga), (yb, gb) in zip(stock, fixed):
        assert torch.allclose(ya, yb, rtol=1e-5)
        assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-4 * ga.abs().max().item())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = convs[0](x)
    assert y.dtype == torch.bfloat16
    assert torch.allclose(
        y.float(), convs[0](x).detach(), rtol=0.05, atol=0.05 * y.abs().max().item()
    )
