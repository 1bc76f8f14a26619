"""Training under faults, with real signals and real processes: nothing already written is lost,
and every interrupted-and-resumed run ends bitwise equal to the uninterrupted one.

- SIGINT and SIGTERM: the iteration finishes, a checkpoint is written, the resume command is
  printed, the exit status is 128 + the signal; resuming continues bit for bit.
- SIGKILL at random moments (seeded): `--resume auto` continues bit for bit, and the log holds no
  record twice.
- damaged newest checkpoints (flipped bytes, truncated): `--resume auto` names them and resumes
  from the newest intact one.
- two trainers on one run folder: the second stops with exit 2 and a clear message.
- resuming an older checkpoint: its later checkpoints and log records move to abandoned/, and
  what reads the run afterwards (export) sees only the resumed future.
- a full disk while writing a checkpoint or a grid: exit 2 with "disk full while writing X ...
  resume with ...", no temporary file left, every older file intact.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from progan_dsl.checkpoint import Checkpoint, list_checkpoints
from progan_dsl.cli import export_main, train_main
from progan_dsl.train.loop import TrainResult
from tests.conftest import TRAIN_SEED

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TIMING = {"img_per_s", "elapsed_s", "time"}

# progan-train as users run it, slowed to 40 ms per iteration so signals land mid-run. With
# PAUSE_AT set it also stops once past that many images, writes the PAUSED file and waits for the
# GO file: a test then acts on a run known to be mid-way, however busy the machine is.
SLOW_TRAIN = """
import os, sys, time
import progan_dsl.train.loop as loop
real_train = loop.train
pause_at = int(os.environ.get("PAUSE_AT", "0"))
def hook(t):
    global pause_at
    time.sleep(0.04)
    if pause_at and t.images_shown >= pause_at:
        pause_at = 0
        open(os.environ["PAUSED"], "w").close()
        while not os.path.exists(os.environ["GO"]):
            time.sleep(0.01)
loop.train = lambda options, **kw: real_train(options, on_iteration=hook)
from progan_dsl.cli import train_main
sys.exit(train_main(sys.argv[1:]))
"""


def train_argv(spec: Path, data: Path, outdir: Path, *extra: str) -> list[str]:
    return [
        str(spec),
        "--data",
        str(data),
        "--outdir",
        str(outdir),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-progress",
        "--seed",
        str(TRAIN_SEED),
        *extra,
    ]


def start_slow(tmp_path: Path, argv: list[str], pause_at: int = 0) -> subprocess.Popen[str]:
    """The slowed trainer; with `pause_at`, it pauses there (see `paused` and `go`)."""
    script = tmp_path / "slow_train.py"
    script.write_text(SLOW_TRAIN)
    gate = {
        "PAUSE_AT": str(pause_at),
        "PAUSED": str(tmp_path / "paused"),
        "GO": str(tmp_path / "go"),
    }
    return subprocess.Popen(
        [sys.executable, str(script), *argv],
        cwd=ROOT,
        env={**ENV, **gate},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_images(outdir: Path, images: int, timeout: float = 300.0) -> Path:
    """Poll the run log until a checkpoint at or past `images` is recorded; the run folder. The
    timeout only guards a hang (a start and a few iterations take seconds on an idle machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for log in outdir.glob("*/log.jsonl"):
            for line in log.read_text().splitlines():
                record = json.loads(line)
                if record.get("event") == "checkpoint" and record["images_shown"] >= images:
                    return log.parent
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint at {images} images within {timeout} s")


def paused(tmp_path: Path, proc: subprocess.Popen[str], timeout: float = 300.0) -> None:
    """Wait until the slowed trainer pauses at its `pause_at` (the timeout only guards a hang)."""
    deadline = time.monotonic() + timeout
    while not (tmp_path / "paused").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"the trainer did not pause within {timeout} s"
        time.sleep(0.02)


def go(tmp_path: Path) -> None:
    """Let a paused trainer continue."""
    (tmp_path / "go").touch()


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def comparable(run: Path) -> list[dict]:
    return [
        {k: v for k, v in r.items() if k not in TIMING}
        for r in records(run)
        if r["event"] in ("tick", "metrics")
    ]


def assert_same_final_state(a_run: Path, b_run: Path) -> None:
    a, b = Checkpoint.load(a_run), Checkpoint.load(b_run)
    assert a.images_shown == b.images_shown == 320
    for net in ("G", "D", "G_ema"):
        for key, value in getattr(a, net).items():
            assert torch.equal(value, getattr(b, net)[key]), f"{net}.{key}"
    assert a.training is not None and b.training is not None
    for opt in ("opt_G", "opt_D"):
        for index, slots in getattr(a.training, opt)["state"].items():
            for slot, value in slots.items():
                assert torch.equal(value, getattr(b.training, opt)["state"][index][slot])
    assert a.training.loader == b.training.loader
    assert comparable(a_run) == comparable(b_run)
    final = "grids/fakes000000320.png"
    assert (a_run / final).read_bytes() == (b_run / final).read_bytes()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_checkpoints_and_resumes_bitwise(
    signum: int, reference_run: TrainResult, train_spec: Path, train_data: Path, tmp_path: Path
) -> None:
    outdir = tmp_path / "runs"
    proc = start_slow(tmp_path, train_argv(train_spec, train_data, outdir), pause_at=96)
    paused(tmp_path, proc)  # mid-run: past 96 images, far from the end at 320
    (run,) = outdir.iterdir()
    proc.send_signal(signum)
    go(tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "resume with: progan-train" in err and "Traceback" not in err
    last = records(run)[-2:]
    assert [r["event"] for r in last] == ["interrupted", "checkpoint"]
    assert last[0]["signal"] == signal.Signals(signum).name
    stopped_at = last[1]["images_shown"]
    assert 96 <= stopped_at < 320
    assert Checkpoint.load(run).images_shown == stopped_at
    assert (
        train_main(train_argv(train_spec, train_data, outdir, "--resume", "auto", "--quiet")) == 0
    )
    assert not (run / "abandoned").exists()  # nothing past the interruption's checkpoint
    assert_same_final_state(reference_run.run_dir, run)


def test_sigkill_at_random_moments_resumes_bitwise_without_duplicate_records(
    reference_run: TrainResult, train_spec: Path, train_data: Path, tmp_path: Path
) -> None:
    outdir = tmp_path / "runs"
    rng = random.Random(1234)
    kills = 0
    while kills < 3:
        proc = start_slow(
            tmp_path,
            train_argv(train_spec, train_data, outdir, *(["--resume", "auto"] if kills else [])),
        )
        wait_for_images(outdir, 32 * (kills + 1))
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere in the iterations that follow
        proc.kill()
        proc.communicate(timeout=30)
        kills += 1
    (run,) = outdir.iterdir()
    assert (
        train_main(train_argv(train_spec, train_data, outdir, "--resume", "auto", "--quiet")) == 0
    )
    assert_same_final_state(reference_run.run_dir, run)
    log = records(run)
    ticks = [r["tick"] for r in log if r["event"] == "tick"]
    assert ticks == list(range(1, len(ticks) + 1))  # no tick twice, none missing
    saved = [r["images_shown"] for r in log if r["event"] == "checkpoint"]
    assert len(saved) == len(set(saved))
    assert [r["event"] for r in log].count("start") == 1


def flip_tensor_bytes(path: Path) -> None:
    """Flip bytes inside a tensor's data (not the zip headers): only the CRC can tell."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max(
            (i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size
        )
    data = bytearray(path.read_bytes())
    header = info.header_offset  # the local header's name and extra lengths (torch pads extra)
    name_len, extra_len = (
        int.from_bytes(data[header + k : header + k + 2], "little") for k in (26, 28)
    )
    start = header + 30 + name_len + extra_len
    for offset in range(start + 16, start + 48):
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def run_to_256(
    train_spec: Path, train_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A run folder of the tiny schedule trained to 0.256 kimg by progan-train (each test that
    damages it works on its own copy)."""
    outdir = tmp_path_factory.mktemp("to_256")
    assert train_main(train_argv(train_spec, train_data, outdir, "--kimg", "0.256", "--quiet")) == 0
    (run,) = outdir.iterdir()
    return run


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_resume_auto_skips_damaged_newest_checkpoints(
    damage: str,
    reference_run: TrainResult,
    run_to_256: Path,
    train_spec: Path,
    train_data: Path,
    tmp_path: Path,
    capsys,
) -> None:
    outdir = tmp_path / "runs"
    run = outdir / run_to_256.name
    shutil.copytree(run_to_256, run)
    newest = list_checkpoints(run / "checkpoints")[-1]
    assert newest.name == "checkpoint-000000256.pt"
    if damage == "flipped":
        flip_tensor_bytes(newest)
    else:
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    capsys.readouterr()
    assert (
        train_main(train_argv(train_spec, train_data, outdir, "--resume", "auto", "--kimg", "0.32"))
        == 0
    )
    out = capsys.readouterr().out
    assert "note: skipped a damaged checkpoint" in out and "checkpoint-000000256.pt" in out
    assert ("CRC" if damage == "flipped" else "truncated") in out
    assert "resuming at 0.224 kimg" in out
    assert_same_final_state(reference_run.run_dir, run)


def test_a_second_trainer_on_the_same_run_folder_is_refused(
    train_spec: Path, train_data: Path, tmp_path: Path, capsys
) -> None:
    outdir = tmp_path / "runs"
    first = start_slow(tmp_path, train_argv(train_spec, train_data, outdir), pause_at=32)
    try:
        paused(tmp_path, first)  # holding its run folder, however long the second one takes
        (run,) = outdir.iterdir()
        code = train_main(train_argv(train_spec, train_data, outdir, "--resume", "auto"))
        err = capsys.readouterr().err
        assert code == 2 and "in use by another progan-train" in err and "Traceback" not in err
        assert f"pid {first.pid}" in err
    finally:
        first.kill()
        first.communicate(timeout=30)
    log = records(run)
    assert [r["event"] for r in log].count("resume") == 0  # the second wrote nothing


def test_resuming_an_older_checkpoint_abandons_its_future(
    reference_run: TrainResult, train_spec: Path, train_data: Path, tmp_path: Path
) -> None:
    outdir = tmp_path / "runs"  # the whole schedule trained: a copy of the reference run
    run = outdir / reference_run.run_dir.name
    shutil.copytree(reference_run.run_dir, run)
    older = run / "checkpoints" / "checkpoint-000000256.pt"
    later = ["checkpoint-000000288.pt", "checkpoint-000000320.pt"]
    assert (
        train_main(
            train_argv(
                train_spec, train_data, outdir, "--resume", str(older), "--kimg", "0.288", "--quiet"
            )
        )
        == 0
    )
    (moved,) = (run / "abandoned").iterdir()
    assert sorted(p.name for p in moved.glob("*.pt")) == later
    dropped = [json.loads(line) for line in (moved / "log.jsonl").read_text().splitlines()]
    assert dropped and all(r["images_shown"] >= 256 for r in dropped)  # after checkpoint 256
    assert max(r["images_shown"] for r in records(run)) == 288  # the log is the resumed future
    out = tmp_path / "g.onnx"
    assert export_main(["--network", str(run), "--out", str(out), "--quiet"]) == 0
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["checkpoint"] == "checkpoint-000000288.pt"


def test_disk_full_while_writing_a_checkpoint(
    train_spec: Path, train_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import progan_dsl.checkpoint as ckpt_module

    real_save = torch.save
    calls = {"n": 0}

    def save(obj, fh, *args, **kwargs):  # the third checkpoint hits a full disk halfway
        calls["n"] += 1
        if calls["n"] == 3:
            fh.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), fh.name)
        return real_save(obj, fh, *args, **kwargs)

    monkeypatch.setattr(ckpt_module.torch, "save", save)
    outdir = tmp_path / "runs"
    assert train_main(train_argv(train_spec, train_data, outdir)) == 2
    err = capsys.readouterr().err
    assert "disk full while writing" in err and "nothing older was touched" in err
    assert "resume with: progan-train" in err and "Traceback" not in err
    (run,) = outdir.iterdir()
    # the message names the checkpoint it was writing, not its temporary file
    assert f"disk full while writing {run / 'checkpoints' / 'checkpoint-000000064.pt'};" in err
    assert not [p for p in run.rglob(".*tmp*")]  # no temporary file left
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == [
        "checkpoint-000000000.pt",
        "checkpoint-000000032.pt",
    ]
    for path in list_checkpoints(run / "checkpoints"):
        Checkpoint.read(path)  # intact
    monkeypatch.setattr(ckpt_module.torch, "save", real_save)
    assert (
        train_main(
            train_argv(
                train_spec, train_data, outdir, "--resume", "auto", "--quiet", "--kimg", "0.096"
            )
        )
        == 0
    )


def test_disk_full_while_writing_a_grid(
    train_spec: Path, train_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import progan_dsl.fsutil as fsutil

    real = fsutil._write_synced
    calls = {"n": 0}

    def write(path: Path, data: bytes) -> None:
        if path.suffix == ".png":
            calls["n"] += 1
            if calls["n"] == 4:
                path.write_bytes(data[:10])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(fsutil, "_write_synced", write)
    outdir = tmp_path / "runs"
    assert train_main(train_argv(train_spec, train_data, outdir)) == 2
    err = capsys.readouterr().err
    assert "disk full while writing" in err and ".png" in err and "resume with" in err
    (run,) = outdir.iterdir()
    assert not [p for p in run.rglob(".*tmp*")]
    for path in (run / "grids").glob("*.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # every grid that exists is whole
