"""Loading the shipped specs: values, hash stability, schema, layering."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from progan_dsl.spec import load_spec, load_spec_text
from progan_dsl.spec.schema import schema_text
from tests.conftest import ROOT, SPECS, TINY

SHIPPED = sorted(SPECS.glob("*.yaml")) + [TINY]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_specs_validate(path):
    loaded = load_spec(path)
    assert loaded.spec.spec_version == 1
    assert loaded.doc.text.startswith("# yaml-language-server: $schema=")


def test_celebahq_spec_is_the_paper_config():
    spec = load_spec(SPECS / "celebahq_1024.yaml").spec
    arch, train = spec.architecture, spec.training
    assert arch.resolutions == [4, 8, 16, 32, 64, 128, 256, 512, 1024]
    # Table 2 widths, from the official rule min(8192 / 2**stage, 512)
    assert [arch.channels_at(r) for r in arch.resolutions] == [
        512,
        512,
        512,
        512,
        256,
        128,
        64,
        32,
        16,
    ]
    assert arch.latent_size == 512
    assert train.loss.kind == "wgan_gp" and train.loss.gp_lambda == 10 and train.loss.drift == 0.001
    opt = train.optimizer
    assert (opt.lr, opt.beta1, opt.beta2, opt.eps) == (0.001, 0.0, 0.99, 1e-8)
    assert train.ema.decay == 0.999
    assert train.schedule.total_kimg == 12000
    assert train.schedule.minibatch == {
        4: 128,
        8: 128,
        16: 128,
        32: 64,
        64: 32,
        128: 16,
        256: 8,
        512: 4,
        1024: 4,
    }


def test_hash_ignores_formatting():
    path = SPECS / "celebahq_1024.yaml"
    original = load_spec(path)
    data = yaml.safe_load(path.read_text())
    reformatted = load_spec_text(yaml.safe_dump(data, default_flow_style=False, sort_keys=True))
    assert reformatted.hash == original.hash
    data["architecture"]["latent_size"] = 256
    assert load_spec_text(yaml.safe_dump(data)).hash != original.hash


def test_marks_point_at_keys():
    loaded = load_spec(TINY)
    lines = loaded.doc.text.splitlines()
    line, col = loaded.doc.mark(("architecture", "latent_size"))
    assert lines[line - 1][col - 1 :].startswith("latent_size:")


def test_schema_file_is_up_to_date():
    assert (ROOT / "schema" / "progan-spec.schema.json").read_text() == schema_text()
    schema = json.loads(schema_text())
    kinds = {ref["$ref"].rsplit("/", 1)[1] for ref in schema["$defs"]["Layer"]["oneOf"]}
    assert {"ConvLayer", "UpsampleLayer", "DownsampleLayer", "DenseLayer"} <= kinds


def test_spec_and_ir_do_not_import_torch():
    code = (
        "import sys, progan_dsl.paper, progan_dsl.spec, progan_dsl.ir, progan_dsl.ir.dump,"
        " progan_dsl.ir.table, progan_dsl.ir.describe, progan_dsl.spec.names;"
        "from progan_dsl.ir import compile_graphs; from progan_dsl.spec import load_spec;"
        f"compile_graphs(load_spec({str(TINY)!r}));"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
