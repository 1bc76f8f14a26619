"""Class-conditional networks through the signature: what the builder wires for each mode, the
parameter counts derived by hand, the generated calling convention, goldens of the graphs and
the code, and the fade-in limits with labels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from progan_dsl.compiler import compile_spec
from progan_dsl.ir import Stage
from progan_dsl.ir.dump import dump
from progan_dsl.ir.types import PortRole
from progan_dsl.spec import SpecError
from tests.conftest import ROOT, TINY, check_golden

COND = ROOT / "tests" / "specs" / "tiny_conditional.yaml"
K = 10  # tiny_conditional's classes
PROJECTION = ["architecture.conditioning.discriminator=projection"]


def all_sources(program) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(
        f"# ===== {net} {stage} =====\n{program.source(net, stage)}"
        for stage in program.stages
        for net in ("G", "D")
    )


def test_golden_graphs_and_code_of_both_modes() -> None:
    acgan, projection = compile_spec(COND), compile_spec(COND, overrides=PROJECTION)
    check_golden("ir/tiny_conditional.txt", dump(acgan.graphs))
    check_golden("ir/tiny_conditional_projection.txt", dump(projection.graphs))
    check_golden("codegen/tiny_conditional.py.txt", all_sources(acgan))
    check_golden("codegen/tiny_conditional_projection.py.txt", all_sources(projection))


def test_signatures_name_inputs_and_outputs_by_role() -> None:
    program = compile_spec(COND)
    for stage in program.stages:
        g, d = program.signature("G", stage), program.signature("D", stage)
        assert [(p.name, p.role) for p in g.inputs] == [
            ("z", PortRole.LATENT),
            ("labels", PortRole.LABELS),
            ("alpha", PortRole.ALPHA),
        ]
        assert [p.role for p in g.outputs] == [PortRole.IMAGE]
        assert [(p.name, p.take) for p in d.outputs] == [
            ("scores", (0, 1)),
            ("class_logits", (1, 11)),
        ]
        assert not d.takes(PortRole.LABELS)
    d = compile_spec(COND, overrides=PROJECTION).signature("D")
    assert [p.name for p in d.inputs] == ["img", "labels", "alpha"]
    assert [p.name for p in d.outputs] == ["scores"] and d.outputs[0].take is None
    plain = compile_spec(TINY)
    assert [p.name for p in plain.signature("G").inputs] == ["z", "alpha"]
    assert [p.name for p in plain.signature("D").outputs] == ["scores"]


def test_parameter_counts_by_hand() -> None:
    """Only G's first dense layer (fan-in latent + K) and D's head change."""
    plain = compile_spec(COND, overrides=["architecture.conditioning=null"])
    acgan, projection = compile_spec(COND), compile_spec(COND, overrides=PROJECTION)
    for stage in plain.stages:
        # G.b4.project: (16 + K) x (16 x 4 x 4) weights: K x 256 more
        assert acgan.params("G", stage) - plain.params("G", stage) == K * 16 * 4 * 4
        # D's last dense 16 -> 1 + K: K x (16 weights + 1 bias) more
        assert acgan.params("D", stage) - plain.params("D", stage) == K * (16 + 1)
        # projection: an embedding of K x 16 features
        assert projection.params("D", stage) - plain.params("D", stage) == K * 16
        for net in ("G", "D"):
            module = acgan.build(net, stage)
            assert sum(p.numel() for p in module.parameters()) == acgan.params(net, stage)
        module = projection.build("D", stage)
        assert sum(p.numel() for p in module.parameters()) == projection.params("D", stage)


def test_modules_take_and_give_what_the_signature_says() -> None:
    program = compile_spec(COND)
    torch.manual_seed(0)
    z, labels = torch.randn(8, 16), F.one_hot(torch.arange(8) % K, K).float()
    for stage in program.stages:
        G, D = program.build("G", stage), program.build("D", stage)
        alpha = torch.tensor(0.5)
        images = G(z, labels, alpha) if stage.phase == "fade" else G(z, labels)
        h, w = program.spec.architecture.spatial(stage.resolution)
        assert images.shape == (8, 3, h, w)
        scores, logits = D(images, alpha)
        assert scores.shape == (8, 1) and logits.shape == (8, K)
        # the labels reach G: other labels, other images
        other = G(z, labels.roll(1, dims=0), alpha)
        assert (other - images).abs().max() > 1e-3
    projection = compile_spec(COND, overrides=PROJECTION)
    D = projection.build("D", projection.final_stage)
    img = torch.randn(8, 3, 16, 16)
    scores = D(img, labels)
    assert scores.shape == (8, 1)
    assert (D(img, labels.roll(1, dims=0)) - scores).abs().max() > 1e-3


@pytest.mark.parametrize("res", [8, 16])
def test_fade_in_limits_with_labels(res: int) -> None:
    """alpha = 0 is the previous stage upsampled (the same labels), alpha = 1 the new stage."""
    program = compile_spec(COND)
    low, fade, stable = Stage(res // 2, "stable"), Stage(res, "fade"), Stage(res, "stable")
    torch.manual_seed(1)
    g_fade = program.build("G", fade).double()
    g_low, g_stable = program.build("G", low).double(), program.build("G", stable).double()
    state = g_fade.state_dict()
    g_low.load_state_dict({k: v for k, v in state.items() if k in g_low.state_dict()})
    g_stable.load_state_dict({k: v for k, v in state.items() if k in g_stable.state_dict()})
    z = torch.randn(8, 16, dtype=torch.float64)
    y = F.one_hot(torch.arange(8) % K, K).double()
    with torch.no_grad():
        up = F.interpolate(g_low(z, y), scale_factor=2.0)
        assert torch.allclose(g_fade(z, y, torch.tensor(0.0)), up, atol=1e-10)
        assert torch.allclose(g_fade(z, y, torch.tensor(1.0)), g_stable(z, y), atol=1e-10)


def test_stable_and_fade_modules_share_one_calling_convention() -> None:
    """No wrapper class: the generated source itself takes alpha at every stage."""
    program = compile_spec(COND)
    for stage in program.stages:
        source = program.source("G", stage)
        if stage.phase == "fade":
            assert (
                "def forward(self, z: Tensor, labels: Tensor, alpha: Tensor) -> Tensor:" in source
            )
        else:
            assert (
                "def forward(self, z: Tensor, labels: Tensor, alpha: Tensor | None = None)"
                " -> Tensor:" in source
            )
        cls = program.module_class("G", stage)
        assert cls.__name__ == cls.__qualname__ and cls.__bases__ == (torch.nn.Module,)
        assert "return x[:, 0:1], x[:, 1:11]" in program.source("D", stage)


def test_a_head_that_is_not_one_score_is_a_located_error() -> None:
    with pytest.raises(SpecError) as err:
        compile_spec(COND, overrides=["architecture.discriminator.last_block.3.out=2"])
    text = str(err.value)
    assert "tiny_conditional.yaml:" in text
    assert "D must end in one score per image, but its last layer outputs [2]" in text
