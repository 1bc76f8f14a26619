"""The spec language (spec_version 1): every pydantic model of a spec, in one place.

Numbers from the paper sit on field defaults, named in `progan_dsl.paper` with their source.
Numbers are strict (a bool is not a number, a float is not an int), floats are finite. Every
model derives from `SpecModel` (kinds/base.py), which reports unknown keys with the keys it
allows. Cross-field rules are the named `check_*` functions listed in `RULES` at the bottom; each
returns (key path, message) pairs so that one bad spec reports all its problems at once, each at
its own line. `minibatch_group_problems` is the one owner of the minibatch-stddev batch rule.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from progan_dsl.errors import UserError
from progan_dsl.kinds import LayerBase, get_kind, spec_kind_names
from progan_dsl.kinds.base import SpecModel
from progan_dsl.kinds.builtin import ConvLayer
from progan_dsl.paper import (
    ADA_INTERVAL,
    ADA_SPEED_KIMG,
    ADA_TARGET_SIGN_GAP,
    ADA_TARGET_SIGN_REAL,
    ADAM_BETA1,
    ADAM_BETA2,
    ADAM_EPS,
    ADAM_LR,
    BASE_RESOLUTION,
    CHANNEL_BASE,
    CHANNEL_DECAY,
    CHANNEL_MAX,
    COND_WEIGHT,
    D_REPEATS,
    FADE_KIMG,
    G_EMA_DECAY,
    HE_GAIN,
    IMAGE_CHANNELS,
    LATENT_SIZE,
    LRELU_SLOPE,
    MINIBATCH_REPEATS,
    PIXEL_NORM_EPS,
    R1_GAMMA,
    RGB_KERNEL,
    STABLE_KIMG,
    TO_RGB_GAIN,
    WGAN_DRIFT,
    WGAN_GP_LAMBDA,
    WGAN_GP_TARGET,
)
from progan_dsl.spec.errors import format_loc
from progan_dsl.spec.names import name_problems

SPEC_VERSION = 1

# The longest schedule a spec may ask for, in kimg (per phase and in total): 1e9 images, about 50
# times the longest official run (preset v1: 19,000 kimg). It keeps image counts exact integers
# in float64 and refuses .inf or 1e300, which would overflow the schedule's image arithmetic.
MAX_KIMG = 1_000_000.0

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$", strict=True)]
Resolution = Annotated[StrictInt, Field(ge=1, le=1 << 16)]


class Model(SpecModel):
    """Base of the spec's section models (see `SpecModel`)."""


# ---- layers ----------------------------------------------------------------------------------


def _rule_error(loc: tuple[Any, ...], msg: str, value: Any = None) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("spec_rule", msg),
        loc=loc,
        input=value,  # type: ignore[typeddict-item]
    )


def validate_layer(value: Any) -> LayerBase:
    """Validate one layer mapping against the parameters of its `kind` (the kind registry)."""
    if isinstance(value, LayerBase):
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError("layer_type", "a layer must be a mapping with a 'kind' key")
    names = spec_kind_names()
    kind = value.get("kind")
    if kind is None:
        raise ValidationError.from_exception_data(
            "Layer", [_rule_error(("kind",), f"missing layer kind (one of: {', '.join(names)})")]
        )
    if not isinstance(kind, str) or kind not in names:
        close = difflib.get_close_matches(str(kind), names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValidationError.from_exception_data(
            "Layer",
            [
                _rule_error(
                    ("kind",),
                    f"unknown layer kind {kind!r} ({hint}allowed: {', '.join(names)})",
                    kind,
                )
            ],
        )
    params = get_kind(kind).params
    assert params is not None
    return params.model_validate(value)


Layer = Annotated[
    LayerBase,
    PlainValidator(validate_layer),
    PlainSerializer(lambda layer: layer.model_dump(mode="json"), return_type=dict),
    WithJsonSchema({"type": "object", "x-progan-layer": True}),  # filled in by schema.py
]


def _rgb_default() -> ConvLayer:
    return ConvLayer(kind="conv", kernel=RGB_KERNEL)


# ---- architecture ----------------------------------------------------------------------------


class ChannelRule(Model):
    """The official width rule: nf(stage) = clamp(base / 2**(stage * decay), min, max), where
    stage = 1 at the base resolution and grows by one per doubling."""

    base: StrictInt = Field(
        CHANNEL_BASE, ge=1, le=1 << 20, description="fmap_base (official: 8192)."
    )
    max: StrictInt = Field(CHANNEL_MAX, ge=1, le=65536, description="fmap_max (official: 512).")
    min: StrictInt = Field(1, ge=1, le=65536, description="Lower clamp.")
    decay: StrictFloat = Field(
        CHANNEL_DECAY, gt=0, le=16, description="fmap_decay (official: 1.0)."
    )


class Channels(Model):
    """Channel width per resolution: the official rule or an explicit table (exactly one)."""

    rule: ChannelRule | None = Field(None, description="Width from the official rule.")
    table: dict[Resolution, Annotated[StrictInt, Field(ge=1, le=65536)]] | None = Field(
        None,
        description="Explicit width per resolution (Table 2: 4..32: 512, 64: 256, ... 1024: 16).",
    )

    @model_validator(mode="after")
    def check_exactly_one(self) -> Channels:
        if (self.rule is None) == (self.table is None):
            raise PydanticCustomError("spec_rule", "give exactly one of 'rule' or 'table'")
        return self


class ActivationSpec(Model):
    kind: Literal["lrelu", "relu"] = Field("lrelu", description="Hidden-layer activation.")
    slope: StrictFloat = Field(
        LRELU_SLOPE, ge=0, lt=1, description="Leaky ReLU slope (paper: 0.2)."
    )


class PixelNormSpec(Model):
    """Section 4.2: x / sqrt(mean_c(x^2) + eps) after every conv in G, and on the latent."""

    enabled: StrictBool = Field(True, description="Pixel norm after every G conv (Section 4.2).")
    epsilon: StrictFloat = Field(PIXEL_NORM_EPS, gt=0, lt=1, description="Epsilon (paper: 1e-8).")
    latent: StrictBool = Field(True, description="Normalise the latent vector too (official).")


class GeneratorSpec(Model):
    first_block: list[Layer] = Field(min_length=1, description="Layers at the base resolution.")
    block: list[Layer] = Field(
        min_length=1, description="Template repeated at every higher resolution."
    )
    overrides: dict[Resolution, list[Layer]] = Field(
        default_factory=dict, description="Per-resolution replacement of the block template."
    )
    to_rgb: ConvLayer = Field(
        default_factory=lambda: ConvLayer(
            kind="conv", kernel=RGB_KERNEL, activation="linear", gain=TO_RGB_GAIN
        ),
        description="toRGB: always outputs image_channels (Table 2: Conv 1x1, linear, gain 1).",
    )


class DiscriminatorSpec(Model):
    from_rgb: ConvLayer = Field(
        default_factory=_rgb_default, description="fromRGB (Table 2: Conv 1x1, LReLU)."
    )
    block: list[Layer] = Field(
        min_length=1, description="Template repeated above the base resolution."
    )
    last_block: list[Layer] = Field(min_length=1, description="Layers at the base resolution.")
    overrides: dict[Resolution, list[Layer]] = Field(
        default_factory=dict, description="Per-resolution replacement of the block template."
    )


# The most classes a conditional spec may have: one-hot labels widen G's first dense layer by one
# row per class; 65,536 keeps that layer bounded at any latent size the spec allows.
MAX_CLASSES = 65536


class Conditioning(Model):
    """Class-conditional networks (official `label_size > 0`). Labels are one-hot vectors
    float32 [N, classes] that flow from the dataset to every G and D call."""

    classes: StrictInt = Field(
        ge=2, le=MAX_CLASSES, description="Number of classes (the dataset's labels must match)."
    )
    generator: Literal["concat"] = Field(
        "concat",
        description="How labels enter G. 'concat' (official networks.py G_paper): the one-hot "
        "labels are concatenated to the latent before the latent pixel norm, so G's first "
        "dense layer has latent_size + classes inputs.",
    )
    discriminator: Literal["acgan", "projection"] = Field(
        "acgan",
        description="How D uses labels. 'acgan' (official D_paper; Odena et al. 2017, "
        "auxiliary classifier): D's last dense layer emits 1 + classes outputs, the score and "
        "class logits, and the losses add softmax cross-entropy terms weighted by `weight`. "
        "'projection' (Miyato & Koyama 2018, cGANs with Projection Discriminator): D takes the "
        "labels and adds <embed(y), phi(x)> to the score of its last dense layer.",
    )
    weight: StrictFloat = Field(
        COND_WEIGHT,
        ge=0,
        description="Weight of the class cross-entropy terms (official loss.py cond_weight 1.0); "
        "used with 'acgan'.",
    )


class Architecture(Model):
    latent_size: StrictInt = Field(
        LATENT_SIZE, ge=1, le=65536, description="Latent vector length (Table 2: 512)."
    )
    image_channels: StrictInt = Field(
        IMAGE_CHANNELS, ge=1, le=4, description="Image channels (3 RGB, 1 grayscale)."
    )
    base_shape: tuple[
        Annotated[StrictInt, Field(le=1 << 16)], Annotated[StrictInt, Field(le=1 << 16)]
    ] = Field(
        (BASE_RESOLUTION, BASE_RESOLUTION),
        description="(height, width) of the first stage; 4x4 in the paper, 4x8 gives 2:1 images.",
    )
    final_resolution: Resolution = Field(description="Longer side of the final images.")
    channels: Channels = Field(description="Feature-map widths per resolution.")
    activation: ActivationSpec = Field(default_factory=ActivationSpec)
    gain: StrictFloat = Field(HE_GAIN, gt=0, description="Default He gain (Section 4.1: sqrt(2)).")
    equalized_lr: StrictBool = Field(True, description="Equalized learning rate (Section 4.1).")
    pixel_norm: PixelNormSpec = Field(default_factory=PixelNormSpec)
    fade_in: StrictBool = Field(
        True, description="Smooth fade-in of new blocks (Section 2, Figure 2)."
    )
    fused_scale: StrictBool = Field(
        True,
        description="Fuse upsample+conv into a transposed conv and conv+downsample into a strided "
        "conv (official fused_scale): same maths and parameters, fewer FLOPs.",
    )
    generator: GeneratorSpec
    discriminator: DiscriminatorSpec
    conditioning: Conditioning | None = Field(
        None, description="Class-conditional networks; absent: unconditional."
    )

    @property
    def num_classes(self) -> int:
        """Classes of a conditional spec, 0 for an unconditional one."""
        return self.conditioning.classes if self.conditioning is not None else 0

    # -- derived facts, used by the IR builder and the training schedule --
    @property
    def base_resolution(self) -> int:
        return max(self.base_shape)

    @property
    def resolutions(self) -> list[int]:
        """Ascending resolutions (longer side) from the base to the final one."""
        out, r = [], self.base_resolution
        while r <= self.final_resolution:
            out.append(r)
            r *= 2
        return out

    def spatial(self, resolution: int) -> tuple[int, int]:
        """(H, W) of the maps at a resolution."""
        scale = resolution // self.base_resolution
        return (self.base_shape[0] * scale, self.base_shape[1] * scale)

    @property
    def mbstd_group_size(self) -> int | None:
        """Group size of D's minibatch-stddev layer (None if D has none). The rule
        `check_mbstd_layers_share_one_group_size` makes it one number for all of D."""
        layers = _mbstd_layers(self)
        return int(layers[0][1].group_size) if layers else None  # type: ignore[attr-defined]

    def channels_at(self, resolution: int) -> int:
        if self.channels.table is not None:
            return self.channels.table[resolution]
        rule = self.channels.rule
        assert rule is not None
        stage = int(math.log2(resolution // self.base_resolution)) + 1
        return int(min(max(rule.base / 2 ** (stage * rule.decay), rule.min), rule.max))


# ---- training --------------------------------------------------------------------------------


class WganGpLoss(Model):
    kind: Literal["wgan_gp"] = Field(description="WGAN-GP with drift (paper, Appendix A).")
    gp_lambda: StrictFloat = Field(
        WGAN_GP_LAMBDA, ge=0, description="Gradient penalty weight (10)."
    )
    gp_target: StrictFloat = Field(WGAN_GP_TARGET, gt=0, description="Target gradient norm (1).")
    drift: StrictFloat = Field(
        WGAN_DRIFT, ge=0, description="Drift term epsilon_drift * E[D(x)^2] (0.001)."
    )
    gp_gradient: Literal["full_resolution", "native"] = Field(
        "full_resolution",
        description="Which gradient the penalty measures below the final resolution. "
        "'full_resolution' (official loss.py / train.py): the gradient with respect to the image "
        "nearest-upscaled to the final resolution, as the official networks always run at full "
        "size; its norm is the native norm divided by final/current resolution. 'native': the "
        "gradient with respect to the image at the current resolution (target 1 at every "
        "resolution).",
    )


class LsganLoss(Model):
    kind: Literal["lsgan"] = Field(
        description="Least-squares GAN (paper Section 6.1 also shows it)."
    )


class LogisticLoss(Model):
    kind: Literal["logistic"] = Field(description="Non-saturating logistic loss.")
    r1_gamma: StrictFloat = Field(
        R1_GAMMA, ge=0, description="R1 penalty weight on real images (0 = off)."
    )


Loss = Annotated[WganGpLoss | LsganLoss | LogisticLoss, Field(discriminator="kind")]


class OptimizerSpec(Model):
    kind: Literal["adam"] = "adam"
    lr: StrictFloat = Field(ADAM_LR, gt=0, description="Learning rate (Appendix A: 0.001).")
    beta1: StrictFloat = Field(ADAM_BETA1, ge=0, lt=1, description="Adam beta1 (0).")
    beta2: StrictFloat = Field(ADAM_BETA2, ge=0, lt=1, description="Adam beta2 (0.99).")
    eps: StrictFloat = Field(ADAM_EPS, gt=0, description="Adam epsilon (1e-8).")
    reset_per_phase: StrictBool = Field(
        True,
        description="Reset optimiser state when a phase starts (official reset_opt_for_new_lod).",
    )


Kimg = Annotated[StrictFloat, Field(ge=0, le=MAX_KIMG)]


class ScheduleSpec(Model):
    fade_kimg: Kimg | dict[Resolution, Kimg] = Field(
        float(FADE_KIMG),  # a float: the union would dump an int default as 600, not 600.0
        description="Thousands of images per fade-in phase (paper 800, official 600), or a table.",
    )
    stable_kimg: Kimg | dict[Resolution, Kimg] = Field(
        float(STABLE_KIMG), description="Thousands of images per stabilisation phase, or a table."
    )
    total_kimg: Kimg | None = Field(
        None, description="Total length; the final resolution trains until then (official 12000)."
    )
    minibatch: dict[Resolution, Annotated[StrictInt, Field(ge=1, le=65536)]] = Field(
        description="Global minibatch per resolution (every resolution)."
    )
    learning_rate: dict[Resolution, Annotated[StrictFloat, Field(gt=0)]] = Field(
        default_factory=dict, description="Learning-rate overrides per resolution."
    )

    def kimg(self, which: Literal["fade", "stable"], resolution: int) -> float:
        value = self.fade_kimg if which == "fade" else self.stable_kimg
        if isinstance(value, dict):
            return float(value[resolution])
        return float(value)


class EmaSpec(Model):
    enabled: StrictBool = True
    decay: StrictFloat = Field(
        G_EMA_DECAY, ge=0, lt=1, description="G EMA decay per update (official 0.999)."
    )
    update: Literal["d_step", "g_step"] = Field(
        "d_step",
        description="When G EMA is updated. 'd_step' (official train.py: Gs_update_op runs with "
        "every D_train_op): once per D step, from G as it is before that iteration's G step. "
        "'g_step': once per iteration, after the G step.",
    )


class SnapshotSpec(Model):
    every_kimg: Kimg = Field(100, gt=0, description="Checkpoint interval.")
    keep: StrictInt = Field(3, ge=1, description="Checkpoints kept (oldest deleted).")


MetricName = Literal["swd", "msssim", "fid", "kid"]


def _default_metrics() -> list[MetricName]:
    return ["swd"]


class EvaluationSpec(Model):
    every_kimg: Kimg | None = Field(None, description="Metric interval (none: only at the end).")
    metrics: list[MetricName] = Field(
        default_factory=_default_metrics, description="Metrics to evaluate (swd, msssim, fid, kid)."
    )
    num_images: StrictInt = Field(2048, ge=16, description="Images per metric evaluation.")


class DatasetSpec(Model):
    path: str | None = Field(None, description="Dataset folder made by progan-dataset.")
    mirror: StrictBool = Field(
        False, description="Random horizontal flips (official mirror_augment)."
    )


class GridSpec(Model):
    rows: StrictInt = Field(8, ge=1, le=64)
    cols: StrictInt = Field(8, ge=1, le=64)


AdaTransform = Literal[
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
]
ADA_BGC: tuple[AdaTransform, ...] = (  # ADA's recommended 'bgc' pipeline: blit, geom, color
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
# StyleGAN2-ADA's --augpipe names of the groups this project offers (its 'bgc' is the default)
ADA_PIPES: dict[str, tuple[AdaTransform, ...]] = {
    "blit": ADA_BGC[:3],
    "geom": ADA_BGC[3:7],
    "color": ADA_BGC[7:],
    "bg": ADA_BGC[:7],
    "bgc": ADA_BGC,
}
DiffAugmentPolicy = Literal["color", "translation", "cutout"]
DIFFAUGMENT_ALL: tuple[DiffAugmentPolicy, ...] = ("color", "translation", "cutout")


class AdaAugment(Model):
    kind: Literal["ada"] = Field(
        description="Adaptive discriminator augmentation (Karras et al. 2020): each transform "
        "applied to each image D sees with probability p, p adapted to an overfitting heuristic "
        "or fixed."
    )
    transforms: list[AdaTransform] = Field(
        default_factory=lambda: list(ADA_BGC),
        min_length=1,
        description="Transforms, applied in ADA's order whatever the order here (default: ADA's "
        "'bgc' pipeline, all twelve).",
    )
    p: StrictFloat | None = Field(
        None,
        ge=0,
        le=1,
        description="A fixed probability; none: adapted during training from `heuristic`.",
    )
    initial_p: StrictFloat = Field(0.0, ge=0, le=1, description="p at the start (ADA: 0).")
    heuristic: Literal["sign_gap", "sign_real"] = Field(
        "sign_gap",
        description="Overfitting heuristic p is adapted to. 'sign_gap': E[sign(D(real_i) - "
        "D(fake_i))] over the D steps' reals and fakes paired by index (for WGAN-GP, whose scores "
        "have no meaningful zero). 'sign_real': ADA's r_t = E[sign(D(real))] (for the logistic "
        "loss, whose scores are logits; ADA's target 0.6).",
    )
    target: StrictFloat = Field(
        ADA_TARGET_SIGN_GAP,
        gt=-1,
        lt=1,
        description="Value of the heuristic p is steered to: p rises while the heuristic is above "
        f"it (default: ADA's {ADA_TARGET_SIGN_REAL} for sign_real; {ADA_TARGET_SIGN_GAP} for "
        "sign_gap, ADA's value carried over, not tuned).",
    )
    interval: StrictInt = Field(
        ADA_INTERVAL, ge=1, le=1024, description="D steps between adjustments of p (ADA: 4)."
    )
    speed_kimg: Kimg = Field(
        ADA_SPEED_KIMG,
        gt=0,
        description="Images (kimg) over which p can move from 0 to 1 (ADA: 500).",
    )

    @model_validator(mode="after")
    def default_target_of_the_heuristic(self) -> AdaAugment:
        if "target" not in self.model_fields_set and self.heuristic == "sign_real":
            object.__setattr__(self, "target", ADA_TARGET_SIGN_REAL)
        return self

    def describe(self) -> str:
        names = "all 12 (bgc)" if len(set(self.transforms)) == len(ADA_BGC) else None
        names = names or ", ".join(t for t in ADA_BGC if t in self.transforms)
        if self.p is not None:
            return f"ada, p {self.p:g} fixed, transforms {names}"
        return (
            f"ada, p adaptive from {self.initial_p:g} ({self.heuristic} -> {self.target:g}, "
            f"every {self.interval} D steps, 0 -> 1 in {self.speed_kimg:g} kimg), "
            f"transforms {names}"
        )


class DiffAugmentSpec(Model):
    kind: Literal["diffaugment"] = Field(
        description="Differentiable Augmentation (Zhao et al. 2020): every policy applied to every "
        "image D sees."
    )
    policy: list[DiffAugmentPolicy] = Field(
        default_factory=lambda: list(DIFFAUGMENT_ALL),
        min_length=1,
        description="Policies (DiffAugment's 'color,translation,cutout' by default).",
    )

    def describe(self) -> str:
        return "diffaugment, " + ", ".join(dict.fromkeys(self.policy))


Augment = Annotated[AdaAugment | DiffAugmentSpec, Field(discriminator="kind")]


class TrainingSpec(Model):
    loss: Loss = Field(default_factory=lambda: WganGpLoss(kind="wgan_gp"))
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec
    d_repeats: StrictInt = Field(
        D_REPEATS, ge=1, le=16, description="D steps per G step (official 1)."
    )
    minibatch_repeats: StrictInt = Field(
        MINIBATCH_REPEATS,
        ge=1,
        le=64,
        description="Iterations (d_repeats D steps + one G step) over which the schedule's "
        "position, so the stage, alpha and learning rate, is held constant (official train.py "
        "minibatch_repeats = 4); 1: re-evaluated every iteration.",
    )
    ema: EmaSpec = Field(default_factory=EmaSpec)
    augment: Augment | None = Field(
        None,
        description="Augmentation of every image D sees (reals, fakes, the penalties' inputs), "
        "differentiable so that G learns through it; none: off.",
    )
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 autocast on CUDA.")
    tick_kimg: Kimg = Field(10, gt=0, description="Progress/log/grid interval.")
    snapshot: SnapshotSpec = Field(default_factory=SnapshotSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    grid: GridSpec = Field(default_factory=GridSpec)


# ---- the spec --------------------------------------------------------------------------------

RuleResult = list[tuple[tuple[Any, ...], str]]


class Spec(Model):
    """A ProGAN spec: architecture and training schedule."""

    spec_version: Literal[1] = Field(description="Spec language version (1).")
    name: Identifier = Field(description="Spec name (an identifier: it reaches generated code).")
    description: str = Field("", max_length=2000)
    architecture: Architecture
    training: TrainingSpec

    @model_validator(mode="after")
    def cross_field_rules(self) -> Spec:
        problems: RuleResult = []
        for rule in RULES:
            problems += rule(self)
        if problems:
            raise ValidationError.from_exception_data(
                "Spec", [_rule_error(loc, msg) for loc, msg in problems]
            )
        return self


def _pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def check_resolutions_are_powers_of_two(spec: Spec) -> RuleResult:
    arch = spec.architecture
    out: RuleResult = []
    for i, side in enumerate(arch.base_shape):
        if not _pow2(side) or side < 2:
            out.append((("architecture", "base_shape", i), f"{side} is not a power of two >= 2"))
    if out:
        return out
    base, final = arch.base_resolution, arch.final_resolution
    if final < base or not _pow2(final // base) or final % base:
        out.append(
            (
                ("architecture", "final_resolution"),
                f"{final} is not the base resolution {base} times a power of two "
                f"(allowed: {', '.join(str(base << k) for k in range(9))})",
            )
        )
    return out


def _resolutions(spec: Spec) -> list[int] | None:
    return spec.architecture.resolutions if not check_resolutions_are_powers_of_two(spec) else None


def _table_keys(
    table: dict[int, Any], loc: tuple[Any, ...], res: list[int], *, full: bool
) -> RuleResult:
    out: RuleResult = []
    for key in table:
        if key not in res:
            out.append(
                (loc + (key,), f"{key} is not a resolution of this spec (resolutions: {res})")
            )
    missing = [r for r in res if r not in table]
    if full and missing:
        out.append((loc, f"missing resolutions {missing}: every resolution {res} needs a value"))
    return out


def check_channel_table_covers_resolutions(spec: Spec) -> RuleResult:
    res, table = _resolutions(spec), spec.architecture.channels.table
    if res is None or table is None:
        return []
    return _table_keys(table, ("architecture", "channels", "table"), res, full=True)


def check_channels_do_not_grow(spec: Spec) -> RuleResult:
    res = _resolutions(spec)
    if res is None or check_channel_table_covers_resolutions(spec):
        return []
    arch, out = spec.architecture, []
    for lo, hi in zip(res, res[1:]):
        if arch.channels_at(hi) > arch.channels_at(lo):
            loc = ("architecture", "channels") + (
                ("table", hi) if arch.channels.table else ("rule",)
            )
            out.append(
                (
                    loc,
                    f"channels grow from {arch.channels_at(lo)} at {lo} to "
                    f"{arch.channels_at(hi)} at {hi}; widths must not grow with resolution",
                )
            )
    return out


def check_overrides_name_resolutions(spec: Spec) -> RuleResult:
    res = _resolutions(spec)
    if res is None:
        return []
    out: RuleResult = []
    for net in ("generator", "discriminator"):
        overrides = getattr(spec.architecture, net).overrides
        above_base = res[1:]
        out += _table_keys(overrides, ("architecture", net, "overrides"), above_base, full=False)
    return out


def check_schedule_covers_resolutions(spec: Spec) -> RuleResult:
    res = _resolutions(spec)
    if res is None:
        return []
    sched, loc = spec.training.schedule, ("training", "schedule")
    out = _table_keys(sched.minibatch, loc + ("minibatch",), res, full=True)
    out += _table_keys(sched.learning_rate, loc + ("learning_rate",), res, full=False)
    for key in ("fade_kimg", "stable_kimg"):
        value = getattr(sched, key)
        if isinstance(value, dict):
            need = res[1:] if key == "fade_kimg" else res
            out += _table_keys(value, loc + (key,), need, full=True)
    return out


def check_total_kimg_reaches_final_resolution(spec: Spec) -> RuleResult:
    res = _resolutions(spec)
    sched = spec.training.schedule
    if res is None or sched.total_kimg is None or check_schedule_covers_resolutions(spec):
        return []
    before_final = sum(sched.kimg("stable", r) for r in res[:-1])
    if spec.architecture.fade_in:
        before_final += sum(sched.kimg("fade", r) for r in res[1:])
    if sched.total_kimg < before_final:
        return [
            (
                ("training", "schedule", "total_kimg"),
                f"{sched.total_kimg:g} kimg ends before the final resolution is reached "
                f"({before_final:g} kimg of growing phases come first)",
            )
        ]
    return []


def _mbstd_layers(arch: Architecture) -> list[tuple[tuple[Any, ...], LayerBase]]:
    """D's minibatch-stddev layers with their key paths: last_block first (where the paper puts
    it), then the block template, then the overrides by resolution."""
    d, out = arch.discriminator, []
    lists: list[tuple[tuple[Any, ...], list[LayerBase]]] = [
        (("architecture", "discriminator", "last_block"), d.last_block),
        (("architecture", "discriminator", "block"), d.block),
    ]
    lists += [
        (("architecture", "discriminator", "overrides", r), d.overrides[r])
        for r in sorted(d.overrides)
    ]
    for loc, layers in lists:
        for i, layer in enumerate(layers):
            if layer.kind == "minibatch_stddev":  # type: ignore[attr-defined]
                out.append((loc + (i,), layer))
    return out


def minibatch_group_problems(spec: Spec, world_size: int = 1) -> RuleResult:
    """The minibatch-stddev batch rule, in one place: each resolution's global minibatch must
    split evenly over `world_size` processes, and each process's share must hold whole groups of
    D's minibatch-stddev layer (a group never spans processes, so N processes compute what one
    does). The layer takes min(group_size, batch) samples per group, as the official code does."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    group = spec.architecture.mbstd_group_size
    out: RuleResult = []
    for res, batch in sorted(spec.training.schedule.minibatch.items()):
        loc = ("training", "schedule", "minibatch", res)
        if batch % world_size:
            out.append(
                (loc, f"minibatch {batch} at {res} does not split over {world_size} processes")
            )
        elif group and (batch // world_size) % min(group, batch):
            if world_size == 1:
                out.append(
                    (
                        loc,
                        f"minibatch {batch} is not a multiple of the minibatch-stddev "
                        f"group size {group}",
                    )
                )
            else:
                out.append(
                    (
                        loc,
                        f"minibatch {batch} at {res} over {world_size} processes gives "
                        f"{batch // world_size} per process, not a multiple of the "
                        f"minibatch-stddev group size {min(group, batch)}: groups would "
                        "span processes",
                    )
                )
    return out


def require_whole_groups(spec: Spec, world_size: int) -> None:
    """Raise a `UserError` naming the first resolution whose per-process minibatch does not hold
    whole minibatch-stddev groups (or does not split over `world_size` processes)."""
    problems = minibatch_group_problems(spec, world_size)
    if problems:
        raise UserError(problems[0][1])


def check_mbstd_layers_share_one_group_size(spec: Spec) -> RuleResult:
    layers = _mbstd_layers(spec.architecture)
    out: RuleResult = []
    if not layers:
        return out
    first_loc, first = layers[0]
    for loc, layer in layers[1:]:
        if layer.group_size != first.group_size:  # type: ignore[attr-defined]
            out.append(
                (
                    loc + ("group_size",),
                    f"group_size {layer.group_size} differs from the {first.group_size} of "  # type: ignore[attr-defined]
                    f"{format_loc(first_loc)}: the batch is laid out in groups once, so D's "
                    "minibatch_stddev layers share one group size",
                )
            )
    return out


def check_minibatch_fits_groups(spec: Spec) -> RuleResult:
    return minibatch_group_problems(spec, world_size=1)


def check_layer_names_are_unique_and_free(spec: Spec) -> RuleResult:
    """Node names are unique within a block and not one of the names the IR builder adds
    (`names.RESERVED`): toRGB/fromRGB, the fade-in skip path and the lerp."""
    out: RuleResult = []
    for net, first_key in (("generator", "first_block"), ("discriminator", "last_block")):
        net_spec = getattr(spec.architecture, net)
        lists = [(first_key, getattr(net_spec, first_key)), ("block", net_spec.block)]
        for key, layers in lists:
            out += [(("architecture", net, key) + loc, msg) for loc, msg in name_problems(layers)]
        for res in sorted(net_spec.overrides):
            base = ("architecture", net, "overrides", res)
            out += [(base + loc, msg) for loc, msg in name_problems(net_spec.overrides[res])]
    return out


def check_rgb_layers_have_no_out(spec: Spec) -> RuleResult:
    out: RuleResult = []
    for net, key in (("generator", "to_rgb"), ("discriminator", "from_rgb")):
        layer = getattr(getattr(spec.architecture, net), key)
        if "out" in layer.model_fields_set and not (key == "from_rgb" and layer.out == "this"):
            what = "image_channels" if key == "to_rgb" else "the block's channels"
            out.append(
                (("architecture", net, key, "out"), f"{key} always outputs {what}; remove 'out'")
            )
    return out


RULES: list[Callable[[Spec], RuleResult]] = [
    check_layer_names_are_unique_and_free,
    check_resolutions_are_powers_of_two,
    check_channel_table_covers_resolutions,
    check_channels_do_not_grow,
    check_overrides_name_resolutions,
    check_schedule_covers_resolutions,
    check_total_kimg_reaches_final_resolution,
    check_mbstd_layers_share_one_group_size,
    check_minibatch_fits_groups,
    check_rgb_layers_have_no_out,
]
