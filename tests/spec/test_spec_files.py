"""Hostile files as a spec or an `extends` target: devices, named pipes, symlink loops, NUL
characters in paths, oversized files. Each is refused before it is read (nothing blocks, nothing
fills memory) with exit code 2 and a message naming the file, and nothing is written."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from progan_dsl.cli import compile_main, train_main
from progan_dsl.spec import SpecError, load_spec
from progan_dsl.spec.source import MAX_SPEC_BYTES

TOO_LARGE = f"is {MAX_SPEC_BYTES + 1} bytes, more than the {MAX_SPEC_BYTES} allowed"
CHILD = "spec_version: 1\nextends: {target}\nname: child\n"  # `extends` at 2:1


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A named pipe. A writer thread waits to open it: should the code under test open the pipe
    for reading after all, it would get end-of-file (a wrong message) instead of hanging."""
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    writer = threading.Thread(target=lambda: os.close(os.open(path, os.O_WRONLY)), daemon=True)
    writer.start()
    yield path
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer's open return
    writer.join()
    os.close(reader)


def _device(name: str) -> Path:
    path = Path("/dev") / name
    if not path.exists():
        pytest.skip(f"{path} does not exist on this system")
    return path


def _loop(tmp: Path) -> Path:
    (tmp / "a.yaml").symlink_to(tmp / "b.yaml")
    (tmp / "b.yaml").symlink_to(tmp / "a.yaml")
    return tmp / "a.yaml"


def _large(tmp: Path) -> Path:
    path = tmp / "large.yaml"
    with path.open("wb") as fh:  # sparse: no disk used
        fh.truncate(MAX_SPEC_BYTES + 1)
    return path


# (id, make the hostile path in tmp, what the message says about it)
TARGETS: list[tuple[str, Callable[[Path], Path], str]] = [
    ("dev_zero", lambda tmp: _device("zero"), "is a character device, not a regular file"),
    ("dev_urandom", lambda tmp: _device("urandom"), "is a character device, not a regular file"),
    ("symlink_loop", _loop, "a loop of symbolic links"),
    ("too_large", _large, TOO_LARGE),
    ("folder", lambda tmp: tmp, "is a folder, not a regular file"),
]


def _expect_refused(
    argv: list[str], where: str, fragment: str, capsys: pytest.CaptureFixture[str], out: Path
) -> None:
    """progan-compile and progan-train both exit 2 with `where: ...fragment`, no traceback, and
    progan-train writes no run folder."""
    for main, extra in ((compile_main, []), (train_main, ["--outdir", str(out)])):
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert f"error: invalid spec:\n  {where}: " in err, err
        assert fragment in err, err
    assert not out.exists()


@pytest.mark.parametrize(("id", "make", "fragment"), TARGETS, ids=[t[0] for t in TARGETS])
def test_hostile_spec_file(
    id: str,
    make: Callable[[Path], Path],
    fragment: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = make(tmp_path)
    _expect_refused([str(path)], f"{path}:1:1", fragment, capsys, tmp_path / "runs")


@pytest.mark.parametrize(("id", "make", "fragment"), TARGETS, ids=[t[0] for t in TARGETS])
def test_hostile_extends_target(
    id: str,
    make: Callable[[Path], Path],
    fragment: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = make(tmp_path)
    child = tmp_path / "child.yaml"
    child.write_text(CHILD.format(target=target))
    where = f"{child}:2:1: extends"
    out = tmp_path / "runs"
    _expect_refused([str(child)], where, f"extends '{target}': {fragment}", capsys, out)


def test_named_pipe_as_spec(fifo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fragment = "is a named pipe, not a regular file: a spec is a YAML file"
    _expect_refused([str(fifo)], f"{fifo}:1:1", fragment, capsys, tmp_path / "runs")


def test_named_pipe_as_extends_target(
    fifo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    child = tmp_path / "child.yaml"
    child.write_text(CHILD.format(target=fifo.name))
    where = f"{child}:2:1: extends"
    fragment = f"extends '{fifo.name}': is a named pipe, not a regular file"
    _expect_refused([str(child)], where, fragment, capsys, tmp_path / "runs")


def test_nul_character_in_paths(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "a\x00b.yaml")
    assert str(info.value).endswith("a\x00b.yaml:1:1: the path holds a NUL character")
    # in YAML a double-quoted "\0" is a NUL character
    child = tmp_path / "child.yaml"
    child.write_text(CHILD.format(target='"base\\0.yaml"'))
    with pytest.raises(SpecError) as info:
        load_spec(child)
    assert str(info.value) == (
        f"invalid spec:\n  {child}:2:1: extends: extends 'base\\x00.yaml': the path holds a NUL "
        "character"
    )


def test_a_file_that_grows_past_the_bound_while_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading stops at MAX_SPEC_BYTES + 1 bytes whatever the size said: a file that grows after
    its size was checked (or a /proc file that reports 0) is still refused, not read whole."""
    import progan_dsl.fsutil as fsutil

    real_fstat = os.fstat
    path = tmp_path / "growing.yaml"
    path.write_bytes(b"#" * (3 * MAX_SPEC_BYTES))
    monkeypatch.setattr(
        fsutil.os, "fstat", lambda fd: os.stat_result((*real_fstat(fd)[:6], 0, *real_fstat(fd)[7:]))
    )
    with pytest.raises(SpecError, match=f"file is larger than {MAX_SPEC_BYTES} bytes"):
        load_spec(path)
