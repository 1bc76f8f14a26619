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


def test_field_errors_and_cross_field_rules_are_reported_in_one_pass() -> None:
    """A bad field does not hide a rule broken elsewhere: the rules whose inputs are valid run
    on the fields that validated, and both problems come back at once, each at its line."""
    with pytest.raises(SpecError) as info:
        load_spec(BAD / "field_and_rule_errors.yaml")
    issues = [(i.line, i.col, i.loc) for i in info.value.issues]
    assert issues == [
        (5, 3, ("architecture", "latent_size")),
        (33, 31, ("training", "schedule", "minibatch", 16)),
    ]
    assert info.value.issues[1].message == (
        "minibatch 6 is not a multiple of the minibatch-stddev group size 4"
    )


TINY_TEXT = (Path(__file__).parents[1] / "specs" / "tiny.yaml").read_text()


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        # which resolutions the minibatch table must cover depends on final_resolution, which
        # did not validate: that rule waits
        (
            [("final_resolution: 16", "final_resolution: x"), ("8: 16, 16: 8}", "8: 16}")],
            [("architecture", "final_resolution")],
        ),
        # a section with a validator of its own (exactly one of rule/table) is not half-built;
        # the minibatch rule does not need it and reports
        (
            [
                ("table: {4: 16", "rule: {}\n    table: {4: 16"),
                ("16: 8}\n  tick", "16: 6}\n  tick"),
            ],
            [("architecture", "channels"), ("training", "schedule", "minibatch", 16)],
        ),
        # a rule over the schedule with a bad tick_kimg elsewhere in training
        (
            [("total_kimg: 0.384", "total_kimg: 0.1"), ("tick_kimg: 0.064", "tick_kimg: -1")],
            [("training", "schedule", "total_kimg"), ("training", "tick_kimg")],
        ),
        # a bad layer: the minibatch rule reads D's layers (its group size), so it waits
        (
            [("out: lower}", "out: lowr}"), ("16: 8}\n  tick", "16: 6}\n  tick")],
            [("architecture", "discriminator", "block", 1, "out")],
        ),
    ],
    ids=["rule_waits_for_its_input", "own_validator", "schedule_rule", "layer_waits"],
)
def test_rules_run_when_their_inputs_are_valid(
    edits: list[tuple[str, str]], expected: list[tuple[object, ...]]
) -> None:
    text = TINY_TEXT
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "x.yaml")
    assert [i.loc for i in info.value.issues] == expected, info.value


@pytest.mark.parametrize(
    ("value", "got"),
    [
        ("[4]", "got 1 ([4])"),
        ("[4, 4, 4]", "got 3 ([4, 4, 4])"),
        ("[]", "got 0 ([])"),
        ("4", "got 4"),
    ],
)
def test_base_shape_of_the_wrong_length_says_so(value: str, got: str) -> None:
    """Not "missing required key": the list is there, with the wrong number of items."""
    for args in (["architecture.base_shape=" + value], []):
        text = (
            TINY_TEXT
            if args
            else TINY_TEXT.replace(
                "  final_resolution", f"  base_shape: {value}\n  final_resolution"
            )
        )
        with pytest.raises(SpecError) as info:
            load_spec_text(text, "x.yaml", overrides=args)
        (issue,) = info.value.issues
        assert issue.loc == ("architecture", "base_shape")
        assert issue.message == (
            f"a list of 2 items is needed, {got}: (height, width) of the first stage; 4x4 in "
            "the paper, 4x8 gives 2:1 images."
        )
        assert (issue.path, issue.line) == (("--set " + args[0], 0) if args else ("x.yaml", 8))


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("# a comment\n\n- spec_version: 1\n", (3, 1), "a list"),
        ("# a comment\n---\n  42\n", (3, 3), "a number (42)"),
        ("\n\n'just text'\n", (3, 1), "a string ('just text')"),
        ("# only a document marker and a null\n---\n~\n", (3, 1), None),
    ],
)
def test_a_spec_that_is_not_a_mapping_is_located_at_its_value(
    text: str, where: tuple[int, int], what: str | None
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "x.yaml")
    (issue,) = info.value.issues
    assert (issue.line, issue.col) == where
    expected = "spec is empty" if what is None else f"spec must be a mapping of keys, not {what}"
    assert issue.message.startswith(expected), issue.message
