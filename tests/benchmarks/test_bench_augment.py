"""The augmentation benchmark on the CPU without Inception or training: the leak statistics pass
real digits against other real digits, flag inverted, mirrored and rotated ones, and only shifts
towards the transformed reals; the CLI on
tiny run folders (FID and KID through a cheap stand-in feature extractor: the cache of the reals'
features is filled once and then reused; the real Inception path is what `progan-metrics` tests
cover); refusals with exit 2 (unequal images shown, a subset of other images, bad options); the
commands `--train` would run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import bench_augment
from benchmarks.bench_augment import (
    JUDGED,
    LEAK_STATS,
    check_split,
    leak_verdicts,
    measure,
    real_reference,
    set_statistics,
    transformed_statistics,
)
from progan_dsl.cli import bench_main
from progan_dsl.data import CreateOptions, ImageDataset, create_dataset
from progan_dsl.errors import EXIT_USER_ERROR, UserError
from tests.conftest import TINY

TOTAL, SUBSET, SUBSET_SEED = 1000, 200, 3


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A "full" dataset of the first 1,000 bundled digits (from an .npy, in order) and a subset
    of 200 of them made with --seed 3, as `progan-dataset create` makes both."""
    root = tmp_path_factory.mktemp("augment")
    digits = root / "digits"
    create_dataset(
        CreateOptions(source="mnist", out=digits, resolution=32, max_images=TOTAL, progress=False)
    )
    array = root / "digits.npy"
    np.save(array, np.asarray(ImageDataset(digits).images(32))[:, 0])  # (N, H, W)
    full, subset = root / "full", root / "subset"
    create_dataset(CreateOptions(source=str(array), out=full, resolution=32, progress=False))
    create_dataset(
        CreateOptions(
            source=str(array),
            out=subset,
            resolution=32,
            max_images=SUBSET,
            seed=SUBSET_SEED,
            progress=False,
        )
    )
    return {"full": full, "subset": subset, "array": array, "root": root}


def _reals(data: dict[str, Path]) -> torch.Tensor:
    return torch.from_numpy(np.array(ImageDataset(data["full"]).images(32)))


def _nearest_real(bank: torch.Tensor):  # type: ignore[no-untyped-def]
    """A stand-in judge: its confidence in an image is the cosine similarity to the closest
    digit of `bank` (it knows digits as they are, not mirrored or turned)."""
    known = torch.nn.functional.normalize(bank.float().flatten(1), dim=1)

    def confidence(images: torch.Tensor) -> np.ndarray:
        x = torch.nn.functional.normalize(images.float().flatten(1), dim=1)
        return (x @ known.T).amax(dim=1).double().numpy()

    return confidence


def test_split_is_checked_image_by_image(data: dict[str, Path], tmp_path: Path) -> None:
    split = check_split(data["full"], data["subset"])
    order = np.random.default_rng(SUBSET_SEED).permutation(TOTAL)
    assert (split.train_images, split.total, split.subset_seed) == (SUBSET, TOTAL, SUBSET_SEED)
    assert np.array_equal(split.held_out(5), order[SUBSET : SUBSET + 5])
    subset_images = np.asarray(ImageDataset(data["subset"]).images(32))
    assert np.array_equal(subset_images, _reals(data).numpy()[order[:SUBSET]])
    with pytest.raises(UserError, match="at most 800 are held out"):
        split.held_out(801)
    # later reals: those a larger subset of the same permutation would hold out too
    assert np.array_equal(split.held_out(5, start=600), order[600:605])
    with pytest.raises(UserError, match="at most 400 are held out from image 600"):
        split.held_out(401, start=600)
    with pytest.raises(UserError, match="--held-out-from 199: .* start at 200 or later"):
        split.held_out(5, start=199)
    other = tmp_path / "other"  # the same count and seed, drawn from other images
    inverted = tmp_path / "inverted.npy"
    np.save(inverted, 255 - np.load(data["array"]))
    create_dataset(
        CreateOptions(
            source=str(inverted), out=other, resolution=32, max_images=SUBSET, seed=SUBSET_SEED,
            progress=False,
        )
    )  # fmt: skip
    with pytest.raises(UserError, match=r"its images are not those of .* at default_rng\(3\)"):
        check_split(data["full"], other)


def test_leak_statistics_pass_reals_and_flag_leaks(data: dict[str, Path]) -> None:
    # disjoint random draws (consecutive MNIST digits are not quite independent draws)
    reals = _reals(data)[np.random.default_rng(0).permutation(TOTAL)]
    bank, reference, other = reals[:400], reals[400:700], reals[700:]
    judge = _nearest_real(bank)
    real = measure(reference, judge)
    transformed = transformed_statistics(reference, reference, judge)
    ref = real_reference(real, None, len(other), transformed)
    assert set(ref) == set(LEAK_STATS)
    assert {k: v["transform"] for k, v in ref.items()} == {
        "brightness": "lumaflip", "bright_border": "lumaflip", "handedness": "xflip",
        "wide": "rotate90", "flipped": "xflip", "rotated": "rotate90",
    }  # fmt: skip
    assert ref["bright_border"]["real"] == 0.0  # MNIST's background is black
    assert ref["bright_border"]["transformed"] == 1.0
    assert ref["brightness"]["transformed"] == pytest.approx(255 - ref["brightness"]["real"])
    assert ref["wide"]["real"] < 0.2 < 0.8 < ref["wide"]["transformed"]  # digits stand upright
    # a fraction's spread is never below a binomial count: p = 1 / n at n = 300 and M = 300
    n = len(other)
    assert ref["bright_border"]["spread"] == pytest.approx(np.sqrt((1 / n) * (1 - 1 / n) * (2 / n)))

    def verdicts(images: torch.Tensor) -> dict[str, bool]:
        """Beyond the reals' spread towards the transform (judged statistic or not)."""
        stats = set_statistics(measure(images, judge))
        found = leak_verdicts(stats, ref)
        assert all(v["leak"] == (v["beyond"] and k in JUDGED) for k, v in found.items())
        return {k: v["beyond"] for k, v in found.items()}

    assert verdicts(other) == dict.fromkeys(LEAK_STATS, False)  # reals against reals
    inverted = verdicts(255 - other)
    assert inverted["brightness"] and inverted["bright_border"]
    assert not inverted["handedness"]  # gradient orientation modulo pi ignores the sign
    mirrored = verdicts(torch.flip(other, dims=[3]))
    assert mirrored["flipped"] and mirrored["handedness"]
    assert not (mirrored["brightness"] or mirrored["bright_border"] or mirrored["wide"])
    turned = verdicts(torch.rot90(other, 1, dims=[2, 3]))
    assert turned["rotated"] and turned["wide"] and not turned["brightness"]


def test_only_a_shift_towards_the_transformed_reals_is_a_leak() -> None:
    ref = {"wide": {"real": 0.1, "spread": 0.01, "transformed": 0.9, "transform": "rotate90"}}
    far = leak_verdicts({"wide": 0.2}, ref)["wide"]  # 10 spreads towards the turned digits
    assert far["leak"] and far["beyond"] and far["toward"] == pytest.approx(0.125)
    assert not leak_verdicts({"wide": 0.0}, ref)["wide"]["leak"]  # 10 spreads the other way
    assert not leak_verdicts({"wide": 0.129}, ref)["wide"]["leak"]  # within 3 spreads
    unknown = {"wide": {"real": 0.1, "spread": 0.01, "transform": "rotate90"}}
    assert leak_verdicts({"wide": 0.0}, unknown)["wide"]["leak"]  # no direction: either way
    assert leak_verdicts({"wide": 0.0}, unknown)["wide"]["toward"] is None
    shown = {"flipped": {"real": 0.1, "spread": 0.01, "transformed": 0.9, "transform": "xflip"}}
    verdict = leak_verdicts({"flipped": 0.5}, shown)["flipped"]  # not a judged statistic
    assert verdict["beyond"] and not verdict["leak"] and not verdict["judged"]
    assert JUDGED == ("bright_border", "handedness", "wide")


def test_handedness_and_wide_by_hand() -> None:
    bar = torch.zeros(1, 1, 16, 16, dtype=torch.uint8)
    for i in range(12):  # a stroke leaning right, as handwriting does: top to the right
        bar[0, 0, 2 + i, 10 - i // 2 : 12 - i // 2] = 255
    assert bench_augment.wide(bar)[0] == 0.0  # taller than wide
    assert bench_augment.wide(torch.rot90(bar, 1, dims=[2, 3]))[0] == 1.0
    lean = bench_augment.handedness(bar)[0]
    assert bench_augment.handedness(torch.flip(bar, dims=[3]))[0] == 1.0 - lean
    assert bench_augment.handedness(255 - bar)[0] == lean  # orientation modulo pi


def test_orientation_histogram_by_hand() -> None:
    image = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    image[..., 4:] = 255  # a vertical edge: horizontal gradient, orientation 0
    hist = bench_augment.orientation_histograms(image)[0]
    assert hist[0] > 0 and hist[1:].sum() == 0
    assert hist[0] == pytest.approx(4 * 255 * 6 * 2)  # |Sobel| = 4 * 255 on 2 of 6 columns
    turned = bench_augment.orientation_histograms(torch.rot90(image, 1, dims=[2, 3]))[0]
    assert turned[4] == hist[0] and turned.sum() == hist[0]  # a quarter turn: pi / 2, bin 4


def _tiny_run(folder: Path, *, seed: int, images: int, data: Path, weights: int = 0) -> Path:
    """A run folder of the tiny spec: one 16x16 checkpoint at `images` (weights drawn from
    `seed + weights`) and its run.json (training seed `seed`, the data)."""
    from progan_dsl.checkpoint import Checkpoint
    from progan_dsl.compiler import compile_spec

    program = compile_spec(TINY)
    stage = program.stage(16, "stable")
    torch.manual_seed(seed + weights)
    G, D = program.build("G", stage), program.build("D", stage)
    Checkpoint.from_weights(
        program.loaded, stage, G=G.state_dict(), D=D.state_dict(), images_shown=images
    ).save(_mkdir(folder / "checkpoints"))
    (folder / "run.json").write_text(json.dumps({"seed": seed, "data": str(data)}))
    return folder


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


class CountingFeatures:
    """A stand-in for Inception: 4x4 average-pooled pixels as features; counts the images."""

    def __init__(self) -> None:
        self.images = 0

    def __call__(self, images: torch.Tensor, desc: str) -> torch.Tensor:
        self.images += len(images)
        pooled = torch.nn.functional.adaptive_avg_pool2d(images.float(), 4)
        return pooled.flatten(1) / 255.0


def test_cli_compares_arms_and_caches_the_real_features(
    data: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    features = CountingFeatures()
    monkeypatch.setattr(bench_augment, "inception_features", features)
    runs = {
        (arm, seed): _tiny_run(
            tmp_path / f"{arm}{seed}", seed=seed, images=384, data=data["subset"], weights=10 * k
        )
        for k, arm in enumerate(["none", "ada"])
        for seed in ((0, 1) if arm == "none" else (1, 2))
    }
    out = tmp_path / "augment.json"
    args = ["--arm", f"none={runs['none', 0]},{runs['none', 1]}"]
    args += ["--arm", f"ada={runs['ada', 1]},{runs['ada', 2]}"]
    args += ["--full", str(data["full"]), "--generated", "24", "--held-out", "40"]
    args += ["--no-classifier", "--cache-dir", str(tmp_path / "cache"), "--threads", "1"]
    bench_augment.run([*args, "--json", str(out)])  # bench_main's copy would run Inception
    result = json.loads(out.read_text())
    calibration = bench_augment.CALIBRATION_IMAGES + 2
    assert features.images == calibration + 40 + 4 * 24  # the reals once, each run's images
    assert result["real_features"]["computed"] == 40 and result["real_features"]["reused"] == 0
    assert result["sizes"] == {
        "generated": 24,
        "held_out": 40,
        "held_out_from": SUBSET,
        "swd_images": 24,
    }
    assert result["split"]["subset_seed"] == SUBSET_SEED
    assert result["split"]["train_images"] == SUBSET and result["images_shown"] == 384
    order = np.random.default_rng(SUBSET_SEED).permutation(TOTAL)[SUBSET : SUBSET + 40]
    assert result["held_out_indices_sha256"] == (
        hashlib.sha256(order.astype(np.int64).tobytes()).hexdigest()
    )
    assert [(r["arm"], r["seed"]) for r in result["runs"]] == [
        ("none", 0), ("none", 1), ("ada", 1), ("ada", 2)
    ]  # fmt: skip
    for row in result["runs"]:
        assert np.isfinite(row["fid"]) and np.isfinite(row["kid"]) and row["swd"] > 0
        assert set(row["leak"]) == {"brightness", "bright_border", "handedness", "wide"}
        assert all("transformed" in v for v in row["leak"].values())
        assert row["inception_img_per_s"] > 0
        assert row["finished"] is True  # 384 images: the tiny spec's total_kimg 0.384
    none, ada = result["arms"]
    assert none["arm"] == "none" and none["runs"] == 2
    assert none["fid"] == pytest.approx((result["runs"][0]["fid"] + result["runs"][1]["fid"]) / 2)
    # compared per training seed present in both arms: seed 1 only
    (comparison,) = result["comparisons"]
    assert comparison["seed"] == 1 and comparison["baseline"] == "none"
    for key in ("fid", "kid", "swd"):
        entry = comparison[key]
        assert entry["better"] == (entry["arm"] < entry["baseline"])
    printed = capsys.readouterr().out
    assert "24 generated vs 40 held-out reals (SWD: 24 each)" in printed
    assert "mean of 2" in printed and "seed 1: none -> ada: FID" in printed

    assert {r["generated_features"] for r in result["runs"]} == {"computed"}

    # a second call reads the reals' features and those of a run's images from the cache
    features.images = 0
    again = bench_augment.run([*args[4:], "--arm", f"more={runs['none', 0]}", "--no-write"])
    assert again["real_features"]["computed"] == 0 and again["real_features"]["reused"] == 40
    assert features.images == calibration and again["runs"][0]["generated_features"] == "cached"
    assert again["runs"][0]["fid"] == pytest.approx(result["runs"][0]["fid"])


def test_cli_refuses_unequal_images_shown_and_bad_input(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short = _tiny_run(tmp_path / "short", seed=0, images=256, data=data["subset"])
    long = _tiny_run(tmp_path / "long", seed=1, images=384, data=data["subset"])
    args = ["augment", "--", "--arm", f"none={short}", "--arm", f"ada={long}", "--no-write"]
    assert bench_main([*args, "--full", str(data["full"])]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err == (
        "error: arms must be compared at equal images shown, but the newest checkpoints differ "
        f"(none {short}/checkpoints/checkpoint-000000256.pt: 256, ada "
        f"{long}/checkpoints/checkpoint-000000384.pt: 384); let every run finish or pass "
        "checkpoint files taken at one count\n"
    )
    assert bench_main(["augment", "--", "--arm", "none"]) == EXIT_USER_ERROR
    assert capsys.readouterr().err == (
        "error: progan-bench augment --: argument --arm: expected NAME=RUN[,RUN...], got 'none'\n"
    )
    assert bench_main(["augment", "--", "--no-write"]) == EXIT_USER_ERROR
    assert "no arms: give --arm NAME=RUN[,RUN...]" in capsys.readouterr().err
    assert bench_main(["augment", "--", "--arm", f"none={long}", "--arm", f"none={long}"]) == 2
    assert capsys.readouterr().err == "error: --arm none is given twice\n"
    args = ["augment", "--", "--arm", f"none={long}", "--full", str(data["full"])]
    assert bench_main([*args, "--held-out", "900", "--no-write", "--no-fid"]) == 2
    assert "at most 800 are held out" in capsys.readouterr().err


def test_train_dry_run_lists_the_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subset = tmp_path / "subset"
    args = ["--train", "--dry-run", "--subset", str(subset), "--seeds", "0,1", "--threads", "1"]
    payload = bench_augment.run([*args, "--train-dir", str(tmp_path / "runs"), "--no-write"])
    runs = tmp_path / "runs"
    train = "--device cpu --seed {seed} --threads 1 --no-progress"
    assert payload["commands"] == [
        f"progan-dataset create --source mnist --out {subset} --resolution 32 --labels "
        "--max-images 2000 --seed 0",
        *(
            f"progan-train {spec} --data {subset} --outdir {runs / arm} " + train.format(seed=seed)
            for arm, spec in bench_augment.DEFAULT_ARMS.items()
            for seed in (0, 1)
        ),
    ]
    assert capsys.readouterr().out.strip().splitlines() == payload["commands"]
    assert not runs.exists()


def test_train_names_the_subset_by_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no data/mnist32_200 here: the dry run lists its creation
    assert bench_augment.subset_folder(2000) == Path("data/mnist32_2k")
    assert bench_augment.subset_folder(200) == Path("data/mnist32_200")
    args = ["--train", "--dry-run", "--subset-images", "200", "--seeds", "0", "--threads", "1"]
    payload = bench_augment.run([*args, "--train-dir", str(tmp_path / "runs"), "--no-write"])
    assert payload["commands"][0] == (
        "progan-dataset create --source mnist --out data/mnist32_200 --resolution 32 --labels "
        "--max-images 200 --seed 0"
    )
