"""The conditional-generation benchmark on the CPU: the per-class table by hand, the classifier's
cache, and the evaluation path with stand-in generators that draw real held-out digits (of the
requested class: the classifier's own accuracy on them; of the next class: about zero); the CLI
on a real conditional checkpoint and on bad input (exit 2, a clear message)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import bench_conditional, digit_classifier
from benchmarks.bench_conditional import MEAN_TARGET, MIN_TARGET, draw, evaluate_generator
from benchmarks.common import format_table
from benchmarks.digit_classifier import (
    COLUMNS,
    QUICK,
    AccuracyTable,
    ClassRow,
    DigitClassifier,
    accuracy_table,
    load_classifier,
    load_digits,
)
from progan_dsl.cli import bench_main
from progan_dsl.data import CreateOptions, create_dataset
from progan_dsl.errors import EXIT_USER_ERROR, UserError
from tests.conftest import ROOT, write_tiny_run

NAMES = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 5,000 bundled MNIST digits with labels (QUICK holds out the last 1,000)."""
    out = tmp_path_factory.mktemp("digits") / "mnist32"
    create_dataset(
        CreateOptions(
            source="mnist", out=out, resolution=32, max_images=5000, labels=True, progress=False
        )
    )
    return out


@pytest.fixture(scope="module")
def judge(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DigitClassifier:
    torch.set_num_threads(1)
    return load_classifier(digits_dir, QUICK, cache_dir=tmp_path_factory.mktemp("cache"))


def _real_digits(digits_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    held = load_digits(digits_dir, QUICK)
    return held.test_images, held.test_labels


def _digit_generator(images: np.ndarray, labels: np.ndarray, offset: int = 0):  # type: ignore[no-untyped-def]
    """A stand-in conditional G: for a request of class c it returns the next unused held-out
    real digit of class (c + offset) % 10, as floats in [-1, 1]."""
    pools = {c: list(np.flatnonzero(labels == c)) for c in range(10)}

    def generate(z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        assert z.dtype == torch.float32 and onehot.dtype == torch.float32
        picks = [pools[(int(c) + offset) % 10].pop(0) for c in onehot.argmax(dim=1)]
        return torch.from_numpy(images[picks]).float() / 127.5 - 1.0

    return generate


def test_accuracy_table_by_hand() -> None:
    names = ["a", "b", "c", "d"]
    intended = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    predicted = np.array([0, 0, 2, 1, 1, 1, 1, 3, 0, 3, 0, 2])
    table = accuracy_table(predicted, intended, names)
    assert table.rows == (
        ClassRow(0, "a", 4, 2, "b", 1),  # one b, one c: the tie goes to the lower index
        ClassRow(1, "b", 3, 3, None, 0),
        ClassRow(2, "c", 5, 1, "a", 2),  # two a, two d: a
        ClassRow(3, "d", 0, 0, None, 0),  # no images meant as d: no accuracy
    )
    assert [r.accuracy for r in table.rows] == [0.5, 1.0, 0.2, None]
    assert table.mean == pytest.approx((0.5 + 1.0 + 0.2) / 3)
    assert table.minimum == 0.2
    assert table.overall == pytest.approx(6 / 12)
    assert AccuracyTable.from_json(json.loads(json.dumps(table.to_json()))) == table
    printed = table.printable()
    assert printed[0] == {"class": "a", "n": 4, "accuracy": 0.5, "most common wrong": "b (1)"}
    assert printed[1]["most common wrong"] == "-"
    assert printed[-2:] == [
        {"class": "mean", "n": 12, "accuracy": table.mean},
        {"class": "min", "accuracy": 0.2},
    ]


def test_verdict_at_the_targets() -> None:
    def table(accuracies: list[float]) -> AccuracyTable:
        return AccuracyTable(
            tuple(
                ClassRow(i, str(i), 100, round(a * 100), None, 0) for i, a in enumerate(accuracies)
            )
        )

    assert (MEAN_TARGET, MIN_TARGET) == (0.90, 0.75)
    assert bench_conditional.verdict(table([1.0, 0.8, 0.9]))["passed"]  # mean 0.9, min 0.8
    assert bench_conditional.verdict(table([1.0, 0.75, 0.95]))["passed"]  # min exactly 0.75
    failed = bench_conditional.verdict(table([1.0, 0.74, 1.0]))  # mean 0.913, one class low
    assert not failed["passed"]
    assert failed["line"] == (
        "FAIL: mean per-class accuracy 91.3% (target 90%), lowest 74.0% (target 75% for every "
        "class)"
    )
    assert not bench_conditional.verdict(table([0.89, 0.89, 0.89]))["passed"]


def test_draw_asks_class_by_class_with_seeded_latents() -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record(z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        seen.append((z, onehot))
        # class c -> a constant image of value c / 10 (uint8 round(127.5 * (1 + c / 10)))
        value = onehot.argmax(dim=1).float() / 10
        return value.view(-1, 1, 1, 1).expand(-1, 1, 4, 4)

    images, intended = draw(record, classes=3, latent_size=5, per_class=4, seed=7, batch=5)
    assert intended.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert [len(z) for z, _ in seen] == [5, 5, 2]
    onehot = torch.cat([y for _, y in seen])
    assert torch.equal(onehot, torch.eye(3)[torch.from_numpy(intended)])
    z = torch.cat([z for z, _ in seen])
    assert torch.equal(z, torch.randn(12, 5, generator=torch.Generator().manual_seed(7)))
    assert images.dtype == np.uint8 and images.shape == (12, 1, 4, 4)
    assert images[:, 0, 0, 0].tolist() == [128] * 4 + [140] * 4 + [153] * 4
    again, _ = draw(record, classes=3, latent_size=5, per_class=4, seed=7, batch=12)
    assert torch.equal(torch.cat([z for z, _ in seen[3:]]), z)  # same latents in one batch
    assert np.array_equal(again, images)


def test_classifier_learns_the_real_digits(judge: DigitClassifier, digits_dir: Path) -> None:
    images, labels = _real_digits(digits_dir)
    assert judge.class_names == NAMES and judge.image_shape == (1, 32, 32)
    assert [r.n for r in judge.held_out.rows] == np.bincount(labels, minlength=10).tolist()
    assert judge.held_out == accuracy_table(judge.predict(images), labels, NAMES)
    # trained on 4,000 digits for two epochs: far above chance (10%) on the 1,000 held out
    assert judge.held_out.overall > 0.85
    assert judge.cache.is_file() and not judge.reused


def test_classifier_is_cached_by_config_and_data(
    judge: DigitClassifier, digits_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_training(*args: object) -> None:
        raise AssertionError("the cached classifier should have been reused")

    monkeypatch.setattr(digit_classifier, "train_network", no_training)
    again = load_classifier(digits_dir, QUICK, cache_dir=judge.cache.parent)
    assert again.reused and again.cache == judge.cache
    assert again.held_out == judge.held_out and again.train_seconds == judge.train_seconds
    images, _ = _real_digits(digits_dir)
    assert np.array_equal(again.predict(images), judge.predict(images))
    with pytest.raises(AssertionError, match="should have been reused"):  # another config
        load_classifier(digits_dir, replace(QUICK, seed=1), cache_dir=judge.cache.parent)


def test_damaged_cache_is_retrained(digits_dir: Path, tmp_path: Path) -> None:
    # the QUICK path at an eighth of its training (500 digits, one epoch): trained twice here
    small = replace(QUICK, train_images=500, epochs=1)
    first = load_classifier(digits_dir, small, cache_dir=tmp_path, log=False)
    assert not first.reused
    first.cache.write_bytes(first.cache.read_bytes()[:1000])  # damaged
    again = load_classifier(digits_dir, small, cache_dir=tmp_path, log=False)
    assert not again.reused and again.held_out == first.held_out  # the same seed, the same net
    assert load_classifier(digits_dir, small, cache_dir=tmp_path).reused


def test_generator_of_real_digits_scores_the_classifier_accuracy(
    judge: DigitClassifier, digits_dir: Path
) -> None:
    images, labels = _real_digits(digits_dir)
    per_class = int(np.bincount(labels, minlength=10).min())
    table = evaluate_generator(
        _digit_generator(images, labels), judge, latent_size=8, per_class=per_class, batch=37
    )
    predicted = judge.predict(images)
    for c, row in enumerate(table.rows):
        first = np.flatnonzero(labels == c)[:per_class]  # the digits the stand-in drew, in order
        assert row.n == per_class
        assert row.correct == int((predicted[first] == c).sum())
    # the stand-in drew most of each class's held-out digits: close to the held-out accuracy
    assert per_class >= 0.7 * max(r.n for r in judge.held_out.rows)
    assert table.mean == pytest.approx(judge.held_out.mean, abs=0.03)


def test_generator_of_the_wrong_digits_scores_about_zero(
    judge: DigitClassifier, digits_dir: Path
) -> None:
    images, labels = _real_digits(digits_dir)
    table = evaluate_generator(
        _digit_generator(images, labels, offset=1), judge, latent_size=8, per_class=50
    )
    assert table.mean < 0.05
    assert [r.most_common_wrong for r in table.rows] == NAMES[1:] + NAMES[:1]
    assert not bench_conditional.verdict(table)["passed"]


def _conditional_run(folder: Path, resolution: int = 32, phase: str = "stable") -> Path:
    """An untrained checkpoint of specs/mnist_32_conditional.yaml (default: its final stage)."""
    from progan_dsl.checkpoint import Checkpoint
    from progan_dsl.compiler import compile_spec

    program = compile_spec(ROOT / "specs" / "mnist_32_conditional.yaml")
    stage = program.stage(resolution, phase)
    torch.manual_seed(0)
    G, D = program.build("G", stage), program.build("D", stage)
    Checkpoint.from_weights(
        program.loaded, stage, G=G.state_dict(), G_ema=G.state_dict(), D=D.state_dict()
    ).save(folder / "checkpoints" / "checkpoint-000096000.pt")
    return folder


def test_cli_on_a_conditional_checkpoint(
    judge: DigitClassifier, digits_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _conditional_run(tmp_path / "run")
    out = tmp_path / "conditional.json"
    args = ["--network", str(run), "--data", str(digits_dir), "--quick", "--per-class", "3"]
    args += ["--classifier-cache", str(judge.cache.parent), "--json", str(out), "--threads", "1"]
    assert bench_main(["conditional", "--", *args]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    generated = AccuracyTable.from_json(result["generated"])
    assert [r.n for r in generated.rows] == [3] * 10
    assert result["passed"] is bench_conditional.verdict(generated)["passed"]
    assert result["network"]["classes"] == 10 and result["network"]["stage"] == "32/stable"
    assert result["classifier"]["reused"] is True
    assert result["classifier"]["held_out"] == judge.held_out.to_json()
    assert format_table(generated.printable(), COLUMNS) in printed
    assert bench_conditional.verdict(generated)["line"] in printed


def test_an_earlier_stage_is_judged_at_its_resolution(
    judge: DigitClassifier, digits_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _conditional_run(tmp_path / "run", 32, "fade")
    args = ["conditional", "--", "--network", str(run), "--data", str(digits_dir), "--quick"]
    args += ["--classifier-cache", str(judge.cache.parent), "--no-write", "--threads", "1"]
    assert bench_main(args) == EXIT_USER_ERROR  # a fade-in checkpoint: which end is ambiguous
    assert "taken during the fade-in 32/fade" in capsys.readouterr().err
    payload = bench_conditional.run([*args[2:], "--resolution", "16", "--per-class", "2"])
    assert payload["network"]["stage"] == "16/stable"
    assert payload["classifier"]["held_out"]["per_class"] != judge.held_out.to_json()["per_class"]
    assert [r["n"] for r in payload["generated"]["per_class"]] == [2] * 10
    held16 = load_classifier(digits_dir, QUICK, resolution=16, cache_dir=judge.cache.parent)
    assert held16.reused and held16.image_shape == (1, 16, 16)  # trained by the run above
    assert held16.cache != judge.cache and held16.held_out.overall > 0.8


def test_cli_without_network_reports_the_classifier(
    judge: DigitClassifier, digits_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data", str(digits_dir), "--quick", "--classifier-cache", str(judge.cache.parent)]
    payload = bench_conditional.run([*args, "--no-write", "--threads", "1"])
    assert payload["network"] is None and "generated" not in payload
    assert payload["classifier"]["held_out"] == judge.held_out.to_json()
    printed = capsys.readouterr().out
    assert "held-out real digits" in printed and "\nmean   1000 " in printed
    assert not list(tmp_path.iterdir())


def test_cli_refuses_bad_input(
    digits_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uncond = tmp_path / "uncond"
    write_tiny_run(uncond, [(8, "stable")])
    assert bench_main(["conditional", "--", "--network", str(uncond)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"error: {uncond}: the generator is unconditional")
    missing = tmp_path / "nothing"
    assert bench_main(["conditional", "--", "--network", str(missing)]) == EXIT_USER_ERROR
    assert capsys.readouterr().err.startswith(f"error: {missing}")

    unlabelled = tmp_path / "unlabelled"
    create_dataset(
        CreateOptions(source="mnist", out=unlabelled, resolution=32, max_images=64, progress=False)
    )
    code = bench_main(["conditional", "--", "--data", str(unlabelled), "--quick", "--no-write"])
    assert code == EXIT_USER_ERROR
    assert capsys.readouterr().err == (
        f"error: {unlabelled}: the dataset has no labels; create it with --labels (e.g. "
        f"progan-dataset create --source mnist --out {unlabelled} --resolution 32 --labels "
        "--force)\n"
    )
    with pytest.raises(
        UserError, match="holds 5000 images; the classifier holds out the last 5000"
    ):
        load_digits(digits_dir, replace(QUICK, test_images=5000))
    assert bench_main(["conditional", "--", "--per-class", "0"]) == EXIT_USER_ERROR
    assert capsys.readouterr().err == (
        "error: progan-bench conditional --: argument --per-class: must be at least 1, got 0\n"
    )
    assert bench_main(["conditional", "--", "--seed", "-1"]) == EXIT_USER_ERROR
    assert capsys.readouterr().err == (
        "error: progan-bench conditional --: argument --seed: must be in 0..2**63 - 1, got -1\n"
    )
    assert bench_main(["conditional", "--", "--batch", "x"]) == EXIT_USER_ERROR
    assert capsys.readouterr().err == (
        "error: progan-bench conditional --: argument --batch: must be a whole number, got 'x'\n"
    )
