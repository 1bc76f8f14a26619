"""The built-in layer kinds of the paper's networks (Table 2 and Section 4).

Spec kinds: conv, upsample, downsample, project (G's latent -> 4x4 "Conv 4x4"), dense (D's
"Conv 4x4" and final "Fully-connected"), minibatch_stddev, pixel_norm.
IR-only kinds: input, lerp (fade-in), conv_up / conv_down (the fused-scale convs).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, field_validator
from pydantic_core import PydanticCustomError

from progan_dsl.kinds.base import (
    Activation,
    ChannelRef,
    InferContext,
    LayerBase,
    LayerKind,
    NodeFacts,
    Shape,
    register,
)
from progan_dsl.paper import CONV_KERNEL, MBSTD_FEATURES, MBSTD_GROUP

RUNTIME = "progan_dsl.nn.layers"


# ---- spec parameter models -------------------------------------------------------------------


class ConvLayer(LayerBase):
    """A convolution with bias, activation and (in G) pixel norm; 'same' padding."""

    kind: Literal["conv"] = Field(description="Convolution (Table 2 'Conv KxK').")
    kernel: StrictInt = Field(
        CONV_KERNEL, ge=1, le=9, description="Kernel size (odd); 3 in Table 2, 1 for toRGB/fromRGB."
    )
    out: ChannelRef = Field("this", description="Output channels: 'this', 'lower' or a number.")
    activation: Activation | None = Field(None, description="Activation; default: the network's.")
    gain: StrictFloat | None = Field(
        None, gt=0, description="He-init gain; default: architecture.gain."
    )
    normalize: StrictBool | None = Field(
        None, description="Pixel norm after the activation; default: on in G, off in D."
    )

    @field_validator("kernel")
    @classmethod
    def check_kernel_is_odd(cls, kernel: int) -> int:
        if kernel % 2 == 0:
            raise PydanticCustomError("spec_rule", even_kernel_message(kernel))
        return kernel


class UpsampleLayer(LayerBase):
    kind: Literal["upsample"] = Field(
        description="Nearest-neighbour 2x upsampling (Table 2 'Upsample')."
    )


class DownsampleLayer(LayerBase):
    kind: Literal["downsample"] = Field(description="2x2 average pooling (Table 2 'Downsample').")
    takes_activation: StrictBool = Field(
        True,
        description="Directly after a conv, pool first and apply that conv's activation after "
        "pooling (bias commutes with pooling), as the official fused_scale networks compute; the "
        "conv and the pooling can then be fused exactly. false: activation before pooling, "
        "Table 2's literal order (that pair is then never fused).",
    )


class ProjectLayer(LayerBase):
    kind: Literal["project"] = Field(
        description="Dense layer from the latent vector to C x H x W maps (G's first 'Conv 4x4')."
    )
    out: ChannelRef = Field("this", description="Output channels.")
    activation: Activation | None = Field(None, description="Activation; default: the network's.")
    gain: StrictFloat | None = Field(None, gt=0, description="He-init gain (official: sqrt(2)/4).")
    normalize: StrictBool | None = Field(None, description="Pixel norm after the activation.")


class DenseLayer(LayerBase):
    kind: Literal["dense"] = Field(
        description="Flatten, then fully connected (D's 'Conv 4x4' and final 'Fully-connected')."
    )
    out: ChannelRef = Field(description="Output features.")
    activation: Activation | None = Field(None, description="Activation; default: the network's.")
    gain: StrictFloat | None = Field(
        None, gt=0, description="He-init gain; 1 for the linear output."
    )


class MinibatchStddevLayer(LayerBase):
    kind: Literal["minibatch_stddev"] = Field(
        description="Minibatch standard deviation (Section 3)."
    )
    group_size: StrictInt = Field(
        MBSTD_GROUP, ge=1, le=256, description="Samples per group (paper/official: 4)."
    )
    num_features: StrictInt = Field(
        MBSTD_FEATURES, ge=1, le=16, description="Extra feature maps appended (paper: 1)."
    )


class PixelNormLayer(LayerBase):
    kind: Literal["pixel_norm"] = Field(
        description="Pixelwise feature normalisation (Section 4.2)."
    )


# ---- shape inference --------------------------------------------------------------------------


def _need_maps(shape: Shape, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(
            f"{what} needs feature maps [C, H, W] as input, got a vector {list(shape)}"
        )
    return shape[0], shape[1], shape[2]


def _halve(shape: Shape, what: str) -> Shape:
    c, h, w = _need_maps(shape, what)
    if h % 2 or w % 2 or h < 2 or w < 2:
        raise ValueError(f"{what} needs even height and width, got {h}x{w}")
    return (c, h // 2, w // 2)


def conv_output_size(size: int, kernel: int) -> int:
    """Output height (or width) of a stride-1 conv as the runtime pads it: `kernel // 2` pixels
    on each side (nn/layers.py EqConv2d), so odd kernels keep the size and even ones add one."""
    pad = kernel // 2
    return size + 2 * pad - kernel + 1


def even_kernel_message(kernel: int) -> str:
    return (
        f"kernel {kernel} is even: the runtime pads kernel // 2 = {kernel // 2} pixels on each "
        f"side, so the output would be one pixel larger than the input; use an odd kernel "
        "(allowed: 1, 3, 5, 7, 9)"
    )


def _infer_conv(layer: Any, shape: Shape, ctx: InferContext) -> Shape:
    _, h, w = _need_maps(shape, "conv")
    k = int(layer.kernel)
    return (ctx.channels(layer.out), conv_output_size(h, k), conv_output_size(w, k))


def _infer_conv_up(layer: Any, shape: Shape, ctx: InferContext) -> Shape:
    _, h, w = _need_maps(shape, "conv_up")
    return (ctx.channels(layer.out), 2 * h, 2 * w)


def _infer_conv_down(layer: Any, shape: Shape, ctx: InferContext) -> Shape:
    _, h, w = _halve(shape, "conv_down")
    return (ctx.channels(layer.out), h, w)


def _infer_upsample(layer: Any, shape: Shape, ctx: InferContext) -> Shape:
    c, h, w = _need_maps(shape, "upsample")
    return (c, 2 * h, 2 * w)


def _infer_downsample(layer: Any, shape: Shape, ctx: InferContext) -> Shape:
    return _halve(shape, "downsample")


def _infer_project(layer: Any, shape: Shape, ctx: InferContext) -> Shape:
    if len(shape) != 1:
        raise ValueError(f"project needs a vector input (the latent), got maps {list(shape)}")
    return (ctx.channels(layer.out), *ctx.spatial)


def _infer_dense(layer: Any, shape: Shape, ctx: InferContext) -> Shape:
    return (ctx.channels(layer.out),)


def _infer_mbstd(layer: Any, shape: Shape, ctx: InferContext) -> Shape:
    c, h, w = _need_maps(shape, "minibatch_stddev")
    if c % layer.num_features:
        raise ValueError(
            f"minibatch_stddev splits its {c} input channels into num_features = "
            f"{layer.num_features} groups: {layer.num_features} must divide {c}"
        )
    return (c + layer.num_features, h, w)


def _same(layer: Any, shape: Shape, ctx: InferContext) -> Shape:
    return shape


# ---- parameter counts and constructor arguments ------------------------------------------------


def _prod(shape: Shape) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


def _kernel(n: NodeFacts) -> int:
    return int(getattr(n.layer, "kernel", CONV_KERNEL))


def _count_conv(n: NodeFacts) -> int:
    k = _kernel(n)
    return n.in_shape[0] * n.out_shape[0] * k * k + n.out_shape[0]


def _count_project(n: NodeFacts) -> int:
    return n.in_shape[0] * _prod(n.out_shape) + n.out_shape[0]  # bias per output channel


def _count_dense(n: NodeFacts) -> int:
    return _prod(n.in_shape) * n.out_shape[0] + n.out_shape[0]


def _none(n: NodeFacts) -> int:
    return 0


def _act_args(n: NodeFacts) -> dict[str, Any]:
    args: dict[str, Any] = {"act": n.activation}
    if n.activation == "lrelu":
        args["slope"] = n.slope
    return args


def _weight_args(n: NodeFacts) -> dict[str, Any]:
    args: dict[str, Any] = {"gain": n.gain}
    if not n.equalized:
        args["equalized"] = False
    return args


def _norm_args(n: NodeFacts) -> dict[str, Any]:
    return {"pixel_norm": True, "eps": n.norm_eps} if n.normalize else {}


def _conv_ctor(mode: str) -> Any:
    def ctor(n: NodeFacts) -> dict[str, Any]:
        k = _kernel(n)
        args: dict[str, Any] = {
            "in_channels": n.in_shape[0],
            "out_channels": n.out_shape[0],
            "kernel": k,
        }
        if mode != "same":
            args["mode"] = mode
        return args | _weight_args(n) | _act_args(n) | _norm_args(n)

    return ctor


def _project_ctor(n: NodeFacts) -> dict[str, Any]:
    args = {"in_features": n.in_shape[0], "out_shape": list(n.out_shape)}
    return args | _weight_args(n) | _act_args(n) | _norm_args(n)


def _dense_ctor(n: NodeFacts) -> dict[str, Any]:
    args = {"in_features": _prod(n.in_shape), "out_features": n.out_shape[0]}
    return args | _weight_args(n) | _act_args(n)


def _conv_label(prefix: str) -> Any:
    def label(n: NodeFacts) -> str:
        k = _kernel(n)
        return f"{prefix}Conv {k}x{k}"

    return label


register(
    LayerKind(
        name="conv",
        params=ConvLayer,
        infer=_infer_conv,
        count=_count_conv,
        runtime=f"{RUNTIME}:EqConv2d",
        ctor=_conv_ctor("same"),
        label=_conv_label(""),
        style={"shape": "box", "fillcolor": "#cfe2ff"},
        has_activation=True,
        has_weights=True,
        description="convolution",
    )
)
register(
    LayerKind(
        name="conv_up",
        params=None,
        infer=_infer_conv_up,
        count=_count_conv,
        runtime=f"{RUNTIME}:EqConv2d",
        ctor=_conv_ctor("up"),
        label=_conv_label("Upsample + "),
        style={"shape": "box", "fillcolor": "#9ec5fe"},
        has_activation=True,
        has_weights=True,
        description="nearest 2x upsample fused with a 3x3 conv: stride-2 transposed 4x4 conv",
    )
)
register(
    LayerKind(
        name="conv_down",
        params=None,
        infer=_infer_conv_down,
        count=_count_conv,
        runtime=f"{RUNTIME}:EqConv2d",
        ctor=_conv_ctor("down"),
        label=lambda n: _conv_label("")(n) + " + Downsample",
        style={"shape": "box", "fillcolor": "#9ec5fe"},
        has_activation=True,
        has_weights=True,
        description="3x3 conv fused with 2x2 average pooling: stride-2 4x4 conv",
    )
)
register(
    LayerKind(
        name="upsample",
        params=UpsampleLayer,
        infer=_infer_upsample,
        count=_none,
        runtime=f"{RUNTIME}:Upsample2x",
        ctor=lambda n: {},
        label=lambda n: "Upsample",
        style={"shape": "invtrapezium", "fillcolor": "#d1e7dd"},
        description="nearest 2x",
    )
)
register(
    LayerKind(
        name="downsample",
        params=DownsampleLayer,
        infer=_infer_downsample,
        count=_none,
        runtime=f"{RUNTIME}:Downsample2x",
        ctor=_act_args,
        label=lambda n: "Downsample",
        style={"shape": "trapezium", "fillcolor": "#d1e7dd"},
        has_activation=True,
        description="2x2 average pooling",
    )
)
register(
    LayerKind(
        name="project",
        params=ProjectLayer,
        infer=_infer_project,
        count=_count_project,
        runtime=f"{RUNTIME}:EqProject",
        ctor=_project_ctor,
        label=lambda n: f"Conv {n.out_shape[1]}x{n.out_shape[2]}",
        style={"shape": "box", "fillcolor": "#e2d9f3"},
        has_activation=True,
        has_weights=True,
        description="dense latent -> C x H x W",
    )
)
register(
    LayerKind(
        name="dense",
        params=DenseLayer,
        infer=_infer_dense,
        count=_count_dense,
        runtime=f"{RUNTIME}:EqDense",
        ctor=_dense_ctor,
        label=lambda n: (
            f"Conv {n.in_shape[1]}x{n.in_shape[2]}"
            if len(n.in_shape) == 3 and n.in_shape[1] > 1
            else "Fully-connected"
        ),
        style={"shape": "box", "fillcolor": "#e2d9f3"},
        has_activation=True,
        has_weights=True,
        description="flatten + fully connected",
    )
)
register(
    LayerKind(
        name="minibatch_stddev",
        params=MinibatchStddevLayer,
        infer=_infer_mbstd,
        count=_none,
        runtime=f"{RUNTIME}:MinibatchStddev",
        ctor=lambda n: {
            "group_size": getattr(n.layer, "group_size", MBSTD_GROUP),
            "num_features": getattr(n.layer, "num_features", MBSTD_FEATURES),
        },
        label=lambda n: "Minibatch stddev",
        style={"shape": "hexagon", "fillcolor": "#fff3cd"},
    )
)
register(
    LayerKind(
        name="pixel_norm",
        params=PixelNormLayer,
        infer=_same,
        count=_none,
        runtime=f"{RUNTIME}:PixelNorm",
        ctor=lambda n: {"eps": n.norm_eps},
        label=lambda n: "Pixel norm",
        style={"shape": "hexagon", "fillcolor": "#f8d7da"},
    )
)
register(
    LayerKind(
        name="input",
        params=None,
        infer=_same,
        count=_none,
        runtime=f"{RUNTIME}:Identity",
        ctor=lambda n: {},
        label=lambda n: "Latent vector" if len(n.out_shape) == 1 else "Image",
        style={"shape": "oval", "fillcolor": "#ffffff"},
    )
)
register(
    LayerKind(
        name="lerp",
        params=None,
        infer=_same,
        count=_none,
        runtime=f"{RUNTIME}:Identity",
        ctor=lambda n: {},
        label=lambda n: "Fade-in lerp",
        style={"shape": "circle", "fillcolor": "#ffe5d0"},
        description="(1 - alpha) * old + alpha * new",
    )
)


# ---- conditioning: where class labels enter the networks -----------------------------------------


def _infer_concat(layer: Any, shape: Shape, ctx: InferContext) -> Shape:
    shapes = (shape, *ctx.side_shapes)
    if any(len(s) != 1 for s in shapes):
        raise ValueError(f"concat joins vectors, got {[list(s) for s in shapes]}")
    return (sum(s[0] for s in shapes),)


register(
    LayerKind(
        name="concat",
        params=None,
        infer=_infer_concat,
        count=_none,
        runtime=f"{RUNTIME}:Concat",
        ctor=lambda n: {},
        label=lambda n: "Concat labels",
        style={"shape": "invhouse", "fillcolor": "#e8f5e9"},
        description="latent and one-hot labels side by side (official G_paper combo_in)",
        inputs=("x", "labels"),
    )
)


def _infer_projection(layer: Any, shape: Shape, ctx: InferContext) -> Shape:
    (labels,) = ctx.side_shapes
    if len(labels) != 1:
        raise ValueError(f"projection takes one-hot labels [classes], got {list(labels)}")
    return (ctx.channels(layer.out),)


def _count_projection(n: NodeFacts) -> int:
    features = _prod(n.in_shape)
    return _count_dense(n) + n.side_shapes[0][0] * features  # + the class embedding


def _projection_ctor(n: NodeFacts) -> dict[str, Any]:
    return _dense_ctor(n) | {"classes": n.side_shapes[0][0]}


register(
    LayerKind(
        name="projection",
        params=None,
        infer=_infer_projection,
        count=_count_projection,
        runtime=f"{RUNTIME}:EqProjection",
        ctor=_projection_ctor,
        label=lambda n: "Projection",
        style={"shape": "box", "fillcolor": "#e8f5e9"},
        has_activation=True,
        has_weights=True,
        description="score + <embed(y), features> (Miyato & Koyama 2018)",
        inputs=("x", "labels"),
    )
)
