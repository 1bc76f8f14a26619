"""The official networks' static arguments -> a progan-dsl spec that compiles to the same networks.

Owns: reading `static_kwargs` of G_paper / D_paper (tkarras/progressive_growing_of_gans
networks.py) with the official defaults, refusing what the spec language cannot express (each
refusal names the argument), the width rule nf(stage), the growth stage that the `lod` variable
names, and the spec text the importer writes.

Official semantics that the spec reproduces (networks.py):
- widths nf(stage) = min(int(fmap_base / 2**(stage * fmap_decay)), fmap_max); the block at
  2**k x 2**k has nf(k - 1) maps, D's first dense layer nf(0) outputs;
- G: optional pixel norm of the latent, a dense layer (gain sqrt(2)/4) reshaped to [nf(1), 4, 4],
  a 3x3 conv, then per resolution upsample + conv + conv (`Conv0_up` fused when fused_scale),
  act = leaky ReLU 0.2 (ReLU with use_leakyrelu=False), pixel norm after every activation,
  linear 1x1 toRGB (gain 1);
- D: leaky-ReLU 1x1 fromRGB, per resolution conv + conv + 2x2 average pooling: fused
  (`Conv1_down`) it pools before bias and activation, unfused it pools after them; at 4x4 the
  minibatch stddev layer (when mbstd_group_size > 1), a 3x3 conv, a dense layer and a linear
  dense output (gain 1);
- use_wscale: weights stored N(0, 1) and scaled by gain / sqrt(fan_in) at run time;
- label_size > 0 (class-conditional, official AC-GAN): G concatenates the one-hot labels to the
  latent before the latent pixel norm (`combo_in`), so its dense layer has latent_size +
  label_size inputs; D's last dense layer emits 1 + label_size features, the score then the
  class logits. The spec says `conditioning: {classes: label_size}` (generator concat,
  discriminator acgan, weight 1.0: loss.py cond_weight).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from progan_dsl import paper
from progan_dsl.errors import UserError
from progan_dsl.pretrained.unpickle import NetworkState, OfficialPickle
from progan_dsl.spec.models import MAX_CLASSES

# Official G_paper / D_paper signature defaults (networks.py): what a missing argument means.
G_PAPER_DEFAULTS: dict[str, Any] = {
    "num_channels": 1,
    "resolution": 32,
    "label_size": 0,
    "fmap_base": paper.CHANNEL_BASE,
    "fmap_decay": paper.CHANNEL_DECAY,
    "fmap_max": paper.CHANNEL_MAX,
    "latent_size": None,  # None = nf(0)
    "normalize_latents": True,
    "use_wscale": True,
    "use_pixelnorm": True,
    "pixelnorm_epsilon": paper.PIXEL_NORM_EPS,
    "use_leakyrelu": True,
    "dtype": "float32",
    "fused_scale": True,
}
D_PAPER_DEFAULTS: dict[str, Any] = {
    "num_channels": 1,
    "resolution": 32,
    "label_size": 0,
    "fmap_base": paper.CHANNEL_BASE,
    "fmap_decay": paper.CHANNEL_DECAY,
    "fmap_max": paper.CHANNEL_MAX,
    "use_wscale": True,
    "mbstd_group_size": paper.MBSTD_GROUP,  # 0 or 1 = no minibatch stddev layer
    "dtype": "float32",
    "fused_scale": True,
}
# Arguments the official build functions accept without changing the maths.
IGNORED = {
    "structure": "graph layout only ('linear' and 'recursive' compute the same images)",
    "is_template_graph": "template graph vs evaluation graph, same variables",
}
# legacy.py (Theano import) gives both networks mbstd_group_size; G_paper ignores it.
IGNORED_BY_G = {"mbstd_group_size": "a discriminator argument (G_paper ignores it)"}
# Theano-era arguments (original-theano-version network.py) that the TF build functions ignore:
# importable only at their harmless value.
THEANO_ONLY_G: dict[str, tuple[Any, str]] = {
    "use_batchnorm": (False, "batch normalisation"),
    "tanh_at_end": (None, "a tanh output layer"),
}
THEANO_ONLY_D: dict[str, tuple[Any, str]] = {
    "use_layernorm": (False, "layer normalisation"),
    "mbdisc_kernels": (None, "minibatch discrimination"),
}
DTYPES = ("float32", "float16")  # official dtype choices; the weights are float32 either way
BUILD_FUNCS = {"G": "G_paper", "D": "D_paper", "Gs": "G_paper"}  # official config.py G / D func

# The official 4x4 dense layer of G: gain sqrt(2)/4 "to match the original Theano implementation".
G_DENSE_GAIN = math.sqrt(2.0) / 4.0
# Official config.py preset-v2-1gpu: minibatch per resolution, minibatch_base for the others, and
# the learning-rate dict (used by the spec's training section, for fine-tuning).
OFFICIAL_MINIBATCH = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4}
OFFICIAL_MINIBATCH_BASE = 4
OFFICIAL_LEARNING_RATE = {1024: 0.0015}
# progan-dsl's choice, not official: an imported run trains its stage for one official
# stabilisation phase (600 kimg) unless --kimg or the spec says otherwise.
FINETUNE_KIMG = paper.STABLE_KIMG
SPEC_NAME_MAX = 64  # the spec language's identifier length
MAX_IMAGE_CHANNELS = 4  # the spec language's architecture.image_channels limit
MAX_MBSTD_GROUP = 256  # the spec language's minibatch_stddev.group_size limit


@dataclass(frozen=True)
class GeneratorArgs:
    """The G_paper arguments that decide G's maths (defaults resolved)."""

    num_channels: int
    resolution: int
    label_size: int
    fmap_base: float
    fmap_decay: float
    fmap_max: int
    latent_size: int  # resolved: None -> nf(0)
    normalize_latents: bool
    use_wscale: bool
    use_pixelnorm: bool
    pixelnorm_epsilon: float
    use_leakyrelu: bool
    dtype: str
    fused_scale: bool


@dataclass(frozen=True)
class DiscriminatorArgs:
    """The D_paper arguments that decide D's maths (defaults resolved)."""

    num_channels: int
    resolution: int
    label_size: int
    fmap_base: float
    fmap_decay: float
    fmap_max: int
    use_wscale: bool
    mbstd_group_size: int
    dtype: str
    fused_scale: bool


def nf(stage: int, fmap_base: float, fmap_decay: float, fmap_max: int) -> int:
    """Official width rule (networks.py nf)."""
    return min(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_max)


# ---- reading static_kwargs ---------------------------------------------------------------------


class _Reader:
    def __init__(self, net: NetworkState, file: str) -> None:
        self.net, self.where = net, f"{file}: {net.label}"

    def fail(self, key: str, value: Any, need: str) -> UserError:
        return UserError(f"{self.where}: static argument {key}={value!r}: {need}")

    def integer(self, key: str, value: Any, low: int) -> int:
        ok = isinstance(value, (numbers.Integral, np.integer)) and not isinstance(
            value, (bool, np.bool_)
        )
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            ok, value = True, int(value)
        if not ok or int(value) < low:
            raise self.fail(key, value, f"must be an integer >= {low}")
        return int(value)

    def number(self, key: str, value: Any, *, positive: bool = True) -> float:
        ok = isinstance(value, (numbers.Real, np.integer, np.floating)) and not isinstance(
            value, (bool, np.bool_)
        )
        if not ok or not math.isfinite(float(value)) or (positive and float(value) <= 0):
            raise self.fail(
                key, value, "must be a finite number > 0" if positive else "must be a finite number"
            )
        return float(value)

    def flag(self, key: str, value: Any) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            raise self.fail(key, value, "must be True or False")
        return bool(value)

    def check_keys(
        self,
        used: Mapping[str, Any],
        ignored: Mapping[str, str],
        theano: Mapping[str, tuple[Any, str]],
    ) -> None:
        for key, value in self.net.static_kwargs.items():
            if key in used or key in ignored:
                continue
            if key in theano:
                harmless, what = theano[key]
                if value == harmless or (harmless is False and value is None):
                    continue
                raise self.fail(
                    key,
                    value,
                    f"{what} is not in the spec language (and the official "
                    f"TensorFlow {self.net.build_func_name} ignores this argument, so "
                    "the network would not run as it was trained); cannot import",
                )
            known = sorted(set(used) | set(ignored) | set(theano))
            raise UserError(
                f"{self.where}: unknown static argument {key!r}={value!r} (the official "
                f"{self.net.build_func_name} takes: {', '.join(known)}); the pickle may "
                "come from modified code, cannot import"
            )

    def common(self, kw: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "num_channels": self.integer("num_channels", kw["num_channels"], 1),
            "resolution": self.integer("resolution", kw["resolution"], 4),
            "label_size": self.integer("label_size", kw["label_size"], 0),
            "fmap_base": self.number("fmap_base", kw["fmap_base"]),
            "fmap_decay": self.number("fmap_decay", kw["fmap_decay"], positive=False),
            "fmap_max": self.integer("fmap_max", kw["fmap_max"], 1),
            "use_wscale": self.flag("use_wscale", kw["use_wscale"]),
            "fused_scale": self.flag("fused_scale", kw["fused_scale"]),
        }
        res = out["resolution"]
        if out["fmap_decay"] < 0:
            raise self.fail(
                "fmap_decay",
                out["fmap_decay"],
                "must be >= 0 (widths must not grow with resolution)",
            )
        if out["num_channels"] > MAX_IMAGE_CHANNELS:
            raise self.fail(
                "num_channels",
                out["num_channels"],
                f"the spec language allows 1..{MAX_IMAGE_CHANNELS} image channels",
            )
        if res & (res - 1):
            raise self.fail(
                "resolution", res, "must be a power of two >= 4 (official G_paper/D_paper)"
            )
        if kw["dtype"] not in DTYPES:
            raise self.fail("dtype", kw["dtype"], f"must be one of {', '.join(DTYPES)}")
        out["dtype"] = str(kw["dtype"])
        labels = out["label_size"]
        if labels == 1 or labels > MAX_CLASSES:
            raise self.fail(
                "label_size",
                labels,
                f"the spec language conditions on 2..{MAX_CLASSES} classes given as one-hot "
                "labels (label_size 0: unconditional); a single label component (official "
                "'-cond1') cannot be imported",
            )
        return out


def _check_func(net: NetworkState, file: str) -> None:
    want = BUILD_FUNCS[net.role]
    if net.build_func_name != want:
        raise UserError(
            f"{file}: {net.label}: build function {net.build_func_name!r} is not "
            f"supported (the {net.role} network must be the official {want})"
        )


def generator_args(net: NetworkState, file: str) -> GeneratorArgs:
    _check_func(net, file)
    r = _Reader(net, file)
    r.check_keys(G_PAPER_DEFAULTS, IGNORED | IGNORED_BY_G, THEANO_ONLY_G)
    kw = G_PAPER_DEFAULTS | dict(net.static_kwargs)
    out = r.common(kw)
    latent = kw["latent_size"]
    if latent is None:
        latent = nf(0, out["fmap_base"], out["fmap_decay"], out["fmap_max"])
    return GeneratorArgs(
        **out,
        latent_size=r.integer("latent_size", latent, 1),
        normalize_latents=r.flag("normalize_latents", kw["normalize_latents"]),
        use_pixelnorm=r.flag("use_pixelnorm", kw["use_pixelnorm"]),
        pixelnorm_epsilon=r.number("pixelnorm_epsilon", kw["pixelnorm_epsilon"]),
        use_leakyrelu=r.flag("use_leakyrelu", kw["use_leakyrelu"]),
    )


def discriminator_args(net: NetworkState, file: str) -> DiscriminatorArgs:
    _check_func(net, file)
    r = _Reader(net, file)
    r.check_keys(D_PAPER_DEFAULTS, IGNORED, THEANO_ONLY_D)
    kw = D_PAPER_DEFAULTS | dict(net.static_kwargs)
    out = r.common(kw)
    group = r.integer("mbstd_group_size", kw["mbstd_group_size"], 0)
    if group > MAX_MBSTD_GROUP:
        raise r.fail(
            "mbstd_group_size", group, f"the spec language allows groups of up to {MAX_MBSTD_GROUP}"
        )
    return DiscriminatorArgs(**out, mbstd_group_size=group)


# ---- the pair ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfficialNetworks:
    """G (and Gs, its EMA copy, built from the same arguments) and D of one pickle."""

    G: GeneratorArgs
    D: DiscriminatorArgs
    lod: float  # the level of detail the networks were at (0 = final resolution)

    @property
    def resolution_log2(self) -> int:
        return int(self.G.resolution).bit_length() - 1

    @property
    def resolutions(self) -> list[int]:
        return [2**k for k in range(2, self.resolution_log2 + 1)]

    def nf(self, stage: int) -> int:
        return nf(stage, self.G.fmap_base, self.G.fmap_decay, self.G.fmap_max)

    def channels(self, resolution: int) -> int:
        """Width of the block at `resolution` (official nf(log2(resolution) - 1))."""
        return self.nf(int(resolution).bit_length() - 2)

    @property
    def stage_resolution(self) -> int:
        """The resolution whose stable stage `lod` names (lod 0: the final one)."""
        return self.G.resolution >> int(self.lod)

    @property
    def fused(self) -> bool:
        """The spec's fused_scale: on when either network fused (the maths is the same either
        way; D's pooling order is set per layer by `takes_activation`)."""
        return self.G.fused_scale or self.D.fused_scale


SHARED = ("num_channels", "resolution", "label_size", "fmap_base", "fmap_decay", "fmap_max")


# The largest networks progan-import builds, checked on the typed static arguments before any
# width table, network or tensor is made from them (a hostile pickle may describe any size; the
# parameter count is checked against the variable tables, `weights.check_parameter_count`).
MAX_RESOLUTION = 4096  # 4x the largest official network (CelebA-HQ, 1024x1024)
MAX_CHANNELS = 4096  # feature maps of any layer, and latent_size: 8x the official fmap_max 512
MAX_FMAP_DECAY = 16.0  # the spec language's channel-rule limit (official 1.0); keeps nf() finite


def check_size(file: str, args: Mapping[str, GeneratorArgs | DiscriminatorArgs]) -> None:
    """Refuse networks beyond the bounds above; `args`: network label -> its arguments."""
    for label, a in args.items():
        where = f"{file}: {label}: static argument"
        if a.resolution > MAX_RESOLUTION:
            raise UserError(
                f"{where} resolution={a.resolution}: progan-import builds networks of up to "
                f"{MAX_RESOLUTION}x{MAX_RESOLUTION} (the official ones are at most 1024x1024)"
            )
        if a.fmap_decay > MAX_FMAP_DECAY:
            raise UserError(
                f"{where} fmap_decay={a.fmap_decay:g}: at most {MAX_FMAP_DECAY:g} (official 1.0)"
            )
        if isinstance(a, GeneratorArgs) and a.latent_size > MAX_CHANNELS:
            raise UserError(
                f"{where} latent_size={a.latent_size}: at most {MAX_CHANNELS} (official 512)"
            )
        stages = range(int(a.resolution).bit_length() - 1)  # nf(0) .. nf(log2(resolution) - 1)
        widest = max(nf(k, a.fmap_base, a.fmap_decay, a.fmap_max) for k in stages)
        if widest > MAX_CHANNELS:
            raise UserError(
                f"{file}: {label}: fmap_base={a.fmap_base:g}, fmap_decay={a.fmap_decay:g}, "
                f"fmap_max={a.fmap_max} give layers of {widest:,} feature maps; progan-import "
                f"builds layers of up to {MAX_CHANNELS} (the official networks: 512)"
            )


def official_networks(pkl: OfficialPickle) -> OfficialNetworks:
    """Typed, checked arguments of the pickle's networks and their stage (`UserError` if the spec
    language cannot express them)."""
    file = str(pkl.path)
    G = generator_args(pkl.G, file)
    Gs = generator_args(pkl.Gs, file)
    D = discriminator_args(pkl.D, file)
    check_size(file, {pkl.G.label: G, pkl.Gs.label: Gs, pkl.D.label: D})
    for f in fields(GeneratorArgs):
        if getattr(G, f.name) != getattr(Gs, f.name):
            raise UserError(
                f"{file}: G has {f.name}={getattr(G, f.name)!r} but Gs has "
                f"{getattr(Gs, f.name)!r}; Gs must be a copy of G (official train.py "
                "G.clone('Gs'))"
            )
    for key in SHARED:
        if getattr(G, key) != getattr(D, key):
            raise UserError(
                f"{file}: G has {key}={getattr(G, key)!r} but D has {getattr(D, key)!r}; "
                "one spec describes both networks with one resolution and width table"
            )
    lod = _lod(pkl, G.resolution)
    nets = OfficialNetworks(G=G, D=D, lod=lod)
    for res in nets.resolutions + [1]:
        width = nets.nf(0) if res == 1 else nets.channels(res)
        if width < 1:
            where = "D's 4x4 dense layer" if res == 1 else f"resolution {res}"
            raise UserError(
                f"{file}: fmap_base={G.fmap_base:g}, fmap_decay={G.fmap_decay:g}, "
                f"fmap_max={G.fmap_max} give no feature maps at {where}"
            )
    return nets


def _lod(pkl: OfficialPickle, resolution: int) -> float:
    """The `lod` variable: equal in all three networks (Gs copies G's), a whole number."""
    values = {}
    for net in pkl.networks:
        raw = net.variables.get("lod")
        if raw is None or raw.size != 1:
            raise UserError(
                f"{pkl.path}: {net.label} has no scalar variable 'lod' (official "
                "G_paper/D_paper create one)"
            )
        values[net.role] = float(raw.reshape(()))
    lod = values["G"]
    if any(v != lod for v in values.values()):
        shown = ", ".join(f"{k} {v:g}" for k, v in values.items())
        raise UserError(
            f"{pkl.path}: the networks disagree on lod ({shown}); they must have been "
            "saved at one point of training"
        )
    max_lod = int(resolution).bit_length() - 3  # log2(resolution) - 2
    if not 0 <= lod <= max_lod:
        raise UserError(
            f"{pkl.path}: lod {lod:g} is outside 0..{max_lod}, the levels of a {resolution}x"
            f"{resolution} network (lod 0: {resolution}x{resolution}, lod {max_lod}: 4x4)"
        )
    if not float(lod).is_integer():
        raise UserError(
            f"{pkl.path}: lod {lod:g}: the networks were saved during a fade-in (between two "
            f"resolutions); only whole lods 0..{max_lod} (stable stages) can be imported. "
            "Released final networks have lod 0."
        )
    return lod


# ---- the spec text ---------------------------------------------------------------------------


def spec_name(stem: str) -> str:
    """A spec name (identifier) from a file name: karras2018iclr-celebahq-1024x1024 ->
    karras2018iclr_celebahq_1024x1024."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_")
    if not name or not name[0].isalpha():
        name = f"imported_{name}".rstrip("_")
    return name[:SPEC_NAME_MAX]


def yaml_float(x: float) -> str:
    """A float as YAML 1.1 reads it back exactly (PyYAML needs a dot in the mantissa)."""
    text = repr(float(x))
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return text


def _minibatch(resolution: int, group: int) -> int:
    batch = OFFICIAL_MINIBATCH.get(resolution, OFFICIAL_MINIBATCH_BASE)
    if group > 1 and batch > group and batch % group:
        batch = -(-batch // group) * group  # the spec needs whole minibatch-stddev groups
    return batch


def _channels_yaml(nets: OfficialNetworks, *, table: bool) -> str:
    G = nets.G
    if table:
        rows = ", ".join(f"{r}: {nets.channels(r)}" for r in nets.resolutions)
        return (
            f"    table: {{{rows}}}\n"
            f"    # official nf(stage) = min(int(fmap_base / 2**(stage * fmap_decay)), fmap_max) "
            f"with fmap_base={G.fmap_base:g}, fmap_decay={G.fmap_decay:g}, fmap_max={G.fmap_max}\n"
        )
    return (
        f"    rule: {{base: {int(G.fmap_base)}, max: {G.fmap_max}, "
        f"decay: {yaml_float(G.fmap_decay)}}}"
        "   # fmap_base, fmap_max, fmap_decay\n"
    )


COMMENT_COLUMN = 40  # where the spec text's trailing comments start


def _align_comments(text: str) -> str:
    """Trailing comments (after code, at least two spaces before the #) start at one column."""
    lines = []
    for line in text.splitlines():
        code, sep, comment = line.partition("  # ")
        if sep and code.strip() and not code.lstrip().startswith("#"):
            line = f"{code.rstrip():<{COMMENT_COLUMN - 2}}  # {comment.strip()}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def rule_expressible(nets: OfficialNetworks) -> bool:
    """Whether the spec's channel rule can carry the official arguments (else: a table)."""
    G = nets.G
    return float(G.fmap_base).is_integer() and G.fmap_decay > 0


def spec_text(nets: OfficialNetworks, *, name: str, source: str, sha256: str, table: bool) -> str:
    """The spec of the pickle's networks (G and Gs share it) with a fine-tuning schedule that
    starts at the networks' own stage."""
    G, D = nets.G, nets.D
    act = ", activation: relu" if not G.use_leakyrelu else ""
    act_note = "; ReLU in G (use_leakyrelu=False)" if act else ""
    mbstd = (
        f"      - {{kind: minibatch_stddev, group_size: {D.mbstd_group_size}}}"
        "   # mbstd_group_size\n"
        if D.mbstd_group_size > 1
        else "      # no minibatch stddev layer (mbstd_group_size <= 1)\n"
    )
    down = (
        "fused Conv1_down: pool, then bias and activation"
        if D.fused_scale
        else "unfused Conv1 + downscale2d: activation, then pool"
    )
    up = "Conv0_up (fused)" if G.fused_scale else "upscale2d + Conv0"
    K = G.label_size
    cond = (
        f"  conditioning: {{classes: {K}}}   # label_size: G concat, D acgan (1 + {K} outputs)\n"
        if K
        else ""
    )
    classes = f", {K} classes" if K else ""
    res, stage_res = nets.resolutions, nets.stage_resolution
    group = D.mbstd_group_size
    minibatch = ", ".join(f"{r}: {_minibatch(r, group)}" for r in res)
    rates = {r: v for r, v in OFFICIAL_LEARNING_RATE.items() if r in res}
    lr = (
        (
            "    learning_rate: {" + ", ".join(f"{r}: {v}" for r, v in rates.items()) + "}"
            "   # official preset-v2-1gpu G_lrate_dict\n"
        )
        if rates
        else ""
    )
    if stage_res == G.resolution:
        sched = (
            f"    fade_kimg: 0                 # imported at the final resolution (lod 0): "
            f"no growing\n"
            f"    stable_kimg: 0\n"
            f"    total_kimg: {FINETUNE_KIMG}              "
            f"# fine-tuning length (progan-dsl's choice)\n"
        )
    else:
        later = [r for r in res if r > stage_res]
        fade = ", ".join(f"{r}: {paper.FADE_KIMG if r in later else 0}" for r in res[1:])
        stable = ", ".join(f"{r}: {paper.STABLE_KIMG if r >= stage_res else 0}" for r in res)
        total = paper.STABLE_KIMG * (1 + len(later)) + paper.FADE_KIMG * len(later)
        sched = (
            f"    fade_kimg: {{{fade}}}   # growth resumes at {stage_res} (lod {nets.lod:g})\n"
            f"    stable_kimg: {{{stable}}}\n"
            f"    total_kimg: {total}\n"
        )
    return _align_comments(f"""\
# Imported by progan-import from {source} (sha256 {sha256[:16]}): NVIDIA's pretrained ProGAN
# networks (tkarras/progressive_growing_of_gans, {G.dtype} G_paper / D_paper) rebuilt from the
# pickle's static arguments; the weights are in the checkpoint beside this file (G, D and
# G_ema = the pickle's Gs). Nothing from the pickle was executed.
spec_version: 1
name: {name}
description: >
  NVIDIA's pretrained ProGAN networks from {source}: {G.resolution}x{G.resolution},
  {G.num_channels} channels, latent {G.latent_size}{classes}, imported at stage {stage_res} \
(lod {nets.lod:g}).

architecture:
  latent_size: {G.latent_size}
  image_channels: {G.num_channels}                  # num_channels
  base_shape: [4, 4]
  final_resolution: {G.resolution}              # resolution
  channels:
{_channels_yaml(nets, table=table)}\
  activation: {{kind: lrelu, slope: {paper.LRELU_SLOPE}}}   # official leaky_relu(alpha=0.2)
  equalized_lr: {str(G.use_wscale).lower()}                  # use_wscale
  pixel_norm: {{enabled: {str(G.use_pixelnorm).lower()}, \
epsilon: {yaml_float(G.pixelnorm_epsilon)}, latent: {str(G.normalize_latents).lower()}}}\
   # use_pixelnorm, pixelnorm_epsilon, normalize_latents
  fade_in: true
  fused_scale: {str(nets.fused).lower()}                   # G fused_scale={G.fused_scale}, \
D fused_scale={D.fused_scale}
{cond}
  generator:
    first_block:                       # 4x4/Dense, 4x4/Conv
      - {{kind: project, gain: {G_DENSE_GAIN!r}{act}}}   # official dense gain sqrt(2)/4{act_note}
      - {{kind: conv, kernel: 3{act}}}
    block:                             # {up}, Conv1
      - {{kind: upsample}}
      - {{kind: conv, kernel: 3{act}}}
      - {{kind: conv, kernel: 3{act}}}
    to_rgb: {{kind: conv, kernel: 1, activation: linear, gain: {paper.TO_RGB_GAIN}}}   # ToRGB_lod*

  discriminator:
    from_rgb: {{kind: conv, kernel: 1}}   # FromRGB_lod*
    block:                             # Conv0, then {down}
      - {{kind: conv, kernel: 3}}
      - {{kind: conv, kernel: 3, out: lower}}
      - {{kind: downsample, takes_activation: {str(D.fused_scale).lower()}}}
    last_block:                        # 4x4: Conv, Dense0, Dense1
{mbstd}\
      - {{kind: conv, kernel: 3}}
      - {{kind: dense, out: {nets.nf(0)}}}
      - {{kind: dense, out: 1, activation: linear, gain: 1.0}}

training:
  loss: {{kind: wgan_gp}}               # official loss.py D_wgangp_acgan defaults
  schedule:
{sched}\
    minibatch: {{{minibatch}}}   # official preset-v2-1gpu
{lr}\
""")


__all__ = [
    "D_PAPER_DEFAULTS",
    "G_PAPER_DEFAULTS",
    "DiscriminatorArgs",
    "GeneratorArgs",
    "OfficialNetworks",
    "discriminator_args",
    "generator_args",
    "nf",
    "official_networks",
    "rule_expressible",
    "spec_name",
    "spec_text",
    "yaml_float",
]
