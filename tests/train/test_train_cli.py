"""The run side of `progan-train`: options that become spec fields, bounds, the device a process
uses, where a run starts (links, elastic restarts), what the run says when it ends, a closed
stdout, and running out of memory.

Runs here are short (0.064 kimg: four iterations of the tiny spec) and in-process.
"""

from __future__ import annotations

import errno
import shutil
import sys
from pathlib import Path

import pytest
import torch

from progan_dsl import devices
from progan_dsl.checkpoint import Checkpoint, list_checkpoints
from progan_dsl.cli import train_main
from progan_dsl.errors import UserError
from progan_dsl.spec import load_spec
from progan_dsl.train import distributed as distr
from progan_dsl.train.cli import parser, smaller_minibatch, style_overrides
from progan_dsl.train.rundir import RunDir
from progan_dsl.train.start import _decide
from tests.fault.test_fault_train import train_argv as argv


def log_text(run: Path) -> str:
    return (run / "log.txt").read_text()


@pytest.fixture(scope="module")
def short_run(train_spec: Path, train_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of 0.064 kimg (checkpoints at 0, 32 and 64 images)."""
    outdir = tmp_path_factory.mktemp("short")
    assert train_main(argv(train_spec, train_data, outdir, "--kimg", "0.064", "--quiet")) == 0
    (run,) = outdir.iterdir()
    return run


@pytest.fixture
def run_copy(short_run: Path, tmp_path: Path) -> Path:
    """A private copy of `short_run` in tmp_path/runs (tests may continue it)."""
    target = tmp_path / "runs" / short_run.name
    shutil.copytree(short_run, target)
    return target


# ---- numbers and StyleGAN-style options --------------------------------------------------------


def test_kimg_is_bounded_like_the_other_numbers(
    train_spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_main([str(train_spec), "--kimg", "1e300", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "argument --kimg: '1e300' is more than the 1,000,000 kimg allowed" in err
    assert "Traceback" not in err
    assert train_main([str(train_spec), "--kimg", "1000000", "--dry-run"]) == 0


def test_snap_mirror_metrics_become_spec_fields(
    train_spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parser().parse_args(
        [str(train_spec), "--snap", "3", "--mirror", "--metrics", "SWD,msssim,swd"]
    )
    assert style_overrides(args) == [
        ("--snap 3", ["training.snapshot.every_kimg=0.192"]),  # 3 ticks of 0.064 kimg
        ("--mirror=1", ["training.dataset.mirror=true"]),
        (
            "--metrics SWD,msssim,swd",
            ["training.evaluation.metrics=[swd, msssim]", "training.evaluation.every_kimg=0.192"],
        ),
    ]
    assert train_main([str(train_spec), "--snap", "3", "--mirror", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "options     --snap 3: training.snapshot.every_kimg=0.192; --mirror=1:" in out
    assert "checkpoint 0.192 kimg (keep 3)" in out
    assert "x-flips (mirror) on" in out
    # --set comes first; --mirror=0 turns a spec's mirror off; the spec's metric interval stays
    args = parser().parse_args(
        [
            str(train_spec),
            "--set",
            "training.dataset.mirror=true",
            "--set",
            "training.evaluation.every_kimg=1",
            "--mirror=0",
            "--metrics",
            "kid",
        ]
    )
    sets = [arg for _, group in style_overrides(args) for arg in group]
    assert sets == ["training.dataset.mirror=false", "training.evaluation.metrics=[kid]"]
    loaded = load_spec(train_spec, overrides=[*args.overrides, *sets])
    assert loaded.spec.training.dataset.mirror is False
    assert loaded.spec.training.evaluation.metrics == ["kid"]
    assert "--set training.dataset.mirror=false" in loaded.standalone_text()  # in spec.yaml


def test_metric_presets_that_an_evaluation_matches(train_spec: Path) -> None:
    args = parser().parse_args([str(train_spec), "--metrics", "fid10k,swd"])
    assert style_overrides(args) == [
        (
            "--metrics fid10k,swd",
            [
                "training.evaluation.metrics=[fid, swd]",
                "training.evaluation.num_images=10000",  # as many generated as real images
                "training.evaluation.every_kimg=0.032",  # the checkpoint interval
            ],
        )
    ]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--metrics=fidd", "unknown metric 'fidd' (did you mean 'fid'?)"),
        ("--metrics=fid50k_full", "progan-metrics --preset fid50k_full on a checkpoint"),
        ("--metrics=fid10k,fid5k", "presets with different image counts (5000, 10000)"),
        ("--metrics=swd_floor", "'swd_floor' is not computed during training"),
        ("--mirror=2", "'2' is not 1 or 0"),
        ("--snap=0", "'0' must be at least 1"),
    ],
)
def test_bad_style_options_exit_2(
    option: str, message: str, train_spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_main([str(train_spec), option, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# ---- devices and threads (no GPU needed: torch.cuda is mocked) ----------------------------------


@pytest.fixture
def four_gpus(monkeypatch: pytest.MonkeyPatch) -> list[torch.device]:
    chosen: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    return chosen


def test_rank_device_counts_from_the_index_given(four_gpus: list[torch.device]) -> None:
    assert devices.rank_device("cuda:1") == torch.device("cuda", 1)  # a single process
    assert devices.rank_device(None) == torch.device("cuda", 0)
    assert devices.rank_device("cuda", 1, 2) == torch.device("cuda", 1)  # torchrun rank 1 of 2
    assert devices.rank_device("cuda:2", 1, 2) == torch.device("cuda", 3)
    assert devices.rank_device("cpu", 1, 2) == torch.device("cpu")
    with pytest.raises(UserError, match=r"local rank 1 of 2 would use cuda:4, but there are 4"):
        devices.rank_device("cuda:3", 1, 2)
    with pytest.raises(UserError, match="there are 4 CUDA device"):
        devices.rank_device("cuda:7")


def test_single_process_keeps_an_explicit_gpu_index(
    four_gpus: list[torch.device], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    env = distr.init_distributed("cuda:1")
    assert env.device == torch.device("cuda", 1) and not env.enabled and env.restart == 0
    assert four_gpus == [torch.device("cuda", 1)]
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # a one-process torchrun job
    assert distr.init_distributed("cuda:2").restart == 1


def test_process_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.setattr(devices, "usable_cores", lambda: 8)
    monkeypatch.setattr(devices, "default_threads", lambda: 5)
    assert devices.process_threads(3, cpu, 2, launched=True) == 3  # --threads wins
    assert devices.process_threads(None, cpu, 2, launched=True) == 4  # a share per process
    assert devices.process_threads(None, cpu, 16, launched=True) == 1
    assert devices.process_threads(None, cpu, 1, launched=False) == 5
    assert devices.process_threads(None, gpu, 1, launched=False) is None


# ---- where a run starts ------------------------------------------------------------------------


def test_resume_through_a_link_continues_the_real_folder(
    run_copy: Path, train_spec: Path, train_data: Path, tmp_path: Path
) -> None:
    link = tmp_path / "latest"
    link.symlink_to(run_copy, target_is_directory=True)
    outdir = run_copy.parent
    code = train_main(
        argv(train_spec, train_data, outdir, "--resume", str(link), "--kimg", "0.096", "--quiet")
    )
    assert code == 0
    assert [p.name for p in outdir.iterdir()] == [run_copy.name]  # no new run folder
    assert Checkpoint.load(run_copy).images_shown == 96
    assert "resuming at 0.064 kimg in " + str(run_copy.resolve()) in log_text(run_copy)


def test_links_to_one_run_share_its_lock(
    run_copy: Path, train_spec: Path, train_data: Path, tmp_path: Path, capsys
) -> None:
    link = tmp_path / "other-name"
    link.symlink_to(run_copy, target_is_directory=True)
    before = [p.name for p in list_checkpoints(run_copy / "checkpoints")]
    with RunDir(run_copy).lock():  # as a first trainer holds it
        code = train_main(
            argv(train_spec, train_data, tmp_path, "--resume", str(link), "--kimg", "0.096")
        )
    assert code == 2
    assert "the run folder is in use by another progan-train" in capsys.readouterr().err
    assert [p.name for p in list_checkpoints(run_copy / "checkpoints")] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other-name", "runs"]


def test_elastic_restart_resumes_the_newest_checkpoint(run_copy: Path, train_spec: Path) -> None:
    loaded = load_spec(train_spec)
    outdir = run_copy.parent
    first = run_copy / "checkpoints" / "checkpoint-000000032.pt"
    # first attempts: as asked
    assert _decide(None, outdir, loaded)[0].checkpoint is None
    assert _decide(str(first), outdir, loaded)[0].checkpoint == str(first.resolve())
    # restarts: the newest intact checkpoint of the run, whatever the command line said
    for resume in (None, "auto", str(first), str(run_copy)):
        decision, ckpt = _decide(resume, outdir, loaded, restart=1)
        assert ckpt is not None and ckpt.images_shown == 64, resume
        assert decision.run == str(run_copy.resolve())
        assert decision.notes[0].startswith("torchrun restarted the workers (restart 1): resuming")
    empty = outdir.parent / "empty"
    decision, ckpt = _decide(None, empty, loaded, restart=2)
    assert ckpt is None and decision.run is None
    assert "no checkpoint of this spec in" in decision.notes[0]


def test_restart_count_reads_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    assert distr.restart_count() == 2
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT")
    assert distr.restart_count() == 0


def test_peer_lost_recognises_gloo_errors() -> None:
    gloo = RuntimeError(
        "[../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
        "[127.0.0.1]:54671. This is typically caused by a remote worker crashing."
    )
    assert distr.peer_lost(gloo)
    assert distr.peer_lost(RuntimeError("Read error: Connection reset by peer"))
    assert not distr.peer_lost(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not distr.peer_lost(ValueError("connection closed by peer"))


# ---- what a run says ---------------------------------------------------------------------------


def test_done_line_labels_the_run_and_this_invocation(
    run_copy: Path, train_spec: Path, train_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "done: 0.064 kimg in " in log_text(run_copy)  # the first invocation: one span
    capsys.readouterr()
    outdir = run_copy.parent
    code = train_main(argv(train_spec, train_data, outdir, "--resume", "auto", "--kimg", "0.128"))
    assert code == 0
    out = capsys.readouterr().out
    assert "done: the run is at 0.128 kimg after " in out
    assert " of training in all; this invocation trained 0.064 kimg (from 0.064 kimg) in " in out


def test_a_run_from_another_runs_checkpoint_says_which(
    run_copy: Path, train_spec: Path, train_data: Path, tmp_path: Path, capsys
) -> None:
    ckpt = run_copy / "checkpoints" / "checkpoint-000000064.pt"
    outdir = tmp_path / "new"
    code = train_main(
        argv(train_spec, train_data, outdir, "--resume", str(ckpt), "--kimg", "0.096")
        + ["--set", "training.tick_kimg=0.032"]  # other training settings: a new run folder
    )
    assert code == 0
    out = capsys.readouterr().out
    (run,) = outdir.iterdir()
    told = f"note: a new run starts from its full training state in {ckpt} (0.064 kimg, "
    assert told in out and told in log_text(run)
    assert "this invocation trained 0.032 kimg (from 0.064 kimg)" in out


# ---- a closed stdout ---------------------------------------------------------------------------


class ClosedPipe:
    """stdout whose reader went away: every write raises EPIPE."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_closed_stdout_keeps_training_with_the_log(
    train_spec: Path, train_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert train_main(argv(train_spec, train_data, tmp_path, "--kimg", "0.064")) == 0
    err = capsys.readouterr().err
    assert err.count("note: stdout was closed (its reader went away); training goes on") == 1
    (run,) = tmp_path.iterdir()
    text = log_text(run)
    assert "note: stdout was closed" in text and "done: 0.064 kimg in " in text
    assert "tick 1 " in text
    assert Checkpoint.load(run).images_shown == 64


class Stream:
    """stderr that works until `closed` is set, then raises EPIPE like a closed pipe."""

    def __init__(self) -> None:
        self.closed = False
        self.text = ""

    def write(self, text: str) -> int:
        if self.closed:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        self.text += text
        return len(text)

    def flush(self) -> None:
        if self.closed:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_a_bar_whose_stream_closes_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    from progan_dsl.train.console import Progress

    stream = Stream()
    monkeypatch.setattr(sys, "stderr", stream)
    bar = Progress(1000, 0, enabled=True)
    bar._bar.mininterval = 0  # draw on every update
    bar.update(100, "4x4")
    assert bar.active and "kimg" in stream.text
    stream.closed = True
    bar.update(200, "4x4")  # raised EPIPE inside tqdm: dropped, not raised
    assert not bar.active
    bar.close()
    stream.closed = False
    open_until_close = Progress(1000, 0, enabled=True)
    stream.closed = True
    open_until_close.close()  # the final clear raised EPIPE: dropped
    assert not open_until_close.active
    closed_from_the_start = Progress(1000, 0, enabled=True)
    assert not closed_from_the_start.active
    closed_from_the_start.update(500, "8x8")
    closed_from_the_start.close()


# ---- out of memory -----------------------------------------------------------------------------


def test_smaller_minibatch_keeps_whole_groups() -> None:
    assert smaller_minibatch(16, 4, 1) == 8
    assert smaller_minibatch(16, 4, 2) == 8
    assert smaller_minibatch(24, 4, 2) == 8
    assert smaller_minibatch(8, 4, 2) is None  # 4 per process is one group already
    assert smaller_minibatch(4, 4, 1) == 2  # a group is min(group size, minibatch)
    assert smaller_minibatch(6, None, 1) == 3
    assert smaller_minibatch(1, None, 1) is None


def test_out_of_memory_says_what_fits_and_keeps_the_run(
    train_spec: Path, train_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from progan_dsl.train.trainer import Trainer

    real_iteration = Trainer.iteration

    def iteration(self: Trainer) -> None:
        if self.images_shown >= 64:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        real_iteration(self)

    monkeypatch.setattr(Trainer, "iteration", iteration)
    assert train_main(argv(train_spec, train_data, tmp_path, "--kimg", "0.128")) == 2
    err = capsys.readouterr().err
    (run,) = tmp_path.iterdir()
    assert err.startswith(
        "error: out of memory at 8x8 (fade, 0.064 kimg): minibatch 16 does not fit in cpu's "
        "memory (CUDA out of memory. Tried to allocate 20.00 GiB). Try a smaller minibatch, "
        "e.g. --set training.schedule.minibatch.8=8"
    )
    assert f"add --resume {run} to go on from the newest" in err and "Traceback" not in err
    assert Checkpoint.load(run).images_shown == 64  # the last checkpoint, intact
    with RunDir(run).lock():  # released
        pass


def test_other_runtime_errors_keep_their_traceback(
    train_spec: Path, train_data: Path, tmp_path: Path, monkeypatch
) -> None:
    from progan_dsl.train.trainer import Trainer

    def iteration(self: Trainer) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Trainer, "iteration", iteration)
    with pytest.raises(RuntimeError, match="a bug"):
        train_main(argv(train_spec, train_data, tmp_path, "--kimg", "0.064"))
