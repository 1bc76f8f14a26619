"""A layer kind added from outside the package (examples/custom_kind) flows through the spec,
the IR, codegen and the runtime. Run in a subprocess so the global kind registry stays clean."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_custom_kind_from_outside_the_package():
    code = """
import torch
import examples.custom_kind.blur  # registers `blur`
from progan_dsl.compiler import compile_spec
from progan_dsl.spec.schema import json_schema
program = compile_spec('examples/custom_kind/spec.yaml')
stage = program.stage(16, 'fade')
src = program.source('D', stage)
assert 'self.b16_blur = examples_custom_kind_blur_runtime.Blur2d(taps=[1, 3, 3, 1])' in src, src
D = program.build('D', stage)
assert D(torch.randn(4, 1, 16, 16), torch.tensor(0.5)).shape == (4, 1)
blur = D.b16_blur
flat = torch.full((1, 3, 8, 8), 2.5)
assert torch.allclose(blur(flat), flat)  # a normalised low-pass keeps constants
assert 'BlurLayer' in json_schema()['$defs']
from progan_dsl.spec import SpecError, load_spec_text
text = open('examples/custom_kind/spec.yaml').read().replace(\
'taps: [1, 3, 3, 1]', 'tap: [1, 3, 3, 1]')
try:
    load_spec_text(text, 'blur.yaml')
except SpecError as err:  # an outside kind's model names its keys like the built-in ones
    assert "blur.yaml:23:22: architecture.discriminator.block[2].tap: unknown key 'tap' \
(did you mean 'taps'? allowed: name, kind, taps)" in str(err), err
else:
    raise AssertionError('tap accepted')
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_unknown_kind_without_registration_is_a_located_error(capsys):
    from progan_dsl.cli import compile_main

    assert compile_main([str(ROOT / "examples" / "custom_kind" / "spec.yaml")]) == 2
    err = capsys.readouterr().err
    assert "spec.yaml:23:10:" in err and "unknown layer kind 'blur'" in err
