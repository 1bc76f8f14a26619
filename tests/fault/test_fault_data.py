"""Fault suite for datasets: real SIGKILLs at every step of `progan-dataset create --force`, a
full disk (injected ENOSPC, and a real 1 MiB tmpfs where the OS allows a private mount), a
read-only mount, and journals of live processes. After every fault, either the old or the new
complete dataset is at DIR (or the next run gets there), and no temporary file is left."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import progan_dsl
import progan_dsl.data.create as create_module
import progan_dsl.data.npyfile as npyfile
import progan_dsl.fsutil as fsutil
from progan_dsl.cli import dataset_main
from progan_dsl.data import ImageDataset
from progan_dsl.fsutil import FAULT_POINTS, recover_interrupted
from tests.forked import run_forked

REPO = Path(progan_dsl.__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture
def old(tmp_path: Path) -> tuple[Path, Path]:
    """(source .npy of 5 images, DIR holding the dataset of all 5: the 'old' dataset)."""
    src = tmp_path / "src.npy"
    np.save(src, np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), np.uint8))
    out = tmp_path / "ds"
    assert (
        dataset_main(
            ["create", "--source", str(src), "--out", str(out), "--resolution", "16", "--quiet"]
        )
        == 0
    )
    return src, out


def _create_args(src: Path, out: Path, *extra: str) -> list[str]:
    return [
        "create",
        "--source",
        str(src),
        "--out",
        str(out),
        "--resolution",
        "16",
        "--quiet",
        *extra,
    ]


def _killed_at(point: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `progan-dataset ARGS` in a child process (forked) that SIGKILLs itself at fault point
    `point` (an fsutil step) or on entering `create.<point>`."""

    def child() -> int:
        def die(*args: object, **kwargs: object) -> None:
            os.kill(os.getpid(), signal.SIGKILL)

        if point in FAULT_POINTS:
            real = fsutil.fault_point
            fsutil.fault_point = lambda name: die() if name == point else real(name)
        else:
            setattr(create_module, point, die)
        return dataset_main(args)

    return run_forked(child)


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# At each step: what DIR holds right after the kill, and after recovery.
AFTER_KILL = {
    "_write_rows": ("old", "old"),  # while writing levels: the temp folder is incomplete
    "journal": ("old", "old"),
    "write_manifest": ("old", "old"),
    "complete": ("old", "new"),  # the new dataset is complete: recovery finishes the job
    "moved-aside": ("missing", "new"),
    "published": ("new", "new"),
    "removing-old": ("new", "new"),  # the old one partly deleted: recovery deletes the rest
}


def test_every_fault_point_is_covered() -> None:
    assert set(FAULT_POINTS) <= set(AFTER_KILL)


@pytest.mark.parametrize("point", list(AFTER_KILL))
def test_sigkill_during_force_replacement(
    old: tuple[Path, Path], point: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = old
    proc = _killed_at(point, _create_args(src, out, "--force", "--max-images", "3"))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    right_after, recovered = AFTER_KILL[point]
    if right_after == "missing":
        assert not out.exists()
    else:
        assert ImageDataset(out).num_images == {"old": 5, "new": 3}[right_after]
    assert any(name.startswith(".ds.txn-") for name in _listing(out.parent))  # the journal
    capsys.readouterr()
    if right_after == "missing":  # a reader of a missing DIR recovers by itself
        assert ImageDataset(out).num_images == 3
    else:  # a later create recovers first: same options as the killed run, no --force
        code = dataset_main(_create_args(src, out, "--skip-existing", "--max-images", "3"))
        assert code == {"new": 0, "old": 2}[recovered]
        out_err = capsys.readouterr()
        assert out_err.out == ""  # --quiet: reused (exit 0) or refused (exit 2) silently
        assert ("does not match" in out_err.err) == (recovered == "old")
        assert ImageDataset(out).num_images == {"old": 5, "new": 3}[recovered]
    assert ImageDataset(out).verify() == []
    assert _listing(out.parent) == ["ds", "src.npy"]


def test_recovery_restores_the_old_dataset_when_the_new_one_is_incomplete(
    old: tuple[Path, Path],
) -> None:
    """A kill after DIR was moved aside but before the new folder was complete cannot happen
    in the protocol; recovery still restores the old folder if the temp one is incomplete."""
    src, out = old
    proc = _killed_at("moved-aside", _create_args(src, out, "--force", "--max-images", "3"))
    assert proc.returncode == -signal.SIGKILL
    tmp = next(p for p in out.parent.iterdir() if p.name.startswith(".ds.tmp-"))
    (tmp / "manifest.json").unlink()  # make the new folder incomplete
    done = recover_interrupted(out)
    assert any("removed" in line and "incomplete" in line for line in done)
    assert any(line.startswith(f"restored {out}") for line in done)
    assert ImageDataset(out).num_images == 5
    assert _listing(out.parent) == ["ds", "src.npy"]


def test_a_live_journal_is_left_alone(old: tuple[Path, Path]) -> None:
    src, out = old
    journal = out.parent / ".ds.txn-999999.json"
    journal.write_text(
        json.dumps(
            {
                "version": 1,
                "target": "ds",
                "new": ".ds.tmp-999999",
                "old": ".ds.old-999999",
                "replace": True,
                "complete_file": "manifest.json",
            }
        )
    )
    shutil.copytree(out, out.parent / ".ds.tmp-999999")  # complete, as if about to publish
    with open(journal) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another open file: a live writer holds it
        assert recover_interrupted(out) == []
        assert journal.exists() and (out.parent / ".ds.tmp-999999").exists()
    assert recover_interrupted(out) == [
        f"finished an interrupted replacement of {out} (the new version was complete)",
        f"removed {out.parent}/.ds.old-999999, the replaced version",
    ]
    assert _listing(out.parent) == ["ds", "src.npy"]


def test_a_complete_orphan_is_kept_when_something_else_took_its_place(tmp_path: Path) -> None:
    """A new (not replacing) dataset killed just before its rename, while another run created
    DIR: the finished temp folder is kept under a visible name, DIR is untouched."""
    src = tmp_path / "src.npy"
    np.save(src, np.zeros((2, 8, 8), np.uint8))
    out = tmp_path / "ds"
    proc = _killed_at(
        "complete",
        ["create", "--source", str(src), "--out", str(out), "--resolution", "8", "--quiet"],
    )
    assert proc.returncode == -signal.SIGKILL
    assert (
        dataset_main(
            [
                "create",
                "--source",
                str(src),
                "--out",
                str(tmp_path / "other"),
                "--resolution",
                "8",
                "--quiet",
            ]
        )
        == 0
    )
    (tmp_path / "other").rename(out)  # someone else's dataset now sits at DIR
    done = recover_interrupted(out)
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("ds.interrupted-")]
    assert len(kept) == 1 and ImageDataset(kept[0]).num_images == 2
    assert done[0].startswith(f"kept {kept[0]}: complete output of an interrupted run")
    assert ImageDataset(out).num_images == 2


# ---- full disk -----------------------------------------------------------------------------------


def _fail_after(calls: int, err: int = errno.ENOSPC):  # type: ignore[no-untyped-def]
    count = {"n": 0}
    real = npyfile.write_all

    def write_all(fh, data):  # type: ignore[no-untyped-def]
        count["n"] += 1
        if count["n"] > calls:
            raise OSError(err, os.strerror(err))
        real(fh, data)

    return write_all


@pytest.mark.parametrize(
    ("err", "reason"),
    [(errno.ENOSPC, "disk full"), (errno.EDQUOT, "disk quota exceeded")],
)
def test_injected_enospc_while_writing_levels(
    old: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    err: int,
    reason: str,
) -> None:
    src, out = old
    before = (out / "manifest.json").read_bytes()
    monkeypatch.setattr(npyfile, "write_all", _fail_after(4, err))  # 3 headers, 1 block
    capsys.readouterr()
    assert dataset_main(_create_args(src, out, "--force", "--max-images", "3")) == 2
    message = capsys.readouterr().err
    tmp = f"{out.parent}/.ds.tmp-{os.getpid()}"
    assert message == (
        f"error: {reason} while writing {tmp}/level_8x8.npy; nothing older was touched; the "
        "partial dataset was removed; free some space (or fix the permissions) and run the "
        "command again\n"
    )
    assert (out / "manifest.json").read_bytes() == before and ImageDataset(out).verify() == []
    assert _listing(out.parent) == ["ds", "src.npy"]


def test_injected_enospc_while_writing_the_manifest(
    old: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = old

    def full(directory: Path, manifest: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(directory / "manifest.json"))

    monkeypatch.setattr(create_module, "write_manifest", full)
    assert dataset_main(_create_args(src, out, "--force")) == 2
    assert "error: disk full while writing " in capsys.readouterr().err
    assert _listing(out.parent) == ["ds", "src.npy"] and ImageDataset(out).num_images == 5


def test_not_enough_free_space_is_refused_before_writing(
    old: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = old
    monkeypatch.setattr(shutil, "disk_usage", lambda _: SimpleNamespace(free=1000))
    assert dataset_main(_create_args(src, out, "--force")) == 2
    err = capsys.readouterr().err
    # 5 images x (3 x (256 + 64 + 16) + 8) bytes + 1 MiB for the rest = 1053656 B = 1028 KiB
    assert err.startswith(
        f"error: disk full while writing {out}: the dataset needs about "
        f"1028 KiB and {out.parent} has 0 KiB free; nothing older was touched"
    )
    assert _listing(out.parent) == ["ds", "src.npy"]


# ---- a real small disk -------------------------------------------------------------------------


def _in_private_tmpfs(tmp_path: Path, script: str, size: str = "1m") -> dict[str, object]:
    """Run `script` (Python; `DISK` is the mount point) with a fresh tmpfs of `size` mounted in
    a private user+mount namespace; skip where the OS does not allow that."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    disk = tmp_path / "disk"
    disk.mkdir()
    (tmp_path / "script.py").write_text(f"DISK = {str(disk)!r}\n" + textwrap.dedent(script))
    command = (
        f"mount -t tmpfs -o size={size} tmpfs {disk} || exit 77; "
        f"exec {sys.executable} {tmp_path / 'script.py'}"
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", command], env=ENV, capture_output=True, text=True, timeout=60
    )
    if (
        proc.returncode == 77
        or "unshare failed" in proc.stderr
        or (proc.returncode != 0 and "Operation not permitted" in proc.stderr)
    ):
        pytest.skip(f"no private tmpfs here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


_TMPFS_SCRIPT = """
import contextlib, io, json, os, sys
import numpy as np
import progan_dsl.data.create as create
from progan_dsl.cli import dataset_main
from progan_dsl.data import ImageDataset

src = os.path.join(DISK, "..", "src.npy")
out = os.path.join(DISK, "ds")
SMALL = os.path.join(DISK, "..", "small.npy")
np.save(SMALL, np.zeros((4, 16, 16, 3), np.uint8))
np.save(src, np.random.default_rng(0).integers(0, 256, (64, 128, 128, 3), np.uint8))
def run(*args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = dataset_main(["create", "--out", out, "--quiet", *args])
    return code, err.getvalue()
def used():
    st = os.statvfs(DISK)
    return st.f_blocks - st.f_bfree
results = {"small": run("--source", os.path.join(DISK, "..", "small.npy"), "--resolution", "16")}
results["used_before"] = used()
results["precheck"] = run("--source", src, "--resolution", "128", "--force")
CHECK = create._check_space
create._check_space = lambda *args: None  # let the writes meet the full disk
results["enospc"] = run("--source", src, "--resolution", "128", "--force")
create._check_space = CHECK
results["left"] = sorted(os.listdir(DISK))
results["old_images"] = ImageDataset(out).num_images
results["old_ok"] = ImageDataset(out).verify() == []
results["used_after"] = used()
os.system(f"mount -o remount,ro {DISK}")
results["readonly"] = run("--source", src, "--resolution", "128", "--force")
os.system(f"mount -o remount,rw {DISK}")
# Killed after DIR was moved aside, then the disk turned read-only: readers say so, cleanly.
# The killed writer is a fork of this process (its modules already imported).
import signal
import progan_dsl.fsutil as f
pid = os.fork()
if pid == 0:
    if "torch" in sys.modules:  # no OpenMP pool after a fork: one thread, inline
        sys.modules["torch"].set_num_threads(1)
    f.fault_point = lambda n: os.kill(os.getpid(), signal.SIGKILL) if n == 'moved-aside' else 0
    dataset_main(['create', '--source', SMALL, '--out', out, '--resolution', '16', '--quiet',
                  '--force', '--max-images', '2'])
    os._exit(0)
status = os.waitpid(pid, 0)[1]
results["killed"] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
results["missing"] = not os.path.exists(out)
os.system(f"mount -o remount,ro {DISK}")
err = io.StringIO()
with contextlib.redirect_stderr(err):
    results["info_ro"] = [dataset_main(["info", out]), err.getvalue()]
os.system(f"mount -o remount,rw {DISK}")
results["after_rw"] = ImageDataset(out).num_images
results["left_rw"] = sorted(os.listdir(DISK))
print(json.dumps(results))
"""


def test_a_real_full_disk_and_a_read_only_mount(tmp_path: Path) -> None:
    results = _in_private_tmpfs(tmp_path, _TMPFS_SCRIPT, size="4m")
    disk = tmp_path / "disk"
    assert results["small"] == [0, ""]
    code, err = results["precheck"]
    # 64 images x (3 x (128^2 + 64^2 + 32^2 + 16^2 + 8^2 + 4^2) + 8) + 1 MiB = 5242368 B
    assert code == 2 and err.startswith(
        f"error: disk full while writing {disk}/ds: the dataset needs about {5242368 >> 10} KiB "
        f"and {disk} has "
    ), err
    code, err = results["enospc"]
    assert code == 2, err
    assert err.startswith(f"error: disk full while writing {disk}/.ds.tmp-"), err
    assert "nothing older was touched; the partial dataset was removed" in err
    assert results["left"] == ["ds"]  # no temp folder, no journal
    assert results["old_images"] == 4 and results["old_ok"] is True
    assert results["used_after"] == results["used_before"]  # the temp folder's space is back
    code, err = results["readonly"]
    assert code == 2 and err.startswith(f"error: read-only file system while writing {disk}/"), err
    assert "Traceback" not in err
    assert results["killed"] == -signal.SIGKILL and results["missing"] is True
    code, err = results["info_ro"]
    assert code == 2 and err.startswith(
        f"error: {disk}/ds: no such dataset directory (cannot finish the interrupted publication "
        f"{disk}/.ds.txn-"
    ), err
    assert "[Errno 30] Read-only file system" in err and "Traceback" not in err
    assert results["after_rw"] == 2 and results["left_rw"] == ["ds"]
