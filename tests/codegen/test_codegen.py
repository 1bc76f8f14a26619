"""Generated modules: golden source, parameter counts, fade-in maths, fusion exactness, weight
carry-over between stages, standalone emission, and refusal to inject code."""

from __future__ import annotations

import subprocess
import sys
import traceback

import pytest
import torch
import torch.nn.functional as F

from progan_dsl.codegen.view import literal
from progan_dsl.compiler import compile_spec
from progan_dsl.ir import Stage
from progan_dsl.kinds import LayerKind, register
from tests.conftest import ROOT, SPECS, TINY, check_golden


@pytest.fixture(scope="module")
def tiny():
    return compile_spec(TINY)


@pytest.fixture(scope="module")
def tiny_plain():
    return compile_spec(TINY, fused=False)


def all_sources(program) -> str:
    parts = []
    for stage in program.stages:
        for net in ("G", "D"):
            parts.append(f"# ===== {net} {stage} =====\n{program.source(net, stage)}")
    return "\n".join(parts)


def test_golden_source_tiny(tiny, tiny_plain):
    check_golden("codegen/tiny_fused.py.txt", all_sources(tiny))
    check_golden("codegen/tiny_plain.py.txt", all_sources(tiny_plain))


def test_golden_source_celebahq():
    program = compile_spec(SPECS / "celebahq_1024.yaml")
    check_golden("codegen/celebahq_1024.py.txt", all_sources(program))


def test_generated_source_is_deterministic(tiny):
    again = compile_spec(TINY)
    assert all_sources(again) == all_sources(tiny)


def test_module_parameters_match_the_ir(tiny, tiny_plain):
    for program in (tiny, tiny_plain):
        for stage in program.stages:
            for net in ("G", "D"):
                module = program.build(net, stage)
                assert sum(p.numel() for p in module.parameters()) == program.params(net, stage)


def test_1024_modules_have_the_paper_parameter_counts():
    for fused in (True, False):
        program = compile_spec(SPECS / "celebahq_1024.yaml", fused=fused)
        stage = program.final_stage
        assert sum(p.numel() for p in program.build("G", stage).parameters()) == 23_071_507
        assert sum(p.numel() for p in program.build("D", stage).parameters()) == 23_077_137


def _grow(program, old: Stage, new: Stage, net: str, seed: int = 0):
    """Modules of two stages sharing weights by name, as training carries them over."""
    torch.manual_seed(seed)
    new_mod = program.build(net, new)
    for p in new_mod.parameters():  # non-zero biases so that every path matters
        torch.nn.init.normal_(p)
    old_mod = program.build(net, old)
    old_mod.load_state_dict(
        {k: v for k, v in new_mod.state_dict().items() if k in old_mod.state_dict()}, strict=False
    )
    return old_mod.double(), new_mod.double()


def _alpha(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("res", [8, 16])
def test_fade_in_limits(res, fused):
    program = compile_spec(TINY, fused=fused)
    low, fade, stable = Stage(res // 2, "stable"), Stage(res, "fade"), Stage(res, "stable")
    z = torch.randn(8, 16, dtype=torch.float64)
    # G: alpha=0 is the previous stage upsampled; alpha=1 the new stable stage
    g_low, g_fade = _grow(program, low, fade, "G")
    _, g_stable = _grow(program, fade, stable, "G")
    g_stable.load_state_dict(
        {k: v for k, v in g_fade.state_dict().items() if k in g_stable.state_dict()}
    )
    with torch.no_grad():
        assert torch.allclose(
            g_fade(z, _alpha(0.0)), F.interpolate(g_low(z), scale_factor=2.0), atol=1e-10
        )
        assert torch.allclose(g_fade(z, _alpha(1.0)), g_stable(z), atol=1e-10)
        mid = g_fade(z, _alpha(0.25))
        expect = 0.75 * F.interpolate(g_low(z), scale_factor=2.0) + 0.25 * g_stable(z)
        assert torch.allclose(mid, expect, atol=1e-10)
    # D: alpha=0 is the previous stage on the 2x2-averaged image; alpha=1 the new stable stage
    d_low, d_fade = _grow(program, low, fade, "D")
    _, d_stable = _grow(program, fade, stable, "D")
    d_stable.load_state_dict(
        {k: v for k, v in d_fade.state_dict().items() if k in d_stable.state_dict()}
    )
    img = torch.randn(8, 1, res, res, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(d_fade(img, _alpha(0.0)), d_low(F.avg_pool2d(img, 2)), atol=1e-10)
        assert torch.allclose(d_fade(img, _alpha(1.0)), d_stable(img), atol=1e-10)


def test_fusion_is_exact_in_fp32():
    fused, plain = compile_spec(TINY, fused=True), compile_spec(TINY, fused=False)
    torch.manual_seed(1)
    z = torch.randn(8, 16)
    img = torch.randn(8, 1, 16, 16)
    for stage in fused.stages:
        for net, x in (("G", z), ("D", img[..., : stage.resolution, : stage.resolution])):
            a, b = fused.build(net, stage), plain.build(net, stage)
            for p in a.parameters():
                torch.nn.init.normal_(p)
            b.load_state_dict(a.state_dict())  # identical names and shapes
            args = (x, torch.tensor(0.3)) if stage.phase == "fade" else (x,)
            with torch.no_grad():
                ya, yb = a(*args), b(*args)
            assert torch.allclose(ya, yb, rtol=1e-4, atol=1e-5 * yb.abs().max().item()), (
                net,
                stage,
            )


def test_growing_leaves_exactly_the_new_block_missing(tiny):
    stages = tiny.stages
    for old, new in zip(stages, stages[1:]):
        old_mod, new_mod = tiny.build("G", old), tiny.build("G", new)
        result = new_mod.load_state_dict(old_mod.state_dict(), strict=False)
        if new.phase == "fade":
            r = new.resolution
            expected = {
                f"b{r}_{n}.{p}" for n in ("conv0", "conv1", "torgb") for p in ("weight", "bias")
            }
            assert set(result.missing_keys) == expected
            assert result.unexpected_keys == []
        else:  # fade -> stable: the old toRGB is dropped, nothing is new
            assert result.missing_keys == []
            assert set(result.unexpected_keys) == {
                f"b{new.resolution // 2}_torgb.weight",
                f"b{new.resolution // 2}_torgb.bias",
            }
    d_old, d_new = tiny.build("D", Stage(8, "stable")), tiny.build("D", Stage(16, "fade"))
    result = d_new.load_state_dict(d_old.state_dict(), strict=False)
    assert set(result.missing_keys) == {
        f"b16_{n}.{p}" for n in ("conv0", "conv1", "fromrgb") for p in ("weight", "bias")
    }


def test_tracebacks_show_generated_lines(tiny):
    module = tiny.build("G", Stage(8, "stable"))
    try:
        module(torch.randn(2, 7))  # wrong latent size
    except RuntimeError:
        text = traceback.format_exc()
    else:
        pytest.fail("expected a shape error")
    assert "<progan:tiny:" in text
    assert "x = self.b4_project(x)" in text


def test_emitted_folder_runs_without_progan_dsl(tiny, tmp_path):
    from progan_dsl.codegen import emit_package

    emit_package(tiny.graphs, tmp_path / "tiny_modules")
    code = f"""
import sys
sys.path = [p for p in sys.path if p not in ('', '.', {str(ROOT)!r})]
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('progan_dsl', 'codegen'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(tmp_path)!r})
import torch, tiny_modules
assert len(tiny_modules.STAGES) == 10
G = tiny_modules.Generator16Fade()
img = G(torch.randn(3, 16), torch.tensor(0.5))
assert img.shape == (3, 1, 16, 16), img.shape
D = tiny_modules.Discriminator16Stable()
assert D(img).shape == (3, 1)
assert not any(m.startswith(('progan_dsl', 'codegen')) for m in sys.modules)
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_literals_refuse_code():
    assert literal(3) == "3" and literal([1, 2]) == "[1, 2]" and literal("lrelu") == '"lrelu"'
    for evil in ['lrelu"); import os; ("', "a b", "x\nimport os", object()]:
        with pytest.raises((ValueError, TypeError)):
            literal(evil)


def test_kind_registration_refuses_bad_runtime():
    with pytest.raises(ValueError, match="runtime must be"):
        register(
            LayerKind(
                name="evil",
                params=None,
                infer=lambda *a: (1,),
                count=lambda n: 0,
                runtime="os; import os:system",
                ctor=lambda n: {},
                label=lambda n: "x",
            )
        )
