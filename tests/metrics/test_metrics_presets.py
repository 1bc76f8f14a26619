"""Named metric presets (`--preset fid50k_full`, ...), results appended to the log of the run a
generator came from, and progress on stderr for the long steps (silent with --quiet)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from progan_dsl.cli import metrics_main
from progan_dsl.data import CreateOptions, create_dataset
from progan_dsl.errors import UserError
from progan_dsl.generate import open_sampler
from progan_dsl.metrics import evaluate, runlog
from progan_dsl.metrics.fid import FeatureStats, fid_from_stats, kernel_inception_distance
from progan_dsl.metrics.progress import show_progress
from progan_dsl.metrics.registry import PRESETS, Preset, preset_key, resolve_presets
from tests.conftest import write_tiny_run

EARLIER_LINE = '{"time": "2026-01-01T00:00:00+0000", "event": "tick", "images_shown": 1000}\n'


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("presets")
    rng = np.random.default_rng(0)
    np.save(root / "real.npy", rng.integers(0, 256, (32, 16, 16), dtype=np.uint8))
    create_dataset(
        CreateOptions(source=str(root / "real.npy"), out=root / "ds", resolution=16, progress=False)
    )
    run = root / "runs" / "00001-tiny"
    write_tiny_run(run, [(16, "stable")])  # one checkpoint, 1000 images trained
    (run / "run.json").write_text('{"run": "00001-tiny"}\n')
    return {"data": root / "ds", "run": run, "root": root}


@pytest.fixture
def small_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Presets with CPU-test-sized counts, registered like the real ones."""
    monkeypatch.setitem(PRESETS, "swd16", Preset("swd16", "swd", 16, 16, "test"))
    monkeypatch.setitem(PRESETS, "msssim8", Preset("msssim8", "msssim", 8, None, "test"))
    monkeypatch.setitem(PRESETS, "fid_all", Preset("fid_all", "fid", 40, None, "test"))


def test_preset_names_and_result_keys() -> None:
    assert [p.name for p in resolve_presets(["FID50K_full", " swd16k", "fid50k_full"])] == [
        "fid50k_full",
        "swd16k",
    ]
    with pytest.raises(UserError, match="unknown preset 'fid50'.*did you mean 'fid5k'"):
        resolve_presets(["fid50"])
    fid, swd = PRESETS["fid50k_full"], PRESETS["swd16k"]
    assert (fid.metric, fid.num_fake, fid.num_real) == ("fid", 50_000, None)
    assert (swd.num_fake, swd.num_real) == (16_384, 16_384)  # the paper's SWD image count
    assert PRESETS["msssim20k"].pairs == 10_000  # the paper's MS-SSIM pairs
    assert preset_key(fid, "fid") == "fid50k_full"
    assert preset_key(swd, "swd_avg") == "swd16k_avg" and preset_key(swd, "swd_16") == "swd16k_16"
    assert "fid, 50,000 generated vs all real images" in fid.describe()


def test_run_folder_layout_agrees_with_training() -> None:
    from progan_dsl.train import rundir

    assert (runlog.LOG_NAME, runlog.RUN_INFO) == (rundir.LOG_NAME, rundir.RUN_INFO)
    assert runlog.RUN_PATTERN.pattern == rundir.RUN_PATTERN.pattern


def test_presets_score_and_append_to_the_run_log(
    sources: dict[str, Path], small_presets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run = sources["run"]
    log = run / "log.jsonl"
    log.write_text(EARLIER_LINE)
    report = sources["root"] / "presets.json"
    ckpt = next((run / "checkpoints").glob("*.pt"))  # a checkpoint inside the run folder
    net = ["--network", str(ckpt), "--data", str(sources["data"])]
    argv = [*net, "--preset", "swd16,msssim8", "--seed", "3", "--json", str(report)]
    assert metrics_main(argv) == 0
    out = capsys.readouterr().out
    assert f"appended to {log}" in out

    data = json.loads(report.read_text())
    fake = torch.from_numpy(open_sampler(run, device="cpu").sample_uint8(16, 3))
    from progan_dsl.metrics.cli import load_real_images

    want = evaluate(["swd"], load_real_images(sources["data"], 16, 16), fake, seed=3)
    assert data["metrics"]["swd16_avg"] == pytest.approx(want["swd_avg"], rel=1e-6)
    want_msssim = evaluate(["msssim"], None, fake[:8], seed=3, msssim_pairs=4)["msssim"]
    assert data["metrics"]["msssim8"] == pytest.approx(want_msssim, rel=1e-6)
    assert data["presets"] == {
        "swd16": {"num_fake": 16, "num_real": 16},
        "msssim8": {"num_fake": 8, "num_real": None},
    }

    text = log.read_text()
    assert text.startswith(EARLIER_LINE)  # what was there is untouched
    records = [json.loads(line) for line in text.splitlines()[1:]]
    assert [(r["event"], r["source"], r["preset"]) for r in records] == [
        ("metrics", "progan-metrics", "swd16"),
        ("metrics", "progan-metrics", "msssim8"),
    ]
    first = records[0]
    assert (first["images_shown"], first["kimg"], first["resolution"]) == (1000, 1.0, 16)
    assert (first["num_fake"], first["num_real"], first["seed"]) == (16, 16, 3)
    assert first["checkpoint"] == "checkpoint-000001000.pt"
    assert first["swd16_avg"] == data["metrics"]["swd16_avg"]
    assert records[1]["msssim8"] == data["metrics"]["msssim8"]

    assert metrics_main([*argv, "--no-log", "--quiet"]) == 0
    assert log.read_text() == text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--preset", "swd16", "--num", "16"], "a --preset fixes its own image counts"),
        (["--preset", "swd16", "--metrics", "swd"], "not allowed with argument"),
        (["--preset", "fid_5k"], "unknown preset 'fid_5k' (did you mean 'fid5k'?)"),
    ],
)
def test_preset_user_errors_exit_2(
    sources: dict[str, Path],
    small_presets: None,
    extra: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--network", str(sources["run"]), "--data", str(sources["data"]), *extra]
    assert metrics_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_preset_needs_its_number_of_images(
    sources: dict[str, Path], small_presets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = sources["root"] / "few.npy"
    np.save(fake, np.zeros((10, 1, 16, 16), np.uint8))
    argv = ["--fake", str(fake), "--data", str(sources["data"]), "--preset", "swd16"]
    assert metrics_main(argv) == 2
    assert "--preset swd16 scores 16 generated images; " in capsys.readouterr().err


def test_appending_never_leaves_half_a_line(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text(EARLIER_LINE)
    record = runlog.metrics_record({"fid": 1.5}, images_shown=2000, preset="fid5k")
    real_write = os.write

    def short(fd: int, data: bytes) -> int:
        return real_write(fd, data[:10])

    monkeypatch.setattr(runlog.os, "write", short)
    with pytest.raises(UserError, match=f"disk full while appending to {log}; the log is unch"):
        runlog.append_record(tmp_path, record)
    assert log.read_text() == EARLIER_LINE

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runlog.os, "write", full)
    with pytest.raises(UserError, match="disk full while appending"):
        runlog.append_record(tmp_path, record)
    monkeypatch.setattr(runlog.os, "write", real_write)
    runlog.append_record(tmp_path, record)
    assert json.loads(log.read_text().splitlines()[1])["fid"] == 1.5


def test_run_folder_of_sources(sources: dict[str, Path], tmp_path: Path) -> None:
    run = sources["run"]
    ckpt = next((run / "checkpoints").glob("*.pt"))
    assert runlog.run_folder_of(run) == run and runlog.run_folder_of(ckpt) == run
    assert runlog.run_folder_of(tmp_path / "g.onnx") is None
    assert runlog.run_folder_of(sources["root"]) is None


# ---- progress -------------------------------------------------------------------------------


def test_long_steps_show_progress_on_stderr_only_when_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from progan_dsl.metrics.synthetic import uniform_noise

    fake = uniform_noise(12, 32, seed=1)
    real = uniform_noise(12, 32, seed=2)
    features = torch.randn(30, 8, generator=torch.Generator().manual_seed(0))
    for shown in (False, True):
        with show_progress(shown):
            evaluate(["swd", "msssim"], real, fake, msssim_pairs=50)
            kernel_inception_distance(features, features.flip(0), num_subsets=5, subset_size=10)
            stats = FeatureStats.from_features(features)
            fid_from_stats(stats, stats)
        captured = capsys.readouterr()
        assert captured.out == ""
        if not shown:
            assert captured.err == ""
            continue
        err = captured.err
        assert "progan-metrics: MS-SSIM pairs" in err and "50/50" in err
        assert "progan-metrics: SWD levels" in err
        assert "progan-metrics: KID subsets of 10" in err and "5/5" in err
        assert "progan-metrics: FID of 30 real and 30 generated images" in err


def test_the_command_shows_generation_progress_unless_quiet(
    sources: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--network", str(sources["run"]), "--metrics", "msssim", "--num", "20", "--no-log"]
    assert metrics_main([*argv, "--pairs", "10"]) == 0
    err = capsys.readouterr().err
    assert "progan-metrics: generating" in err and "20/20" in err
    assert "progan-metrics: MS-SSIM pairs" in err
    assert metrics_main([*argv, "--pairs", "10", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_inception_features_show_progress(monkeypatch, capsys) -> None:
    from progan_dsl.metrics import inception

    class Pool(torch.nn.Module):  # stands in for Inception-v3: 2048 features per image
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3)).repeat(1, 683)[:, : inception.FEATURE_DIM]

    monkeypatch.setattr(inception, "load_inception", lambda device: Pool())
    images = torch.zeros(5, 3, 8, 8, dtype=torch.uint8)
    with show_progress(True):
        got = inception.inception_features(images, batch_size=2, desc="Inception features, real")
    assert got.shape == (5, inception.FEATURE_DIM)
    err = capsys.readouterr().err
    assert "progan-metrics: Inception features, real" in err and "5/5" in err
