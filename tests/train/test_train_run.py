"""End-to-end runs on the CPU: the run folder, SIGKILL in a fade-in + `--resume auto` ending
bitwise equal to an uninterrupted run, NaN rollback, and the CLI's answers."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from progan_dsl.checkpoint import Checkpoint, list_checkpoints
from progan_dsl.cli import train_main
from progan_dsl.compiler import compile_spec
from progan_dsl.errors import UserError
from progan_dsl.ir import Stage
from progan_dsl.ir.dump import dump
from progan_dsl.spec import load_spec, load_spec_text
from progan_dsl.train.loop import TrainingDiverged, TrainOptions, TrainResult, train
from tests.conftest import TRAIN_SEED
from tests.forked import run_forked

SEED = TRAIN_SEED
# Killed after the iteration that reaches 240 images: the last checkpoint is at 224 images,
# in the middle of the 16x16 fade-in (192-256 images, alpha 0.5 there).
KILL_AT = 240
RESUME_FROM = 224

TIMING = {"img_per_s", "elapsed_s", "time"}  # the only log fields allowed to differ between runs


def options(spec: Path, data: Path, outdir: Path, **kw) -> TrainOptions:
    return TrainOptions(
        spec=str(spec),
        data=str(data),
        outdir=str(outdir),
        device="cpu",
        progress=False,
        threads=1,
        **kw,
    )


@pytest.fixture(scope="module")
def uninterrupted(reference_run: TrainResult) -> TrainResult:
    return reference_run


def ticks(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in r.items() if k not in TIMING}
        for r in records
        if r["event"] in ("tick", "metrics")
    ]


def test_run_folder_contents(uninterrupted: TrainResult, train_spec: Path) -> None:
    run = uninterrupted.run_dir
    assert run.name == "00000-tiny_train"
    assert uninterrupted.images_shown == 320
    loaded = load_spec(train_spec)
    assert (run / "spec.yaml").read_text() == train_spec.read_text()
    resolved = load_spec_text((run / "spec.resolved.yaml").read_text(), "resolved.yaml")
    assert resolved.hash == loaded.hash
    assert "minibatch_stddev" in (run / "spec.resolved.yaml").read_text()
    assert (run / "graph.txt").read_text() == dump(compile_spec(loaded).graphs)
    info = json.loads((run / "run.json").read_text())
    assert (info["spec_hash"], info["seed"]) == (loaded.hash, SEED)
    # one grid per tick (every 64 images) plus reals and latest; PNG files
    grids = sorted(p.name for p in (run / "grids").iterdir())
    assert grids == [f"fakes{i:09d}.png" for i in range(0, 321, 64)] + ["latest.png", "reals.png"]
    assert (run / "grids" / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "plots" / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    # snapshot.keep = 3 of the checkpoints every 32 images
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == [
        "checkpoint-000000256.pt",
        "checkpoint-000000288.pt",
        "checkpoint-000000320.pt",
    ]
    events = [json.loads(line)["event"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert events[:3] == ["start", "phase", "checkpoint"]
    assert events.count("phase") == 5 and events.count("tick") == 5 and events[-1] == "done"
    metrics = [r for r in ticks(run) if r["event"] == "metrics"]
    assert len(metrics) == 1 and metrics[0]["swd_avg"] > 0
    assert set(uninterrupted.img_per_s) == {4, 8, 16}


def test_checkpoint_is_complete_and_loads(uninterrupted: TrainResult) -> None:
    ckpt = Checkpoint.load(uninterrupted.run_dir)
    assert ckpt.images_shown == 320
    assert ckpt.stage == Stage(16, "stable")
    assert ckpt.resumable and ckpt.D is not None and ckpt.training is not None
    assert ckpt.training.loader["position"] == 320
    assert ckpt.run_state is not None and ckpt.run_state.seed == SEED
    assert ckpt.spec_hash == load_spec_text(ckpt.spec_text).hash
    G = ckpt.generator()
    images = G(torch.randn(3, ckpt.program().spec.architecture.latent_size))
    assert images.shape == (3, 1, 16, 16) and torch.isfinite(images).all()
    # G EMA is a smoothed copy, not G itself
    assert not torch.equal(ckpt.G["b16_torgb.weight"], ckpt.G_ema["b16_torgb.weight"])


def test_sigkill_in_a_fade_in_then_resume_is_bitwise_identical(
    uninterrupted: TrainResult, train_spec: Path, train_data: Path, tmp_path: Path
) -> None:
    outdir = tmp_path / "b"

    def hook(trainer: object) -> None:
        if trainer.images_shown >= KILL_AT:  # type: ignore[attr-defined]
            os.kill(os.getpid(), signal.SIGKILL)

    def killed_run() -> None:  # in a forked process
        train(options(train_spec, train_data, outdir, seed=SEED), on_iteration=hook)

    killed = run_forked(killed_run, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    # the run folder is intact after the kill
    (run,) = outdir.iterdir()
    for name in ("run.json", "spec.yaml", "spec.resolved.yaml", "graph.txt", "grids/reals.png"):
        assert (run / name).is_file(), name
    lines = (run / "log.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    for path in list_checkpoints(run / "checkpoints"):
        assert Checkpoint.read(path).images_shown == int(path.stem.split("-")[1])
    state = Checkpoint.load(run)
    assert state.images_shown == RESUME_FROM
    assert state.stage == Stage(16, "fade")  # killed inside the fade-in
    # a temporary file a kill during a checkpoint write would leave is ignored and removed
    stale = run / "checkpoints" / ".checkpoint-000000999.pt.tmp-4242"
    stale.write_bytes(b"partial")

    code = train_main(
        [
            str(train_spec),
            "--data",
            str(train_data),
            "--outdir",
            str(outdir),
            "--resume",
            "auto",
            "--device",
            "cpu",
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    assert [p.name for p in outdir.iterdir()] == [run.name]  # continued, not a new run
    assert not stale.exists()

    a = Checkpoint.load(uninterrupted.run_dir)
    b = Checkpoint.load(run)
    assert a.images_shown == b.images_shown == 320
    for net in ("G", "D", "G_ema"):
        sa, sb = getattr(a, net), getattr(b, net)
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{net}.{key}"
    assert a.training is not None and b.training is not None
    for opt in ("opt_G", "opt_D"):
        oa, ob = getattr(a.training, opt), getattr(b.training, opt)
        for index, slots in oa["state"].items():
            for slot, value in slots.items():
                assert torch.equal(value, ob["state"][index][slot]), f"{opt}[{index}].{slot}"
    assert a.training.loader == b.training.loader
    assert torch.equal(a.training.rng["train"], b.training.rng["train"])
    # the log reads as if nothing happened (up to timings), and so does the last grid
    assert ticks(uninterrupted.run_dir) == ticks(run)
    events = [json.loads(line)["event"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert events.count("resume") == 1 and events.count("phase") == 5
    final = "grids/fakes000000320.png"
    assert (uninterrupted.run_dir / final).read_bytes() == (run / final).read_bytes()

    # a finished run resumes as done; a larger --kimg trains on in the same folder
    done = train(options(train_spec, train_data, outdir, resume="auto"))
    assert done.already_done and done.images_shown == 320
    more = train(options(train_spec, train_data, outdir, resume="auto", kimg=0.352))
    assert (more.run_dir, more.images_shown) == (run, 352)


def test_resume_path_with_edited_training_starts_a_new_run_folder(
    uninterrupted: TrainResult, train_spec: Path, train_data: Path, tmp_path: Path
) -> None:
    checkpoint = uninterrupted.run_dir / "checkpoints" / "checkpoint-000000288.pt"
    edited = tmp_path / "edited.yaml"
    edited.write_text(
        train_spec.read_text().replace("training:\n", "training:\n  optimizer: {lr: 0.0005}\n")
    )
    result = train(
        options(edited, train_data, tmp_path / "runs", resume=str(checkpoint), kimg=0.32)
    )
    assert result.run_dir.parent == tmp_path / "runs" and result.images_shown == 320
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["started_from"] == str(checkpoint)
    state = Checkpoint.load(result.run_dir)
    assert state.training is not None
    assert state.training.opt_G["param_groups"][0]["lr"] == 0.0005
    # other networks: refused
    wider = tmp_path / "wider.yaml"
    wider.write_text(
        train_spec.read_text().replace("{4: 16, 8: 12, 16: 8}", "{4: 16, 8: 16, 16: 8}")
    )
    with pytest.raises(UserError, match="different architecture"):
        train(options(wider, train_data, tmp_path / "runs", resume=str(checkpoint)))


def test_nonfinite_loss_rolls_back_to_the_last_checkpoint(
    train_spec: Path, train_data: Path, tmp_path: Path
) -> None:
    seen = {}

    def poison(trainer) -> None:
        seen["trainer"] = trainer
        if trainer.images_shown >= 100 and "poisoned" not in seen:  # after checkpoint 96
            seen["poisoned"] = trainer.images_shown
            with torch.no_grad():
                trainer.G.b4_conv.weight[0, 0, 0, 0] = float("nan")

    with pytest.raises(TrainingDiverged, match="non-finite loss_D") as err:
        train(options(train_spec, train_data, tmp_path, seed=SEED), on_iteration=poison)
    assert (
        err.value.checkpoint is not None and err.value.checkpoint.name == "checkpoint-000000096.pt"
    )
    trainer = seen["trainer"]
    state = Checkpoint.read(err.value.checkpoint)
    assert trainer.images_shown == 96
    for key, value in trainer.G.state_dict().items():
        assert torch.equal(value, state.G[key]), key
    (run,) = tmp_path.iterdir()
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert records[-1]["event"] == "nonfinite"
    assert records[-1]["rolled_back_to"] == "checkpoint-000000096.pt"
    assert list_checkpoints(run / "checkpoints")[-1].name == "checkpoint-000000096.pt"


def test_dry_run_prints_the_schedule(train_spec: Path, capsys) -> None:
    assert train_main([str(train_spec), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "spec        tiny_train" in out
    assert "wgan_gp" in out and "decay 0.999" in out
    assert "   16  fade        0.192 -     0.256   0.00 -> 1.00" in out
    assert out.rstrip().endswith("total: 0.32 kimg (320 images)")


def test_user_errors_exit_2(train_spec: Path, train_data: Path, tmp_path: Path, capsys) -> None:
    assert train_main([str(train_spec), "--outdir", str(tmp_path), "--device", "cpu"]) == 2
    assert "no dataset: pass --data DIR" in capsys.readouterr().err
    rgb = tmp_path / "rgb.yaml"
    rgb.write_text(train_spec.read_text().replace("image_channels: 1", "image_channels: 3"))
    assert (
        train_main(
            [str(rgb), "--data", str(train_data), "--outdir", str(tmp_path), "--device", "cpu"]
        )
        == 2
    )
    assert "has 1 channel(s), spec 'tiny_train' makes 3" in capsys.readouterr().err
    assert (
        train_main(
            [
                str(train_spec),
                "--data",
                str(train_data),
                "--resume",
                str(tmp_path / "nothing.pt"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert "no such checkpoint file" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert train_main([str(train_spec), "--data", str(train_data), "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    assert not list(tmp_path.glob("0000*"))  # nothing was started


def test_diverged_run_exits_3(monkeypatch, train_spec: Path, capsys) -> None:
    import progan_dsl.train.loop as loop

    def diverge(options, **kw):
        raise TrainingDiverged("non-finite loss_D at 1 kimg", Path("checkpoint-000000096.pt"))

    monkeypatch.setattr(loop, "train", diverge)
    assert train_main([str(train_spec), "--device", "cpu"]) == 3
    assert "error: non-finite loss_D" in capsys.readouterr().err
