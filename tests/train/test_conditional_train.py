"""Class-conditional training end to end on a tiny labelled dataset: the dataset check before
training, labels through the loader and the losses, the row-per-class grid, a resume in the
middle of a minibatch_repeats group that ends bitwise equal to an uninterrupted run, and the
typed run state a checkpoint carries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from progan_dsl.checkpoint import Checkpoint, RunState
from progan_dsl.errors import UserError
from progan_dsl.train.feedback import row_per_class
from progan_dsl.train.loop import TrainOptions, train
from tests.conftest import TRAIN_SPEC

COND_SPEC = TRAIN_SPEC.replace("name: tiny_train", "name: tiny_cond").replace(
    "  discriminator:", "  conditioning: {classes: 2}\n  discriminator:", 1
)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 16x16 grey images in two class folders: dark squares (a) and bright ones (b)."""
    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(3)
    for cls, value in (("a", 90), ("b", 230)):
        (root / "src" / cls).mkdir(parents=True)
        for i in range(24):
            img = rng.integers(0, 40, (16, 16), dtype=np.uint8)
            y, x = rng.integers(0, 10, 2)
            img[y : y + 6, x : x + 6] = value
            Image.fromarray(img, "L").save(root / "src" / cls / f"{i}.png")
    from progan_dsl.data import CreateOptions, create_dataset

    create_dataset(
        CreateOptions(
            source=str(root / "src"), out=root / "ds", resolution=16, labels=True, progress=False
        )
    )
    return root / "ds"


@pytest.fixture(scope="module")
def cond_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cond_spec") / "tiny_cond.yaml"
    path.write_text(COND_SPEC)
    return path


def _train(spec: Path, data: Path, out: Path, **kw) -> object:  # type: ignore[no-untyped-def]
    options = dict(device="cpu", progress=False, threads=1, seed=5, quiet=True)
    return train(TrainOptions(spec=str(spec), data=str(data), outdir=str(out), **options, **kw))


def test_a_conditional_spec_needs_a_dataset_with_its_classes(
    cond_spec: Path, train_data: Path, labelled: Path, tmp_path: Path
) -> None:
    with pytest.raises(UserError) as err:
        _train(cond_spec, train_data, tmp_path / "runs")
    text = str(err.value)
    assert text.startswith(f"{cond_spec}:")  # located at the spec's conditioning.classes
    assert "architecture.conditioning.classes: spec 'tiny_cond' is conditional on 2 classes" in text
    assert "has no labels; create it with 'progan-dataset create --labels'" in text
    three = tmp_path / "three.yaml"
    three.write_text(COND_SPEC.replace("classes: 2", "classes: 3"))
    with pytest.raises(UserError, match="is conditional on 3 classes, but dataset .* has 2"):
        _train(three, labelled, tmp_path / "runs3")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "runs3").exists()


def test_conditional_run_resumes_bitwise_inside_a_repeats_group(
    cond_spec: Path, labelled: Path, tmp_path: Path
) -> None:
    whole = _train(cond_spec, labelled, tmp_path / "whole")
    # 144 images = 9 iterations of 16: one iteration into the third group of 4
    _train(cond_spec, labelled, tmp_path / "parts", kimg=0.144)
    (run,) = (tmp_path / "parts").iterdir()
    stopped = Checkpoint.load(run)
    assert stopped.images_shown == 144
    assert stopped.run_state == RunState(
        seed=5,
        world_size=1,
        phase_index=stopped.run_state.phase_index,  # type: ignore[union-attr]
        held_images=128,
        repeat=1,
        kimg=0.144,
        data=str(labelled),
        run=run.name,
        elapsed_s=stopped.run_state.elapsed_s,  # type: ignore[union-attr]
        tick_window=stopped.run_state.tick_window,  # type: ignore[union-attr]
    )
    _train(cond_spec, labelled, tmp_path / "parts", resume=str(run), kimg=0.32)
    a = Checkpoint.load(whole.run_dir)  # type: ignore[attr-defined]
    b = Checkpoint.load(run)
    assert a.images_shown == b.images_shown == 320
    for net in ("G", "D", "G_ema"):
        for key, value in getattr(a, net).items():
            assert torch.equal(value, getattr(b, net)[key]), (net, key)
    # the class terms were logged, and finite
    log = (run / "log.jsonl").read_text()
    assert '"class_real"' in log and '"class_fake"' in log


def test_grid_rows_show_one_class_each() -> None:
    labels = row_per_class(3, 4, 2)
    assert labels is not None and labels.shape == (12, 2)
    assert labels.argmax(1).tolist() == [0] * 4 + [1] * 4 + [0] * 4
    assert row_per_class(3, 4, 0) is None


def test_run_state_of_the_wrong_type_is_refused_with_one_message(tmp_path: Path) -> None:
    from progan_dsl.compiler import compile_spec
    from tests.conftest import TINY

    program = compile_spec(TINY)
    stage = program.stages[0]
    G = program.build("G", stage).state_dict()
    ckpt = Checkpoint.from_weights(
        program.loaded, stage, G=G, run_state=RunState(seed=1, kimg=2.0)
    ).save(tmp_path / "good.pt")
    assert Checkpoint.read(ckpt.path).run_state == RunState(seed=1, kimg=2.0)  # type: ignore[arg-type]
    raw = torch.load(ckpt.path, weights_only=True)
    raw["extra"] = {"seed": "abc", "elapsed_s": True, "tick_window": [[1.0, "x"]]}
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(UserError) as err:
        Checkpoint.read(tmp_path / "bad.pt")
    assert str(err.value) == (
        f"{tmp_path / 'bad.pt'}: not a valid progan-dsl checkpoint: "
        "run state 'seed' must be a non-negative integer, got 'abc'; "
        "run state 'elapsed_s' must be a number, got True; "
        "run state 'tick_window' must be a list of rows of numbers, got [[1.0, 'x']]"
    )
