"""Malformed specs: each gives exit code 2, a located message, and no traceback."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from progan_dsl.cli import compile_main
from progan_dsl.spec import SpecError, load_spec, load_spec_text, source

BAD = Path(__file__).parent / "bad"
CASES = sorted(BAD.glob("*.yaml"))
SPECIAL = {  # files that cannot carry an expectation comment
    "empty.yaml": ("1:1", "spec is empty"),
    "binary_garbage.yaml": ("2:118", "not UTF-8 text (byte 128: 0x80)"),
}


def expectation(path: Path) -> tuple[str, str]:
    if path.name in SPECIAL:
        return SPECIAL[path.name]
    first = path.read_text().splitlines()[0]
    match = re.match(r"# expect: (\d+:\d+): (.*)$", first)
    assert match, f"{path} lacks an '# expect: LINE:COL: text' header"
    return match.group(1), match.group(2)


def test_there_are_at_least_20_malformed_specs() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_malformed_spec_exits_2_with_located_message(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where, text = expectation(path)
    rc = compile_main([str(path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err
    assert f"{path}:{where}:" in err, err
    assert text in err, err


def test_several_errors_are_reported_together_in_line_order() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(BAD / "several_errors.yaml")
    lines = [i.line for i in info.value.issues]
    assert len(lines) == 2 and lines == sorted(lines)
    assert [i.loc for i in info.value.issues] == [
        ("architecture", "latent_size"),
        ("training", "schedule", "fade_kimg"),
    ]


def test_alias_bomb_stops_at_the_node_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The billion-laughs file expands to 9 + 9**2 + ... + 9**9 (about 435 million) nodes; the
    builder refuses it after exactly MAX_NODES + 1 nodes (work counted, not timed)."""
    built = 0
    build = source._Builder.build

    def counting(self: source._Builder, node: Any, loc: Any, depth: int = 0) -> Any:
        nonlocal built
        built += 1
        return build(self, node, loc, depth)

    monkeypatch.setattr(source._Builder, "build", counting)
    with pytest.raises(SpecError, match=rf"more than {source.MAX_NODES} nodes \(an alias bomb"):
        load_spec(BAD / "alias_bomb.yaml")
    assert built == source.MAX_NODES + 1
    assert sum(9**k for k in range(1, 10)) > 1000 * source.MAX_NODES


def test_node_budget_is_what_stops_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    """A smaller budget refuses a document of ordinary size: the bound, not luck, stops it."""
    monkeypatch.setattr(source, "MAX_NODES", 10)
    with pytest.raises(SpecError, match="more than 10 nodes"):
        load_spec_text("spec_version: 1\nname: x\nlist: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n")


def test_python_tag_is_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"spec_version: 1\nname: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(SpecError, match="is not allowed"):
        load_spec_text(text, "evil.yaml")
    assert not marker.exists()


def test_missing_file_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert compile_main(["no/such/spec.yaml"]) == 2
    assert "no/such/spec.yaml:1:1: no such file" in capsys.readouterr().err
