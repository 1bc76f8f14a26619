"""Well-formed checkpoint files with wrong contents, through every command that reads them.

Each mutation of a real checkpoint's contents (wrong types, missing keys, bad stage, wrong tensor
shapes, negative image counts, broken training state) must give exit 2, one message naming the
file and what is wrong, and no traceback, from progan-train --resume, progan-export,
progan-generate and progan-metrics alike. The structure is validated in one place
(`Checkpoint.read`), so the messages agree between commands.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from progan_dsl.checkpoint import list_checkpoints
from progan_dsl.cli import export_main, generate_main, metrics_main, train_main
from progan_dsl.train.loop import TrainResult

Payload = dict[str, Any]


def _set(key: str, value: Any) -> Callable[[Payload], None]:
    def change(p: Payload) -> None:
        p[key] = value

    return change


def _drop(key: str) -> Callable[[Payload], None]:
    return lambda p: p.pop(key)


def _in(outer: str, key: str, value: Any) -> Callable[[Payload], None]:
    def change(p: Payload) -> None:
        p[outer] = {**p[outer], key: value}

    return change


def _drop_in(outer: str, key: str) -> Callable[[Payload], None]:
    def change(p: Payload) -> None:
        p[outer] = {k: v for k, v in p[outer].items() if k != key}

    return change


# (name, change, message fragment); every command must say the fragment
STRUCTURE = [
    ("format", _set("format", "something-else"), "not a progan-dsl checkpoint"),
    ("version", _set("version", 99), "checkpoint version 99 is not supported"),
    ("spec_text_type", _set("spec_text", 42), "spec_text must be a string"),
    (
        "spec_text_invalid",
        _set("spec_text", "spec_version: 1\nname: 3\n"),
        "the spec stored in the checkpoint is invalid",
    ),
    ("spec_hash_type", _set("spec_hash", None), "spec_hash must be a string"),
    ("stage_missing", _drop("stage"), "stage must be {resolution, phase}"),
    (
        "stage_resolution_text",
        _in("stage", "resolution", "16"),
        "stage.resolution must be a positive",
    ),
    (
        "stage_resolution_bool",
        _in("stage", "resolution", True),
        "stage.resolution must be a positive",
    ),
    ("stage_not_in_spec", _in("stage", "resolution", 12), "stage 12/stable is not a stage of spec"),
    ("stage_phase", _in("stage", "phase", "middle"), "stage.phase must be one of fade, stable"),
    ("images_negative", _set("images_shown", -5), "images_shown must be a non-negative integer"),
    ("images_text", _set("images_shown", "320"), "images_shown must be a non-negative integer"),
    ("G_missing", _drop("G"), "G is missing"),
    ("G_type", _set("G", [1, 2, 3]), "G must map parameter names to tensors"),
    ("G_value", _in("G", "b16_torgb.bias", 0.5), "G must map parameter names to tensors"),
    (
        "G_shape",
        _in("G", "b16_torgb.weight", torch.zeros(1, 8, 3, 3)),
        "G: wrong shape b16_torgb.weight [1, 8, 3, 3] (expected [1, 8, 1, 1])",
    ),
    ("G_missing_key", _drop_in("G", "b16_conv1.weight"), "G: missing b16_conv1.weight"),
    ("G_extra_key", _in("G", "b32_conv0.weight", torch.zeros(3)), "G: unexpected b32_conv0.weight"),
    ("G_int", _in("G", "b16_torgb.bias", torch.zeros(1, dtype=torch.int64)), "G: non-float"),
    (
        "G_ema_shape",
        _in("G_ema", "b4_conv.bias", torch.zeros(7)),
        "G_ema: wrong shape b4_conv.bias",
    ),
    ("D_shape", _in("D", "b16_fromrgb.weight", torch.zeros(2, 2)), "D: wrong shape b16_fromrgb"),
    ("opt_missing", _drop("opt_G"), "opt_G must be a dict"),
    ("opt_structure", _set("opt_D", {"state": 3}), "opt_G/opt_D must be optimizer state dicts"),
    ("rng_type", _set("rng", "seed"), "rng must be a dict"),
    ("loader_type", _set("loader", [0]), "loader must be a dict"),
    ("extra_type", _set("extra", [1]), "extra (the run state) must be a dict"),
    ("info_type", _set("info", "x"), "info must be a dict"),
    ("D_dropped_with_training_state", _drop("D"), "D is missing"),
]
# Well-formed structure, training state that does not fit: only resuming reads it.
TRAINING = [
    (
        "opt_params",
        _in("opt_G", "param_groups", [{"params": [0, 1], "lr": 0.001}]),
        "its optimizer state does not fit the networks",
    ),
    ("rng_train", _in("rng", "train", torch.zeros(3)), "its RNG state is malformed"),
    ("rng_missing", _drop_in("rng", "numpy"), "its RNG state is malformed"),
    ("loader_images", _in("loader", "num_images", 5), "its data loader state does not fit"),
    ("loader_version", _in("loader", "version", 7), "its data loader state does not fit"),
]


@pytest.fixture(scope="module")
def payload(reference_run: TrainResult) -> Payload:
    newest = list_checkpoints(reference_run.run_dir / "checkpoints")[-1]
    return torch.load(newest, weights_only=True)


def write(payload: Payload, change: Callable[[Payload], None], path: Path) -> Path:
    mutated = dict(payload)
    change(mutated)
    torch.save(mutated, path)
    return path


def commands(
    ckpt: Path, data: Path, spec: Path, tmp: Path
) -> dict[str, tuple[Callable, list[str]]]:
    return {
        "train": (
            train_main,
            [
                str(spec),
                "--data",
                str(data),
                "--outdir",
                str(tmp / "runs"),
                "--resume",
                str(ckpt),
                "--device",
                "cpu",
                "--quiet",
            ],
        ),
        "export": (export_main, ["--network", str(ckpt), "--out", str(tmp / "g.onnx")]),
        "generate": (
            generate_main,
            ["--network", str(ckpt), "--device", "cpu", "--out", str(tmp / "g.png")],
        ),
        "metrics": (
            metrics_main,
            [
                "--network",
                str(ckpt),
                "--data",
                str(data),
                "--device",
                "cpu",
                "--num",
                "8",
                "--metrics",
                "swd",
            ],
        ),
    }


def check(main: Callable, argv: list[str], fragment: str, path: Path, capsys) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert fragment in err and str(path) in err, (fragment, err)


@pytest.mark.parametrize(("name", "change", "fragment"), STRUCTURE, ids=[c[0] for c in STRUCTURE])
def test_every_reader_refuses_a_malformed_checkpoint(
    name, change, fragment, payload, tmp_path, train_data, train_spec, capsys
) -> None:
    path = write(payload, change, tmp_path / f"{name}.pt")
    for main, argv in commands(path, train_data, train_spec, tmp_path).values():
        check(main, argv, fragment, path, capsys)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "g.onnx").exists()


@pytest.mark.parametrize(("name", "change", "fragment"), TRAINING, ids=[c[0] for c in TRAINING])
def test_resume_refuses_training_state_that_does_not_fit(
    name, change, fragment, payload, tmp_path, train_data, train_spec, capsys
) -> None:
    path = write(payload, change, tmp_path / f"{name}.pt")
    main, argv = commands(path, train_data, train_spec, tmp_path)["train"]
    check(main, argv, fragment, path, capsys)
    assert not list((tmp_path / "runs").glob("*")) if (tmp_path / "runs").exists() else True
    # the weights are fine: a generator can still be drawn from the file
    main, argv = commands(path, train_data, train_spec, tmp_path)["generate"]
    assert main([*argv, "--quiet"]) == 0
