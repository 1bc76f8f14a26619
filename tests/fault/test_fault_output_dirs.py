"""Fault suite for output folders (`fsutil.plan_output_dir` / `staged_dir`, used by
`progan-compile --emit-source`): non-empty targets are refused unless they hold an earlier
output of the same kind and nothing else, files are never hidden or removed, SIGKILL at any step
of a --force replacement is recovered, and a full disk becomes one message."""

from __future__ import annotations

import compileall
import errno
import json
import os
import signal
from importlib.util import cache_from_source
from pathlib import Path

import pytest

import progan_dsl
import progan_dsl.codegen.emit as emit_module
import progan_dsl.fsutil as fsutil
from progan_dsl.cli import compile_main
from progan_dsl.errors import UserError
from progan_dsl.fsutil import (
    MARKER_NAME,
    plan_output_dir,
    staged_dir,
    translate_write_errors,
    write_atomic_with,
)
from tests.forked import run_forked

REPO = Path(progan_dsl.__file__).resolve().parents[1]
TINY = REPO / "tests" / "specs" / "tiny.yaml"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def emissions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """Reference contents of the plain and the fused emission of tiny.yaml."""
    root = tmp_path_factory.mktemp("ref")
    assert compile_main([str(TINY), "--emit-source", str(root / "plain"), "--no-fuse"]) == 0
    assert compile_main([str(TINY), "--emit-source", str(root / "fused"), "--fuse"]) == 0
    refs = {name: _snapshot(root / name) for name in ("plain", "fused")}
    for ref in refs.values():
        del ref[MARKER_NAME]  # holds a time stamp
    assert refs["plain"] != refs["fused"]
    return refs


def _without_marker(folder: Path) -> dict[str, bytes]:
    files = _snapshot(folder)
    files.pop(MARKER_NAME)
    return files


def test_a_copy_of_a_run_folder_is_never_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "000100.pt").write_bytes(b"weights")
    (run / "log.jsonl").write_text("{}\n")
    before = _snapshot(run)
    for extra in ((), ("--force",)):
        capsys.readouterr()
        assert compile_main([str(TINY), "--emit-source", str(run), *extra]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"error: {run} is not empty and is not an earlier progan-compile --emit-source "
            "output; refusing to touch it: choose a new or empty folder (nothing was written)\n"
        )
        assert _snapshot(run) == before
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_a_file_at_or_above_the_target_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("precious")
    assert compile_main([str(TINY), "--emit-source", str(target), "--force"]) == 2
    assert capsys.readouterr().err == (
        f"error: {target} is a file, not a folder; give a folder path (nothing was written)\n"
    )
    assert compile_main([str(TINY), "--emit-source", str(target / "sub")]) == 2
    assert capsys.readouterr().err == (
        f"error: {target / 'sub'}: {target} is a file, so no folder can be made under it\n"
    )
    assert target.read_text() == "precious" and sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_force_replaces_only_an_earlier_emission_with_nothing_foreign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], emissions: dict[str, dict[str, bytes]]
) -> None:
    out = tmp_path / "pkg"
    (out).mkdir()  # an empty folder is filled
    assert compile_main([str(TINY), "--emit-source", str(out), "--no-fuse"]) == 0
    assert _without_marker(out) == emissions["plain"]
    marker = json.loads((out / MARKER_NAME).read_text())
    assert marker["kind"] == "progan-compile --emit-source"
    assert marker["files"] == sorted(emissions["plain"])
    capsys.readouterr()
    assert compile_main([str(TINY), "--emit-source", str(out), "--fuse"]) == 2
    assert capsys.readouterr().err == (
        f"error: {out} holds an earlier progan-compile --emit-source output; pass --force to "
        "replace it\n"
    )
    # Importing the package makes __pycache__ (byte code written where an import writes it, here
    # without importing): derived from our files, replaced with them.
    assert compileall.compile_dir(out, quiet=1, legacy=False)
    assert (out / "__pycache__" / Path(cache_from_source(str(out / "layers.py"))).name).is_file()
    assert compile_main([str(TINY), "--emit-source", str(out), "--fuse", "--force"]) == 0
    assert _without_marker(out) == emissions["fused"]
    (out / "notes.md").write_text("mine")
    (out / "data").mkdir()
    (out / "data" / "x.npy").write_bytes(b"mine too")
    capsys.readouterr()
    assert compile_main([str(TINY), "--emit-source", str(out), "--force"]) == 2
    assert capsys.readouterr().err == (
        f"error: {out} holds files that progan-compile --emit-source did not write (data/x.npy, "
        "notes.md); move them out or choose another folder (nothing was written)\n"
    )
    assert (out / "notes.md").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["pkg"]


def test_an_output_of_another_kind_is_not_replaced(tmp_path: Path) -> None:
    out = tmp_path / "grids"
    with staged_dir(plan_output_dir(out, kind="progan-generate", force=False)) as tmp:
        (tmp / "0000.png").write_bytes(b"png")
    with pytest.raises(
        UserError,
        match=r"is not an earlier progan-compile --emit-source output "
        r"\(it holds progan-generate output\)",
    ):
        plan_output_dir(out, kind="progan-compile --emit-source", force=True)
    assert plan_output_dir(out, kind="progan-generate", force=True).replace is True


def test_a_symlink_at_the_target_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    assert compile_main([str(TINY), "--emit-source", str(tmp_path / "link")]) == 0
    assert compile_main([str(TINY), "--emit-source", str(tmp_path / "link"), "--force"]) == 0
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "layers.py").is_file()
    assert sorted(os.listdir(tmp_path)) == ["link", "real"]


@pytest.mark.parametrize("point", ["complete", "moved-aside", "removing-old"])
def test_sigkill_during_a_forced_emission_is_recovered(
    tmp_path: Path, point: str, emissions: dict[str, dict[str, bytes]]
) -> None:
    out = tmp_path / "pkg"
    assert compile_main([str(TINY), "--emit-source", str(out), "--no-fuse"]) == 0

    def child() -> int:  # in a forked process
        real = fsutil.fault_point
        fsutil.fault_point = lambda name: (
            os.kill(os.getpid(), signal.SIGKILL) if name == point else real(name)
        )
        return compile_main([str(TINY), "--emit-source", str(out), "--fuse", "--force"])

    proc = run_forked(child, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    if point == "complete":
        assert _without_marker(out) == emissions["plain"]  # untouched so far
    # The next emission finishes the interrupted one first, then refuses (no --force) or not.
    code = compile_main([str(TINY), "--emit-source", str(out), "--fuse", "--force"])
    assert code == 0 and _without_marker(out) == emissions["fused"]
    assert sorted(os.listdir(tmp_path)) == ["pkg"]


def test_a_full_disk_during_emission_keeps_the_earlier_one(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    emissions: dict[str, dict[str, bytes]],
) -> None:
    out = tmp_path / "pkg"
    assert compile_main([str(TINY), "--emit-source", str(out), "--no-fuse"]) == 0

    def full(*args: object, **kwargs: object) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(emit_module, "render_stage", full)
    capsys.readouterr()
    assert compile_main([str(TINY), "--emit-source", str(out), "--force"]) == 2
    assert capsys.readouterr().err == (
        f"error: disk full while writing {out}; nothing older was touched; the partial package "
        "was removed\n"
    )
    assert _without_marker(out) == emissions["plain"]
    assert sorted(os.listdir(tmp_path)) == ["pkg"]


# ---- the reusable write-error translation (for checkpoints and grids) --------------------------


def test_torch_save_to_a_full_device_becomes_one_user_error() -> None:
    torch = pytest.importorskip("torch")
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with pytest.raises(UserError) as caught:
        with translate_write_errors("checkpoint 000100.pt", "resume with --resume auto"):
            with open("/dev/full", "wb") as fh:
                torch.save({"w": torch.zeros(1000)}, fh)
    # write() errors carry no file name: the message names what the caller said it writes
    assert str(caught.value) == (
        "disk full while writing checkpoint 000100.pt; nothing older was touched; resume with "
        "--resume auto"
    )


@pytest.mark.parametrize(
    ("err", "reason"),
    [
        (errno.ENOSPC, "disk full"),
        (errno.EDQUOT, "disk quota exceeded"),
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_atomic_writes_fail_cleanly(tmp_path: Path, err: int, reason: str) -> None:
    target = tmp_path / "grid.png"
    target.write_bytes(b"old grid")

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(err, os.strerror(err), str(tmp))

    with pytest.raises(UserError) as caught:
        with translate_write_errors(target, "training stopped; resume with --resume auto"):
            write_atomic_with(target, write)
    # the message names the file being written, not its temporary sibling
    assert str(caught.value) == (
        f"{reason} while writing {target}; nothing older was touched; training stopped; "
        "resume with --resume auto"
    )
    assert target.read_bytes() == b"old grid" and sorted(os.listdir(tmp_path)) == ["grid.png"]


def test_other_errors_pass_through() -> None:
    with pytest.raises(OSError, match="Input/output error"):
        with translate_write_errors("x"):
            raise OSError(errno.EIO, "Input/output error")
    with pytest.raises(ValueError):
        with translate_write_errors("x"):
            raise ValueError("a bug")
