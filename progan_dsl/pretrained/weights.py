"""Official variable names and layouts -> this project's parameter names and torch layouts.

Owns the table of every trainable variable of an official G_paper / D_paper network (its name and
shape as networks.py creates them, the parameter it becomes, how its layout changes), the check
that a pickle holds exactly those variables, and the conversion to state dicts.

Layouts (the official networks compute in NCHW but store kernels the TensorFlow way):
- conv kernels [k, k, in, out] (HWIO) -> [out, in, k, k] (OIHW);
- the fused up-conv `Conv0_up` kernel is a conv2d_transpose filter [k, k, out, in]. The official
  layer pads it, sums its four 2x2 shifts and runs a stride-2 transposed conv; that equals a
  nearest 2x upsampling followed by a correlation with the spatially FLIPPED kernel. This
  project's fused conv computes upsampling + correlation with the kernel as stored (its
  `fused_up_kernel` flips internally), so the imported kernel is [out, in, k, k] flipped in both
  spatial axes;
- the fused down-conv `Conv1_down` kernel is HWIO used by a stride-2 conv2d: a correlation, as
  this project's fused down-conv, so it is OIHW without a flip;
- dense weights [in, out] -> [out, in]. G's 4x4 dense output is reshaped to [-1, C, 4, 4]
  (row-major) officially and here, so output unit c*16 + y*4 + x keeps its place; D's Dense0
  flattens NCHW maps in both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from progan_dsl.errors import UserError
from progan_dsl.pretrained.official import OfficialNetworks
from progan_dsl.pretrained.unpickle import MAX_PICKLE_BYTES, NetworkState

Layout = Literal["hwio", "hwoi_flipped", "matrix", "vector"]
LOD_VARIABLE = "lod"  # official: tf.get_variable('lod', trainable=False) in G_paper and D_paper
SHOWN = 4  # names listed per kind of mismatch
# The most trainable parameters progan-import converts per network, checked on the tables before
# any network or tensor is built: three float32 networks of this size (G, D, Gs) fill a pickle of
# MAX_PICKLE_BYTES. 89,478,485: 3.9x the official 1024x1024 G (23,079,115 with all toRGB layers).
MAX_PARAMETERS = MAX_PICKLE_BYTES // (3 * 4)


@dataclass(frozen=True)
class Variable:
    """One official variable and the parameter it becomes."""

    official: str  # e.g. "8x8/Conv0_up/weight"
    param: str  # e.g. "b8_conv0.weight" (stable node name, the same in every stage)
    shape: tuple[int, ...]  # the official shape
    layout: Layout

    @property
    def param_shape(self) -> tuple[int, ...]:
        s = self.shape
        if self.layout == "hwio":
            return (s[3], s[2], s[0], s[1])
        if self.layout == "hwoi_flipped":
            return (s[2], s[3], s[0], s[1])
        if self.layout == "matrix":
            return (s[1], s[0])
        return s

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def _layer(
    official: str, param: str, weight: tuple[int, ...], layout: Layout, bias: int
) -> list[Variable]:
    return [
        Variable(f"{official}/weight", f"{param}.weight", weight, layout),
        Variable(f"{official}/bias", f"{param}.bias", (bias,), "vector"),
    ]


def generator_variables(nets: OfficialNetworks) -> list[Variable]:
    """Every trainable variable of the official G_paper (and of Gs) for these arguments."""
    G, R, nf = nets.G, nets.resolution_log2, nets.nf
    out = _layer(
        "4x4/Dense", "b4_project", (G.latent_size + G.label_size, nf(1) * 16), "matrix", nf(1)
    )
    out += _layer("4x4/Conv", "b4_conv", (3, 3, nf(1), nf(1)), "hwio", nf(1))
    for k in range(3, R + 1):
        r, cin, cout = 2**k, nf(k - 2), nf(k - 1)
        if G.fused_scale:
            out += _layer(
                f"{r}x{r}/Conv0_up", f"b{r}_conv0", (3, 3, cout, cin), "hwoi_flipped", cout
            )
        else:
            out += _layer(f"{r}x{r}/Conv0", f"b{r}_conv0", (3, 3, cin, cout), "hwio", cout)
        out += _layer(f"{r}x{r}/Conv1", f"b{r}_conv1", (3, 3, cout, cout), "hwio", cout)
    for k in range(2, R + 1):
        out += _layer(
            f"ToRGB_lod{R - k}",
            f"b{2**k}_torgb",
            (1, 1, nf(k - 1), G.num_channels),
            "hwio",
            G.num_channels,
        )
    return out


def discriminator_variables(nets: OfficialNetworks) -> list[Variable]:
    """Every trainable variable of the official D_paper for these arguments."""
    D, R, nf = nets.D, nets.resolution_log2, nets.nf
    out: list[Variable] = []
    for k in range(2, R + 1):
        out += _layer(
            f"FromRGB_lod{R - k}",
            f"b{2**k}_fromrgb",
            (1, 1, D.num_channels, nf(k - 1)),
            "hwio",
            nf(k - 1),
        )
    for k in range(R, 2, -1):
        r, c, lower = 2**k, nf(k - 1), nf(k - 2)
        out += _layer(f"{r}x{r}/Conv0", f"b{r}_conv0", (3, 3, c, c), "hwio", c)
        down = "Conv1_down" if D.fused_scale else "Conv1"
        out += _layer(f"{r}x{r}/{down}", f"b{r}_conv1", (3, 3, c, lower), "hwio", lower)
    extra = 1 if D.mbstd_group_size > 1 else 0  # the minibatch stddev map
    out += _layer("4x4/Conv", "b4_conv", (3, 3, nf(1) + extra, nf(1)), "hwio", nf(1))
    out += _layer("4x4/Dense0", "b4_dense0", (nf(1) * 16, nf(0)), "matrix", nf(0))
    out += _layer("4x4/Dense1", "b4_dense1", (nf(0), 1 + D.label_size), "matrix", 1 + D.label_size)
    return out


def check_parameter_count(tables: Mapping[str, list[Variable]], file: str) -> None:
    """Refuse networks (`tables`: "G" / "D" -> its variables) of more than `MAX_PARAMETERS`."""
    for net, table in tables.items():
        count = total_size(table)
        if count > MAX_PARAMETERS:
            raise UserError(
                f"{file}: the static arguments describe a {net} of {count:,} parameters; "
                f"progan-import converts networks of up to {MAX_PARAMETERS:,} (the official "
                "1024x1024 G has 23,079,115)"
            )


def _listing(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def check_variables(net: NetworkState, table: list[Variable], file: str) -> None:
    """The pickle's variables must be exactly the table's (plus `lod`), with the table's shapes."""
    expected = {v.official: v for v in table}
    have = net.variables
    missing = [f"{v.official} {list(v.shape)}" for v in table if v.official not in have]
    unknown = [
        f"{name} {list(have[name].shape)}"
        for name in have
        if name not in expected and name != LOD_VARIABLE
    ]
    wrong = [
        f"{name} {list(have[name].shape)} (expected {list(v.shape)})"
        for name, v in expected.items()
        if name in have and tuple(have[name].shape) != v.shape
    ]
    problems = [
        f"{label} {_listing(items)}"
        for label, items in (("missing", missing), ("unknown", unknown), ("wrong shape", wrong))
        if items
    ]
    if problems:
        raise UserError(
            f"{file}: {net.label}: its variables are not those of the official "
            f"{net.build_func_name} with these static arguments: " + "; ".join(problems)
        )


def convert(value: np.ndarray, layout: Layout) -> Tensor:
    """One official array -> a float32 CPU tensor in this project's layout (a copy)."""
    t = torch.from_numpy(np.array(value, dtype=np.float32, copy=True))
    if layout == "hwio":
        t = t.permute(3, 2, 0, 1)
    elif layout == "hwoi_flipped":
        t = t.permute(2, 3, 0, 1).flip(2, 3)
    elif layout == "matrix":
        t = t.t()
    return t.contiguous()


def state_dict(net: NetworkState, table: list[Variable], names: Iterable[str]) -> dict[str, Tensor]:
    """The parameters `names` (a stage module's state-dict keys) from the pickle's variables."""
    by_param = {v.param: v for v in table}
    return {
        name: convert(net.variables[by_param[name].official], by_param[name].layout)
        for name in names
    }


def parameter_shapes(table: list[Variable]) -> Mapping[str, tuple[int, ...]]:
    return {v.param: v.param_shape for v in table}


def total_size(table: list[Variable]) -> int:
    """Trainable elements of the official network (`lod` excluded)."""
    return sum(v.size for v in table)


__all__ = [
    "LOD_VARIABLE",
    "MAX_PARAMETERS",
    "Variable",
    "check_parameter_count",
    "check_variables",
    "convert",
    "discriminator_variables",
    "generator_variables",
    "parameter_shapes",
    "state_dict",
    "total_size",
]
