"""Spec rules with one owner: the minibatch-stddev group rule (with a world size), layer names,
the paper's constants, and how issues print."""

from __future__ import annotations

import math

import pytest

from progan_dsl import paper
from progan_dsl.errors import UserError
from progan_dsl.kinds.builtin import ConvLayer, MinibatchStddevLayer, conv_output_size
from progan_dsl.spec import (
    Issue,
    load_spec,
    load_spec_text,
    minibatch_group_problems,
    require_whole_groups,
)
from progan_dsl.spec.models import RULES, Architecture, OptimizerSpec, WganGpLoss
from progan_dsl.spec.names import DEFAULT_NAMES, RESERVED, layer_names
from tests.conftest import SPECS, TINY


def test_mbstd_group_size_property() -> None:
    assert load_spec(TINY).spec.architecture.mbstd_group_size == 4
    text = TINY.read_text().replace("      - {kind: minibatch_stddev, group_size: 4}\n", "")
    assert load_spec_text(text).spec.architecture.mbstd_group_size is None
    moved = text.replace(
        "      - {kind: conv, out: lower}",
        "      - {kind: minibatch_stddev, group_size: 2}\n      - {kind: conv, out: lower}",
    )
    assert load_spec_text(moved).spec.architecture.mbstd_group_size == 2  # found in D's block too


def test_per_process_batch_holds_whole_groups() -> None:
    spec = load_spec(TINY).spec  # minibatch {4: 16, 8: 16, 16: 8}, group size 4
    assert minibatch_group_problems(spec, 1) == []
    assert minibatch_group_problems(spec, 2) == []  # 8, 8, 4 per process
    # 4 processes: 4, 4 and 2 per process; 2 holds no whole group of 4
    assert minibatch_group_problems(spec, 4) == [
        (
            ("training", "schedule", "minibatch", 16),
            "minibatch 8 at 16 over 4 processes gives 2 per process, not a multiple of the "
            "minibatch-stddev group size 4: groups would span processes",
        )
    ]
    assert [m for _, m in minibatch_group_problems(spec, 3)] == [
        f"minibatch {b} at {r} does not split over 3 processes"
        for r, b in ((4, 16), (8, 16), (16, 8))
    ]
    with pytest.raises(UserError, match="minibatch 8 at 16 over 4 processes gives 2 per process"):
        require_whole_groups(spec, 4)
    require_whole_groups(spec, 2)


def test_small_batches_use_the_whole_batch_as_a_group() -> None:
    # the layer takes min(group_size, batch): a batch of 2 is one group of 2 (official behaviour)
    text = TINY.read_text().replace("{4: 16, 8: 16, 16: 8}", "{4: 2, 8: 2, 16: 2}")
    assert minibatch_group_problems(load_spec_text(text).spec, 1) == []


def test_layer_names() -> None:
    layers = load_spec(TINY).spec.architecture.generator.block
    assert layer_names(layers) == ["up", "conv0", "conv1"]
    assert set(DEFAULT_NAMES.values()).isdisjoint(RESERVED)
    assert sorted(RESERVED) == ["fade", "fromrgb", "skip_down", "skip_up", "torgb"]
    names = [rule.__name__ for rule in RULES]
    assert names[0] == "check_layer_names_are_unique_and_free"
    assert (
        "check_minibatch_fits_groups" in names
        and "check_mbstd_layers_share_one_group_size" in names
    )


def test_paper_constants_and_the_defaults_that_use_them() -> None:
    assert paper.HE_GAIN == math.sqrt(2.0) and paper.LRELU_SLOPE == 0.2
    assert paper.PIXEL_NORM_EPS == 1e-8 and (paper.CHANNEL_BASE, paper.CHANNEL_MAX) == (8192, 512)
    assert (paper.ADAM_LR, paper.ADAM_BETA1, paper.ADAM_BETA2, paper.ADAM_EPS) == (
        0.001,
        0.0,
        0.99,
        1e-8,
    )
    assert (paper.WGAN_GP_LAMBDA, paper.WGAN_DRIFT, paper.G_EMA_DECAY) == (10.0, 0.001, 0.999)
    assert paper.MBSTD_GROUP == 4 and paper.MBSTD_FEATURES == 1
    assert Architecture.model_fields["gain"].default == paper.HE_GAIN
    assert MinibatchStddevLayer(kind="minibatch_stddev").group_size == paper.MBSTD_GROUP
    assert ConvLayer(kind="conv").kernel == paper.CONV_KERNEL == 3
    assert OptimizerSpec().beta2 == paper.ADAM_BETA2
    assert WganGpLoss(kind="wgan_gp").gp_target == paper.WGAN_GP_TARGET
    spec = load_spec(SPECS / "celebahq_1024.yaml").spec
    assert spec.architecture.generator.to_rgb.gain == paper.TO_RGB_GAIN


def test_conv_output_size_with_the_runtime_padding() -> None:
    # the runtime pads kernel // 2 on each side: odd kernels keep the size, even ones add one
    assert [conv_output_size(8, k) for k in (1, 3, 5, 7, 9)] == [8, 8, 8, 8, 8]
    assert [conv_output_size(8, k) for k in (2, 4)] == [9, 9]


def test_issue_text() -> None:
    assert str(Issue("a.yaml", 3, 5, ("training", "schedule", "minibatch", 8), "bad")) == (
        "a.yaml:3:5: training.schedule.minibatch[8]: bad"
    )
    assert str(Issue("--set x=1", 0, 0, ("x",), "bad")) == "--set x=1: x: bad"
