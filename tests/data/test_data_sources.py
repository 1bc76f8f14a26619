"""Source folders with entries that are not regular files (named pipes, sockets, devices,
symlinks), image files over the size bound (a zip declaring a huge member, a large file), and
the one-way dependency between `sources` and the bundled MNIST."""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import progan_dsl
import progan_dsl.data.sources as sources
from progan_dsl.cli import dataset_main
from progan_dsl.data.sources import BUNDLED, MAX_FILE_BYTES, open_source

REPO = Path(progan_dsl.__file__).resolve().parents[1]


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """Two good images plus a named pipe, a socket, a device link, a dangling link and a link
    to a folder, all named like images; a pipe without an image extension; a link to an image
    outside the folder."""
    root = tmp_path / "src"
    _png(root / "a.png", 10)
    _png(root / "sub" / "b.png", 20)
    _png(tmp_path / "elsewhere" / "c.png", 30)
    _png(tmp_path / "elsewhere" / "d.png", 40)
    os.mkfifo(root / "pipe.png")
    os.mkfifo(root / "plain_pipe")
    (root / "zero.png").symlink_to("/dev/zero")
    (root / "gone.png").symlink_to(tmp_path / "missing.png")
    (root / "linked.png").symlink_to(tmp_path / "elsewhere" / "c.png")
    (root / "folder_link").symlink_to(tmp_path / "elsewhere")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(root / "sock.png"))
    except OSError:  # some file systems hold no sockets
        pass
    finally:
        server.close()
    return root


def test_special_files_are_skipped_and_listed_without_blocking(hostile: Path) -> None:
    out = hostile.parent / "ds"
    script = (
        "import sys\nfrom progan_dsl.cli import dataset_main\n"
        f"sys.exit(dataset_main(['create', '--source', {str(hostile)!r}, '--out', {str(out)!r}, "
        "'--resolution', '8', '--quiet']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, timeout=60, text=True
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    # a.png, linked.png (followed to elsewhere/c.png) and sub/b.png, in sorted path order
    assert manifest["num_images"] == 3
    level = np.load(out / "level_8x8.npy")
    assert level[:, 0, 0, 0].tolist() == [10, 30, 20]
    reasons = {s["file"]: s["reason"] for s in manifest["skipped"]}
    assert reasons["pipe.png"] == (
        f"NotRegularFileError: [Errno 22] is a named pipe, not a regular file: "
        f"'{hostile / 'pipe.png'}'"
    )
    assert "is a character device, not a regular file" in reasons["zero.png"]
    assert reasons["gone.png"].startswith("FileNotFoundError")
    if (hostile / "sock.png").exists():
        assert "is a socket, not a regular file" in reasons["sock.png"]
    assert manifest["ignored"] == ["folder_link/", "plain_pipe"]
    sock = ["sock.png"] if (hostile / "sock.png").exists() else []
    assert sorted(reasons) == sorted(["gone.png", "pipe.png", "zero.png", *sock])
    assert f"skipped {len(reasons)} unreadable file(s)" in proc.stderr


def test_channel_detection_skips_special_files(hostile: Path) -> None:
    for name in ("a.png", "sub/b.png", "linked.png"):
        (hostile / name).unlink()
    gray = hostile / "g.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gray)
    assert open_source(str(hostile)).native_channels() == 1  # the pipe is never opened


def test_source_that_is_a_named_pipe_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "images.zip")
    from progan_dsl.errors import UserError

    with pytest.raises(UserError, match="is a named pipe; give a folder of images"):
        open_source(str(tmp_path / "images.zip"))


def test_mnist_does_not_import_sources() -> None:
    """The bundled datasets are registered in `sources.BUNDLED`; `mnist.py` imports nothing from
    the data package, so the dependency goes one way (sources -> mnist)."""
    tree = ast.parse((REPO / "progan_dsl" / "data" / "mnist.py").read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {m for m in imported if m and m.startswith("progan_dsl.data")}, imported
    assert list(BUNDLED) == ["mnist"]


def _declare_size(archive: Path, member: str, size: int) -> None:
    """Rewrite the uncompressed size that `archive` declares for `member` (in its local header
    and its central directory entry), leaving the stored bytes as they are."""
    data = bytearray(archive.read_bytes())
    name = member.encode()
    local = next(
        i
        for i in range(len(data))
        if data[i : i + 4] == b"PK\x03\x04" and data[i + 30 : i + 30 + len(name)] == name
    )
    central = next(
        i
        for i in range(len(data))
        if data[i : i + 4] == b"PK\x01\x02" and data[i + 46 : i + 46 + len(name)] == name
    )
    data[local + 22 : local + 26] = size.to_bytes(4, "little")
    data[central + 24 : central + 28] = size.to_bytes(4, "little")
    archive.write_bytes(bytes(data))


def test_a_zip_member_declaring_gigabytes_is_skipped_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A small zip may declare a member of 3 GiB: it is refused from the declared size, before
    a byte of it is read (reading it used to hold gigabytes before the member was skipped)."""
    _png(tmp_path / "good.png", 50)
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(tmp_path / "good.png", "good.png")
        zf.writestr("huge.png", bytes(1000))
    declared = 3 << 30
    _declare_size(archive, "huge.png", declared)
    assert archive.stat().st_size < 4000
    assert zipfile.ZipFile(archive).getinfo("huge.png").file_size == declared > MAX_FILE_BYTES
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: str | zipfile.ZipInfo, *args: object, **kw: object):
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real_open(self, name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    out = tmp_path / "ds"
    args = ["create", "--source", str(archive), "--out", str(out), "--resolution", "8", "-q"]
    assert dataset_main(args) == 0
    assert "huge.png" not in opened and "good.png" in opened
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_images"] == 1
    assert manifest["skipped"] == [
        {
            "file": "huge.png",
            "reason": f"ValueError: the zip declares it as {declared:,} bytes, more than the "
            f"{MAX_FILE_BYTES:,} bytes (256 MiB) allowed for one image file; skipped unread",
        }
    ]
    assert (
        "huge.png: ValueError: the zip declares it as 3,221,225,472 bytes"
        in capsys.readouterr().err
    )


def test_a_file_over_the_bound_is_skipped_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "src"
    _png(root / "small.png", 70)
    big = root / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(big)
    size = big.stat().st_size
    monkeypatch.setattr(sources, "MAX_FILE_BYTES", 2000)
    assert (root / "small.png").stat().st_size < 2000 < size
    out = tmp_path / "ds"
    assert (
        dataset_main(
            ["create", "--source", str(root), "--out", str(out), "--resolution", "8", "-q"]
        )
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_images"] == 1 and np.load(out / "level_8x8.npy")[0, 0, 0, 0] == 70
    assert manifest["skipped"] == [
        {
            "file": "big.png",
            "reason": f"ValueError: the file is {size:,} bytes, more than the 2,000 bytes "
            "allowed for one image file; skipped unread",
        }
    ]
