"""Mutation test of the spec front end: well over 150 broken specs, made programmatically from
the shipped ones, each a located `SpecError` with the expected line, column and message, and
through `progan-compile` (in-process) exit code 2 without a traceback.

A text mutation replaces one piece of a shipped spec; `⟨` in the replacement marks where the
error must point (the key of a mapping entry, the item of a list, the offending character), so
every expected line:col is read off the mutated text, not from the code under test. `extends`
cases are small file trees; `--set` cases go through `load_spec(overrides=...)` only, since the
CLI flag is wired by the lead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from progan_dsl.cli import compile_main
from progan_dsl.spec import SpecError, load_spec
from progan_dsl.spec.models import MAX_KIMG
from progan_dsl.spec.names import RESERVED
from progan_dsl.spec.source import MAX_DEPTH
from tests.conftest import SPECS, TINY

MARK = "⟨"
BASES = {
    "tiny": TINY.read_text(),
    "mnist": (SPECS / "mnist_32.yaml").read_text(),
    "celeba": (SPECS / "celebahq_1024.yaml").read_text(),
}


@dataclass(frozen=True)
class Case:
    id: str
    base: str
    old: str
    new: str  # contains MARK where the error points
    fragment: str
    nth: int | None = None  # which occurrence of `old` (None: it must be unique)
    check_col: bool = True
    encoding: str | None = None  # write the mutated text as bytes in this encoding

    def text(self) -> tuple[str, int, int]:
        """The mutated text and the (line, col) of the marker."""
        src = BASES[self.base]
        if self.nth is None:
            assert src.count(self.old) == 1, f"{self.id}: {self.old!r} is not unique"
            at = src.index(self.old)
        else:
            at = -1
            for _ in range(self.nth + 1):
                at = src.index(self.old, at + 1)
        assert MARK in self.new, self.id
        mutated = src[:at] + self.new + src[at + len(self.old) :]
        pos = mutated.index(MARK)
        line = mutated.count("\n", 0, pos) + 1
        col = pos - (mutated.rfind("\n", 0, pos) + 1) + 1
        return mutated.replace(MARK, "", 1), line, col


CASES: list[Case] = []


def case(id: str, old: str, new: str, fragment: str, base: str = "tiny", **kw: object) -> None:
    CASES.append(Case(id, base, old, new, fragment, **kw))  # type: ignore[arg-type]


# ---- A. wrong types (a bool is not a number, a float is not an int, ...) -----------------------
INT_FIELDS = [  # (id, old, new with {v})
    ("latent_size", "  latent_size: 16", "  ⟨latent_size: {v}"),
    ("image_channels", "  image_channels: 1", "  ⟨image_channels: {v}"),
    ("final_resolution", "  final_resolution: 16", "  ⟨final_resolution: {v}"),
    ("minibatch_entry", "minibatch: {4: 16, 8: 16, 16: 8}", "minibatch: {4: 16, ⟨8: {v}, 16: 8}"),
    ("channel_entry", "table: {4: 16, 8: 12, 16: 8}", "table: {4: 16, ⟨8: {v}, 16: 8}"),
    ("grid_rows", "grid: {rows: 4, cols: 4}", "grid: {⟨rows: {v}, cols: 4}"),
    ("snapshot_keep", "keep: 2}", "⟨keep: {v}}"),
    ("num_images", "num_images: 64}", "⟨num_images: {v}}"),
    ("group_size", "group_size: 4}", "⟨group_size: {v}}"),
]
for name, old, new in INT_FIELDS:
    for tag, value in (("bool", "true"), ("float", "1.5"), ("str", "abc"), ("list", "[1]")):
        case(f"int_{name}_{tag}", old, new.replace("{v}", value), "input should be a valid integer")
for tag, value in (("bool", "true"), ("str", "abc"), ("float", "2.5")):
    case(
        f"channel_ref_{tag}",
        "{kind: dense, out: 16}",
        "{kind: dense, ⟨out: " + value + "}",
        "input should be 'this' or 'lower'",
    )

FLOAT_FIELDS = [
    ("fade_kimg", "    fade_kimg: 0.064", "    ⟨fade_kimg: {v}"),
    ("total_kimg", "    total_kimg: 0.384", "    ⟨total_kimg: {v}"),
    ("tick_kimg", "  tick_kimg: 0.064", "  ⟨tick_kimg: {v}"),
    ("project_gain", "{kind: project, gain: 0.3535533905932738}", "{kind: project, ⟨gain: {v}}"),
    ("dense_gain", "activation: linear, gain: 1.0}", "activation: linear, ⟨gain: {v}}"),
]
for name, old, new in FLOAT_FIELDS:
    for tag, value in (("bool", "true"), ("str", "abc"), ("list", "[1]")):
        case(
            f"float_{name}_{tag}", old, new.replace("{v}", value), "input should be a valid number"
        )

BOOL_FIELDS = [
    ("equalized_lr", "  equalized_lr: true ", "  ⟨equalized_lr: {v} "),
    ("fade_in", "  fade_in: true", "  ⟨fade_in: {v}"),
    ("fused_scale", "  fused_scale: true ", "  ⟨fused_scale: {v} "),
    ("pixel_norm_latent", "latent: true}", "⟨latent: {v}}"),
    ("mirror", "mirror: true}", "⟨mirror: {v}}"),
]
for name, old, new in BOOL_FIELDS:
    for tag, value in (("int", "1"), ("str", "abc"), ("float", "0.0")):
        case(
            f"bool_{name}_{tag}",
            old,
            new.replace("{v}", value),
            "input should be a valid boolean",
            base="celeba",
        )

case("name_int", "name: tiny", "⟨name: 5", "input should be a valid string")
case("name_list", "name: tiny", "⟨name: [tiny]", "input should be a valid string")
case("name_not_identifier", "name: tiny", "⟨name: 9tiny", "is not an identifier")
case(
    "precision_unknown",
    "  precision: fp32",
    "  ⟨precision: fp64",
    "input should be 'fp32' or 'bf16'",
    base="mnist",
)
case(
    "activation_unknown",
    "{kind: dense, out: 1, activation: linear",
    "{kind: dense, out: 1, ⟨activation: sigmoid",
    "input should be 'lrelu', 'relu' or 'linear'",
)
case(
    "metric_unknown",
    "metrics: [swd]",
    "metrics: [⟨isc]",
    "input should be 'swd', 'msssim', 'fid' or 'kid'",
)
case(
    "loss_kind_unknown",
    "loss: {kind: wgan_gp",
    "loss: {⟨kind: wgan",
    "did you mean 'wgan_gp'",
    base="mnist",
)
case(
    "layer_not_mapping",
    "      - {kind: upsample}",
    "      - ⟨upsample",
    "a layer must be a mapping",
)
case("layer_kind_missing", "      - {kind: upsample}", "      - ⟨{name: up}", "missing layer kind")
case(
    "blocks_not_list",
    "    block:\n      - {kind: upsample}\n      - {kind: conv}\n      - {kind: conv}\n",
    "    ⟨block: 3\n",
    "input should be a valid list",
)
case(
    "base_shape_bool",
    "  final_resolution: 16",
    "  base_shape: [⟨true, 4]\n  final_resolution: 16",
    "input should be a valid integer",
)

# ---- B. bad values -------------------------------------------------------------------------------
case("latent_zero", "  latent_size: 16", "  ⟨latent_size: 0", "greater than or equal to 1")
case("latent_huge", "  latent_size: 16", "  ⟨latent_size: 100000", "less than or equal to 65536")
case("image_channels_5", "  image_channels: 1", "  ⟨image_channels: 5", "less than or equal to 4")
case("fade_negative", "    fade_kimg: 0.064", "    ⟨fade_kimg: -1", "greater than or equal to 0")
case("total_inf", "    total_kimg: 0.384", "    ⟨total_kimg: .inf", "finite number")
case("total_nan", "    total_kimg: 0.384", "    ⟨total_kimg: .nan", "finite number")
case(
    "total_1e300",
    "    total_kimg: 0.384",
    "    ⟨total_kimg: 1.0e300",
    f"less than or equal to {MAX_KIMG:.0f}",
)
case("total_1e7", "    total_kimg: 0.384", "    ⟨total_kimg: 1e7", "less than or equal to")
case(
    "stable_table_inf",
    "    stable_kimg: 0.064",
    "    stable_kimg: {4: 1, ⟨8: .inf, 16: 1}",
    "finite number",
)
case(
    "fade_table_value",
    "    fade_kimg: 0.064",
    "    fade_kimg: {⟨8: abc, 16: 1}",
    "input should be a valid number",
)
case(
    "kernel_11",
    "{kind: conv, out: lower}",
    "{kind: conv, ⟨kernel: 11, out: lower}",
    "less than or equal to 9",
)
case(
    "kernel_0",
    "{kind: conv, out: lower}",
    "{kind: conv, ⟨kernel: 0, out: lower}",
    "greater than or equal to 1",
)
case("group_zero", "group_size: 4}", "⟨group_size: 0}", "greater than or equal to 1")
case(
    "rows_65", "grid: {rows: 4, cols: 4}", "grid: {⟨rows: 65, cols: 4}", "less than or equal to 64"
)
case("num_images_8", "num_images: 64}", "⟨num_images: 8}", "greater than or equal to 16")
case("beta1_one", "beta1: 0.0", "⟨beta1: 1.0", "less than 1", base="mnist")
case("lr_zero", "lr: 0.003", "⟨lr: 0", "greater than 0", base="mnist")
case("ema_one", "ema: {decay: 0.995}", "ema: {⟨decay: 1.0}", "less than 1", base="mnist")
case("slope_big", "slope: 0.2}", "⟨slope: 1.5}", "less than 1", base="celeba")
case("epsilon_zero", "epsilon: 1.0e-8", "⟨epsilon: 0", "greater than 0", base="celeba")
case(
    "d_repeats_17",
    "  tick_kimg: 0.064",
    "  tick_kimg: 0.064\n  ⟨d_repeats: 17",
    "less than or equal to 16",
)
case(
    "gain_negative",
    "{kind: project, gain: 0.3535533905932738}",
    "{kind: project, ⟨gain: -1}",
    "greater than 0",
)
case("version_unsupported", "spec_version: 1", "⟨spec_version: 2", "unsupported version 2")
case("version_bool", "spec_version: 1", "⟨spec_version: true", "unsupported version True")

# ---- C. even kernels ---------------------------------------------------------------------------
for i, where in enumerate(["first_block", "g_block_a", "g_block_b", "d_block", "last_block"]):
    k = 2 + 2 * (i % 4)
    case(
        f"even_kernel_{where}_{k}",
        "{kind: conv}",
        "{kind: conv, ⟨kernel: " + str(k) + "}",
        f"kernel {k} is even",
        nth=i,
    )
case(
    "even_kernel_to_rgb",
    "  discriminator:",
    "    to_rgb: {kind: conv, ⟨kernel: 2, activation: linear}\n  discriminator:",
    "kernel 2 is even",
)
case(
    "even_kernel_from_rgb",
    "    block:\n      - {kind: conv}\n      - {kind: conv, out: lower}",
    "    from_rgb: {kind: conv, ⟨kernel: 4}\n    block:\n      - {kind: conv}\n"
    "      - {kind: conv, out: lower}",
    "kernel 4 is even",
)

# ---- D. unknown keys get "did you mean" --------------------------------------------------------
case("typo_latent_size", "  latent_size: 16", "  ⟨latnt_size: 16", "did you mean 'latent_size'")
case("typo_generator", "  generator:", "  ⟨generatr:", "did you mean 'generator'")
case("typo_layer_param", "{kind: dense, out: 16}", "{kind: dense, ⟨outt: 16}", "did you mean 'out'")
case("typo_fade_kimg", "    fade_kimg: 0.064", "    ⟨fade_kimgs: 0.064", "did you mean 'fade_kimg'")
case("typo_tick", "  tick_kimg: 0.064", "  ⟨tick_kmg: 0.064", "did you mean 'tick_kimg'")
case(
    "typo_grid_cols",
    "grid: {rows: 4, cols: 4}",
    "grid: {rows: 4, ⟨colls: 4}",
    "did you mean 'cols'",
)
case("typo_snapshot_keep", "keep: 2}", "⟨kep: 2}", "did you mean 'keep'")
case("typo_metrics", "metrics: [swd]", "⟨metric: [swd]", "did you mean 'metrics'")
case("typo_training", "training:", "⟨trainin:", "did you mean 'training'")
case("typo_table", "    table: {4: 16", "    ⟨tabel: {4: 16", "did you mean 'table'")
case(
    "typo_gp_lambda", "gp_lambda: 10.0", "⟨gp_lamda: 10.0", "did you mean 'gp_lambda'", base="mnist"
)
case("typo_beta2", "beta2: 0.99", "⟨beta_2: 0.99", "did you mean 'beta2'", base="mnist")
case(
    "typo_layer_kind",
    "      - {kind: upsample}",
    "      - {⟨kind: upsampl}",
    "did you mean 'upsample'",
)
case(
    "typo_pixel_norm",
    "  equalized_lr: true",
    "  equalized_lr: true\n  ⟨pixelnorm: {enabled: false}",
    "did you mean 'pixel_norm'",
    base="celeba",
)

# ---- E. misplaced keys: allowed keys of the model they landed in --------------------------------
case(
    "kernel_in_architecture",
    "  latent_size: 16",
    "  latent_size: 16\n  ⟨kernel: 3",
    "unknown key 'kernel' (allowed: latent_size, image_channels",
)
case(
    "minibatch_in_training",
    "  tick_kimg: 0.064",
    "  tick_kimg: 0.064\n  ⟨minibatch: {4: 16}",
    "allowed: loss, optimizer, schedule",
)
case(
    "loss_in_architecture",
    "  latent_size: 16",
    "  latent_size: 16\n  ⟨loss: {kind: lsgan}",
    "unknown key 'loss'",
)
case(
    "latent_in_training",
    "  tick_kimg: 0.064",
    "  tick_kimg: 0.064\n  ⟨latent_size: 16",
    "unknown key 'latent_size'",
)
case(
    "version_in_architecture",
    "  latent_size: 16",
    "  latent_size: 16\n  ⟨spec_version: 1",
    "unknown key 'spec_version'",
)
case(
    "kernel_on_upsample",
    "      - {kind: upsample}",
    "      - {kind: upsample, ⟨kernel: 3}",
    "unknown key 'kernel' (allowed: name, kind)",
)
case(
    "group_size_on_conv",
    "{kind: conv, out: lower}",
    "{kind: conv, out: lower, ⟨group_size: 4}",
    "unknown key 'group_size' (allowed: name, kind, kernel",
)
case(
    "r1_on_wgan",
    "gp_lambda: 10.0",
    "gp_lambda: 10.0, ⟨r1_gamma: 1",
    "unknown key 'r1_gamma'",
    base="mnist",
)

# ---- F. deep nesting ---------------------------------------------------------------------------
deep = MAX_DEPTH + 10
case(
    "deep_flow_list",
    "name: tiny\n",
    "name: tiny\ndescription: "
    + "[" * (MAX_DEPTH - 1)
    + "⟨["
    + "[" * (deep - MAX_DEPTH)
    + "]" * deep
    + "\n",
    f"nested deeper than {MAX_DEPTH} levels",
)
case(
    "deep_600",
    "name: tiny\n",
    "name: tiny\nx: " + "[" * (MAX_DEPTH - 1) + "⟨" + "[" * 551 + "]" * 600 + "\n",
    f"nested deeper than {MAX_DEPTH} levels",
)
case(
    "deep_flow_map",
    "  latent_size: 16\n",
    "  latent_size: 16\n  x: "
    + "{a: " * (MAX_DEPTH - 2)
    + "⟨{a: "
    + "{a: " * 5
    + "1"
    + "}" * (MAX_DEPTH + 4)
    + "\n",
    f"nested deeper than {MAX_DEPTH}",
)
case("self_alias", "name: tiny\n", "name: tiny\nx: ⟨&a [*a]\n", f"nested deeper than {MAX_DEPTH}")

# ---- G. reserved names ---------------------------------------------------------------------------
for reserved in sorted(RESERVED):
    case(
        f"reserved_{reserved}_g_block",
        "      - {kind: upsample}",
        "      - {kind: upsample, ⟨name: " + reserved + "}",
        f"layer name '{reserved}'",
    )
    case(
        f"reserved_{reserved}_d_block",
        "{kind: conv, out: lower}",
        "{kind: conv, out: lower, ⟨name: " + reserved + "}",
        "is reserved for",
    )
case(
    "reserved_first_block",
    "{kind: project, gain",
    "{kind: project, ⟨name: fade, gain",
    "reserved for the fade-in lerp",
)
case(
    "reserved_last_block",
    "{kind: dense, out: 16}",
    "{kind: dense, out: 16, ⟨name: fromrgb}",
    "reserved for D's fromRGB layer",
)
case(
    "reserved_override",
    "  discriminator:",
    "    overrides:\n      16:\n        - {kind: upsample, ⟨name: torgb}\n        - {kind: conv}\n"
    "        - {kind: conv}\n  discriminator:",
    "reserved for G's toRGB layer",
)

# ---- H. duplicate names --------------------------------------------------------------------------
case(
    "dup_explicit",
    "      - {kind: conv}\n      - {kind: conv}\n",
    "      - {kind: conv, name: c}\n      - {kind: conv, ⟨name: c}\n",
    "duplicate layer name 'c'",
)
case(
    "dup_with_default_number",
    "      - {kind: conv}\n      - {kind: conv}\n",
    "      - {kind: conv}\n      - {kind: conv, ⟨name: conv0}\n",
    "duplicate layer name 'conv0'",
)
case(
    "dup_default_after_explicit",
    "      - {kind: conv, out: lower}\n      - {kind: downsample}",
    "      - {kind: conv, out: lower, name: down}\n      - ⟨{kind: downsample}",
    "duplicate layer name 'down' in one block (the default name of a downsample",
)
case(
    "dup_last_block",
    "{kind: minibatch_stddev, group_size: 4}\n      - {kind: conv}\n      - {kind: dense, out: 16}",
    "{kind: minibatch_stddev, group_size: 4, name: dense0}\n      - {kind: conv}\n"
    "      - ⟨{kind: dense, out: 16}",
    "duplicate layer name 'dense0'",
)

# ---- I. every cross-field rule in RULES ---------------------------------------------------------
case(
    "base_shape_3",
    "  final_resolution: 16",
    "  base_shape: [⟨3, 4]\n  final_resolution: 16",
    "3 is not a power of two",
)
case("final_24", "  final_resolution: 16", "  ⟨final_resolution: 24", "not the base resolution 4")
case(
    "channel_table_missing",
    "table: {4: 16, 8: 12, 16: 8}",
    "⟨table: {4: 16, 16: 8}",
    "missing resolutions [8]",
)
case(
    "channel_table_extra",
    "table: {4: 16, 8: 12, 16: 8}",
    "table: {4: 16, 8: 12, 16: 8, ⟨32: 8}",
    "32 is not a resolution of this spec",
)
case(
    "channels_grow",
    "table: {4: 16, 8: 12, 16: 8}",
    "table: {4: 16, ⟨8: 32, 16: 8}",
    "channels grow from 16 at 4 to 32 at 8",
)
case(
    "channels_grow_late",
    "table: {4: 16, 8: 12, 16: 8}",
    "table: {4: 16, 8: 12, ⟨16: 13}",
    "channels grow from 12 at 8 to 13 at 16",
)
case(
    "channels_both",
    "  channels:\n    table: {4: 16",
    "  ⟨channels:\n    rule: {base: 64}\n    table: {4: 16",
    "give exactly one of 'rule' or 'table'",
)
case(
    "override_unknown_res",
    "  discriminator:",
    "    overrides:\n      ⟨64:\n        - {kind: upsample}\n  discriminator:",
    "64 is not a resolution",
)
case(
    "override_base_res",
    "  discriminator:",
    "    overrides:\n      ⟨4:\n        - {kind: upsample}\n  discriminator:",
    "4 is not a resolution of this spec (resolutions: [8, 16])",
)
case(
    "minibatch_missing",
    "minibatch: {4: 16, 8: 16, 16: 8}",
    "⟨minibatch: {4: 16, 16: 8}",
    "missing resolutions [8]",
)
case(
    "learning_rate_unknown",
    "    minibatch:",
    "    learning_rate: {⟨64: 0.01}\n    minibatch:",
    "64 is not a resolution",
)
case(
    "fade_table_missing",
    "    fade_kimg: 0.064",
    "    ⟨fade_kimg: {8: 0.064}",
    "missing resolutions [16]",
)
case(
    "fade_table_base",
    "    fade_kimg: 0.064",
    "    fade_kimg: {⟨4: 1, 8: 1, 16: 1}",
    "4 is not a resolution",
)
case(
    "stable_table_missing",
    "    stable_kimg: 0.064",
    "    ⟨stable_kimg: {4: 1, 8: 1}",
    "missing resolutions [16]",
)
case(
    "total_too_short",
    "    total_kimg: 0.384",
    "    ⟨total_kimg: 0.1",
    "ends before the final resolution",
)
case(
    "minibatch_groups",
    "minibatch: {4: 16, 8: 16, 16: 8}",
    "minibatch: {4: 16, ⟨8: 18, 16: 8}",
    "not a multiple of the minibatch-stddev group size 4",
)
case(
    "mbstd_sizes_differ",
    "      - {kind: conv}\n      - {kind: conv, out: lower}",
    "      - {kind: minibatch_stddev, ⟨group_size: 2}\n      - {kind: conv}\n"
    "      - {kind: conv, out: lower}",
    "group_size 2 differs from the 4 of architecture.discriminator.last_block[0]",
)
case(
    "to_rgb_out",
    "  discriminator:",
    "    to_rgb: {kind: conv, kernel: 1, ⟨out: 3}\n  discriminator:",
    "to_rgb always outputs image_channels",
)
case(
    "from_rgb_out",
    "    block:\n      - {kind: conv}\n      - {kind: conv, out: lower}",
    "    from_rgb: {kind: conv, ⟨out: lower}\n    block:\n      - {kind: conv}\n"
    "      - {kind: conv, out: lower}",
    "from_rgb always outputs the block's channels",
)
case(
    "missing_required",
    "architecture:\n  latent_size: 16\n  image_channels: 1\n  final_resolution: 16\n",
    "⟨architecture:\n  latent_size: 16\n  image_channels: 1\n",
    "missing required key 'final_resolution'",
)

# ---- L. bytes and characters ---------------------------------------------------------------------
case("latin1_byte", "name: tiny", "name: tiny # caf⟨é", "not UTF-8 text", encoding="latin-1")
case("latin1_late", "  tick_kimg: 0.064", "  tick_kimg: 0.064 # ⟨ü", "0xfc", encoding="latin-1")
case("control_char", "  image_channels: 1", "  image_channels: 1 # bell⟨\x07", "character U+0007")
case("control_char_in_value", "name: tiny", "name: ti⟨\x1bny", "character U+001B")
case("nul_byte", "  latent_size: 16", "  latent_size: 16⟨\x00", "NUL byte")

# ---- M. shapes, reported at the layer that breaks them -------------------------------------------
case(
    "g_block_without_upsample",
    "      - {kind: upsample}\n      - {kind: conv}\n      - {kind: conv}\n",
    "      - {kind: conv}\n      - ⟨{kind: conv}\n",
    "must output 8x8 feature maps",
)
case(
    "d_block_without_downsample",
    "      - {kind: conv, out: lower}\n      - {kind: downsample}\n",
    "      - ⟨{kind: conv, out: lower}\n",
    "a D block must output what fromRGB gives",
)
case(
    "d_block_without_lower",
    "      - {kind: conv, out: lower}\n      - {kind: downsample}\n",
    "      - ⟨{kind: conv}\n      - {kind: downsample}\n",
    "[16, 4, 4], but its last layer outputs [12, 4, 4]",
)
case(
    "d_two_scores",
    "{kind: dense, out: 1, activation: linear, gain: 1.0}",
    "⟨{kind: dense, out: 2}",
    "D must end in one score per image",
)
case(
    "g_ends_in_vector",
    "      - {kind: conv}\n      - {kind: conv}\n  discriminator",
    "      - {kind: conv}\n      - ⟨{kind: dense, out: 4}\n  discriminator",
    "outputs [4]",
)
case(
    "dense_before_conv",
    "      - {kind: conv}\n      - {kind: dense, out: 16}",
    "      - {kind: dense, out: 16}\n      - ⟨{kind: conv}",
    "needs feature maps",
)
case("lower_at_base", "{kind: dense, out: 16}", "⟨{kind: dense, out: lower}", "no lower resolution")
case(
    "mbstd_features",
    "{kind: minibatch_stddev, group_size: 4}",
    "⟨{kind: minibatch_stddev, group_size: 4, num_features: 3}",
    "3 must divide 16",
)


def _write(tmp: Path, c: Case) -> tuple[Path, int, int]:
    text, line, col = c.text()
    path = tmp / f"{c.id}.yaml"
    if c.encoding:
        path.write_bytes(text.encode(c.encoding))
    else:
        path.write_text(text, encoding="utf-8")
    return path, line, col


def _expect(err: SpecError, path: Path, line: int, col: int | None, fragment: str) -> None:
    hits = [
        i
        for i in err.issues
        if i.path == str(path) and i.line == line and (col is None or i.col == col)
    ]
    assert hits, f"no issue at {line}:{col}:\n{err}"
    assert any(fragment in str(i) for i in hits), f"{fragment!r} not in:\n{err}"


def test_there_are_at_least_150_mutations() -> None:
    assert len(CASES) + len(EXTENDS_CASES) + len(SET_CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_mutation(c: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, line, col = _write(tmp_path, c)
    want_col = col if c.check_col else None
    with pytest.raises(SpecError) as info:
        from progan_dsl.ir import compile_graphs

        compile_graphs(load_spec(path))
    _expect(info.value, path, line, want_col, c.fragment)
    assert compile_main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{path}:{line}:{col if c.check_col else ''}" in err, err
    assert c.fragment in err


# ---- J. extends ----------------------------------------------------------------------------------
TINY_TEXT = BASES["tiny"]


def _tree(tmp: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)


CHILD = "spec_version: 1\nextends: {target}\nname: child\n"
AT = "spec_version: 1\n⟨extends: {target}\nname: child\n"  # the error points at `extends`
EXTENDS_CASES: list[tuple[str, dict[str, str], str, str, str]] = [
    # (id, files, file loaded, file:marker where the error points, fragment)
    (
        "missing_base",
        {"c.yaml": AT.replace("{target}", "nope.yaml")},
        "c.yaml",
        "c.yaml",
        "extends 'nope.yaml': no such file (looked for ",
    ),
    (
        "self_cycle",
        {"c.yaml": AT.replace("{target}", "c.yaml")},
        "c.yaml",
        "c.yaml",
        "extends cycle",
    ),
    (
        "two_cycle",
        {"a.yaml": CHILD.replace("{target}", "b.yaml"), "b.yaml": AT.replace("{target}", "a.yaml")},
        "a.yaml",
        "b.yaml",
        "extends cycle",
    ),
    (
        "not_a_string",
        {"c.yaml": AT.replace("{target}", "[tiny.yaml]")},
        "c.yaml",
        "c.yaml",
        "extends names the base spec file",
    ),
    (
        "directory",
        {"c.yaml": AT.replace("{target}", "sub"), "sub/x.yaml": "a: 1\n"},
        "c.yaml",
        "c.yaml",
        "extends 'sub': is a folder, not a regular file",
    ),
    (
        "error_in_base",
        {
            "base.yaml": TINY_TEXT.replace("  latent_size: 16", "  ⟨latnt_size: 16"),
            "c.yaml": CHILD.replace("{target}", "base.yaml"),
        },
        "c.yaml",
        "base.yaml",
        "did you mean 'latent_size'",
    ),
    (
        "error_in_child",
        {
            "base.yaml": TINY_TEXT,
            "c.yaml": CHILD.replace("{target}", "base.yaml")
            + "architecture:\n  ⟨latent_size: true\n",
        },
        "c.yaml",
        "c.yaml",
        "valid integer",
    ),
    (
        "yaml_error_in_base",
        {
            "base.yaml": "spec_version: 1\nname: [a, b\n⟨",
            "c.yaml": CHILD.replace("{target}", "base.yaml"),
        },
        "c.yaml",
        "base.yaml",
        "YAML syntax",
    ),
    (
        "child_without_version",
        {"base.yaml": TINY_TEXT, "c.yaml": "⟨extends: base.yaml\nname: child\n"},
        "c.yaml",
        "c.yaml",
        "every spec starts with 'spec_version: 1'",
    ),
    (
        "rule_across_files",
        {
            "base.yaml": TINY_TEXT,
            "c.yaml": CHILD.replace("{target}", "base.yaml")
            + "training:\n  schedule:\n    minibatch: {⟨8: 18}\n",
        },
        "c.yaml",
        "c.yaml",
        "not a multiple of the minibatch-stddev group size 4",
    ),
    (
        "base_in_subfolder",
        {
            "sub/base.yaml": TINY_TEXT.replace("  image_channels: 1", "  ⟨image_channels: 9"),
            "c.yaml": CHILD.replace("{target}", "sub/base.yaml"),
        },
        "c.yaml",
        "sub/base.yaml",
        "less than or equal to 4",
    ),
    (
        "chain_too_long",
        {
            **{f"s{i}.yaml": CHILD.replace("{target}", f"s{i + 1}.yaml") for i in range(8)},
            "s8.yaml": AT.replace("{target}", "s9.yaml"),
            "s9.yaml": TINY_TEXT,
        },
        "s0.yaml",
        "s8.yaml",
        "more than 8 levels of extends",
    ),
]


@pytest.mark.parametrize(
    ("id", "files", "load", "where", "fragment"), EXTENDS_CASES, ids=[c[0] for c in EXTENDS_CASES]
)
def test_bad_extends(
    id: str,
    files: dict[str, str],
    load: str,
    where: str,
    fragment: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    marked = files[where]
    pos = marked.index(MARK)
    line, col = marked.count("\n", 0, pos) + 1, pos - (marked.rfind("\n", 0, pos) + 1) + 1
    _tree(tmp_path, {k: v.replace(MARK, "") for k, v in files.items()})
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / load)
    _expect(info.value, tmp_path / where, line, col, fragment)
    assert compile_main([str(tmp_path / load)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{tmp_path / where}:{line}:{col}:" in err, err


# ---- K. --set ------------------------------------------------------------------------------------
SET_CASES: list[tuple[str, str, str]] = [  # (id, argument, fragment after "--set ARG: ")
    ("no_equals", "training.schedule.total_kimg", "expected KEY.PATH=VALUE"),
    ("empty_key", "=3", "expected KEY.PATH=VALUE"),
    ("empty_part", "training..total_kimg=3", "empty key"),
    ("bad_part", "training.sched-ule=3", "is not a key"),
    (
        "unknown_key",
        "architecture.latnt_size=3",
        "architecture.latnt_size: unknown key 'latnt_size' (did you mean 'latent_size'?",
    ),
    (
        "wrong_type",
        "training.loss.gp_lambda=abc",
        "training.loss.gp_lambda: input should be a valid number (got 'abc')",
    ),
    ("bool_for_int", "architecture.latent_size=true", "input should be a valid integer (got True)"),
    ("index_out_of_range", "architecture.generator.block[5].kernel=3", "is a list of 3 item(s)"),
    (
        "into_scalar",
        "architecture.latent_size.x=3",
        "architecture.latent_size is 16, not a mapping",
    ),
    (
        "unknown_resolution",
        "training.schedule.minibatch.64=16",
        "64 is not a resolution of this spec",
    ),
    ("bad_yaml_value", "training.schedule.fade_kimg=[1,", "YAML syntax"),
    ("version", "spec_version=2", "cannot be set from the command line"),
    ("extends", "extends=x.yaml", "cannot be set from the command line"),
    ("even_kernel", "architecture.generator.block.1.kernel=2", "kernel 2 is even"),
    ("reserved_name", "architecture.generator.block.0.name=fade", "reserved for the fade-in lerp"),
    ("rule_total", "training.schedule.total_kimg=0.01", "ends before the final resolution"),
    ("inf", "training.schedule.total_kimg=.inf", "finite number"),
    ("control_char", "name=a\x07b", "holds the control character U+0007"),
    # the argument is recorded on one comment line of the stored spec: no line breaks
    ("newline_in_value", "description=a\n  b", "holds a line break (U+000A)"),
    ("newline_in_key", "training.tick_kimg\n=1", "holds a line break (U+000A)"),
    ("carriage_return", "description=a\rb", "holds a line break (U+000D)"),
    ("next_line", "description=a\x85b", "holds a line break (U+0085)"),
    ("line_separator", "description=a\u2028b", "holds a line break (U+2028)"),
]


@pytest.mark.parametrize(("id", "arg", "fragment"), SET_CASES, ids=[c[0] for c in SET_CASES])
def test_bad_set(id: str, arg: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(TINY, overrides=["training.tick_kimg=0.064", arg])
    text = str(info.value)
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in arg)  # a\x07b, one line
    assert f"  --set {shown}: " in text, text
    assert fragment in text, text
    assert all(i.path == f"--set {shown}" and i.line == 0 for i in info.value.issues), text
