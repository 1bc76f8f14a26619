"""Malformed specs: each gives exit code 2, a located message, and no traceback."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from progan_dsl.cli import compile_main
from progan_dsl.spec import SpecError, load_spec, load_spec_text

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


def test_alias_bomb_fails_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(SpecError, match="alias bomb"):
        load_spec(BAD / "alias_bomb.yaml")
    assert time.perf_counter() - start < 1.0


def test_python_tag_is_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"spec_version: 1\nname: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(SpecError, match="is not allowed"):
        load_spec_text(text, "evil.yaml")
    assert not marker.exists()


def test_missing_file_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert compile_main(["no/such/spec.yaml"]) == 2
    assert "no/such/spec.yaml:1:1: no such file" in capsys.readouterr().err
