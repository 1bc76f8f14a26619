"""A new layer kind, `blur`, defined in one place: spec parameters, shape rule, parameter count,
runtime module, constructor arguments, label and diagram style. Importing this module registers it;
specs can then say `{kind: blur}`. No torch here: the runtime class is named, not imported."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictInt

from progan_dsl.kinds import LayerBase, LayerKind, register


class BlurLayer(LayerBase):
    kind: Literal["blur"] = Field(
        description="Separable low-pass filter, e.g. before downsampling."
    )
    taps: list[StrictInt] = Field(
        default_factory=lambda: [1, 2, 1],
        min_length=1,
        max_length=7,
        description="1-D filter taps (normalised to sum 1).",
    )


def _same_maps(layer: Any, shape: tuple[int, ...], ctx: Any) -> tuple[int, ...]:
    if len(shape) != 3:
        raise ValueError(f"blur needs feature maps [C, H, W], got {list(shape)}")
    return shape


BLUR = register(
    LayerKind(
        name="blur",
        params=BlurLayer,
        infer=_same_maps,
        count=lambda node: 0,
        runtime="examples.custom_kind.blur_runtime:Blur2d",
        ctor=lambda node: {"taps": list(node.layer.taps)},
        label=lambda node: f"Blur {len(node.layer.taps)}-tap",
        style={"shape": "box", "style": "rounded,filled", "fillcolor": "#e0e0e0"},
        description="low-pass filter",
    )
)
