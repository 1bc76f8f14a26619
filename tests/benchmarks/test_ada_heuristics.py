"""The ADA-heuristics benchmark on the CPU: the heuristics of hand-made scores, the split of
training and held-out reals (and its check), the trainer's alpha at a checkpoint, D's
minibatch-stddev groups as training lays them out, and the CLI on a tiny run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import bench_ada_heuristics as bench
from benchmarks.bench_ada_heuristics import (
    checkpoint_alpha,
    heuristics,
    pairwise_gap,
    score_checkpoint,
    split_reals,
)
from progan_dsl.cli import bench_main
from progan_dsl.errors import EXIT_USER_ERROR, UserError
from tests.conftest import TINY

FULL_IMAGES, SUBSET, SUBSET_SEED = 48, 16, 5


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a 16-image subset drawn with seed 5, the 48-image dataset it was drawn from)."""
    from progan_dsl.data import CreateOptions, create_dataset

    root = tmp_path_factory.mktemp("ada_data")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (FULL_IMAGES, 16, 16), dtype=np.uint8)
    np.save(root / "src.npy", images)
    full, subset = root / "full", root / "subset"
    common = {"source": str(root / "src.npy"), "resolution": 16, "progress": False}
    create_dataset(CreateOptions(out=full, **common))  # type: ignore[arg-type]
    create_dataset(
        CreateOptions(out=subset, max_images=SUBSET, seed=SUBSET_SEED, **common)  # type: ignore[arg-type]
    )
    return subset, full


def test_heuristics_by_hand() -> None:
    train = np.array([3.0, 1.0, 2.0, 0.5])
    val = np.array([1.0, -1.0, 2.0, 0.0])
    fake = np.array([0.0, 2.0, 1.0, 0.5])
    h = heuristics(train, val, fake)
    assert (h.D_train, h.D_val, h.D_fake) == (1.625, 0.5, 0.875)
    assert h.r_t == 1.0 and h.r_t_val == 0.25  # signs +,+,+,+ and +,-,+,0
    assert h.r_gap_tr == 0.25  # sign(3, -1, 1, 0)
    assert h.r_gap_val == 0.0  # sign(1, -3, 1, -0.5)
    # all 16 pairs of train vs fake (a tie counts half): 3 beats all 4; 1 beats 0 and 0.5, ties
    # 1 (2.5); 2 beats 0, 1 and 0.5, ties 2 (3.5); 0.5 beats 0, ties 0.5 (1.5): 11.5 of 16
    assert h.auc_tr == 2 * 11.5 / 16 - 1
    # val vs fake: 1 -> 2.5, -1 -> 0, 2 -> 3.5, 0 -> 0.5 (ties 0): 6.5 of 16
    assert h.auc_val == 2 * 6.5 / 16 - 1
    # train vs val: 3 -> 4, 1 -> 2.5, 2 -> 3.5, 0.5 -> 2: 12 of 16
    assert h.auc_tv == 2 * 12 / 16 - 1
    assert h.r_v == pytest.approx((1.625 - 0.5) / (1.625 - 0.875))
    var_train = np.mean((train - 1.625) ** 2)
    var_val = np.mean((val - 0.5) ** 2)
    assert h.r_v_se == pytest.approx(np.sqrt((var_train + var_val) / 4) / 0.75)
    assert pairwise_gap(np.array([1.0]), np.array([1.0])) == 0.0
    assert pairwise_gap(np.arange(5.0) + 10, np.arange(7.0)) == 1.0
    assert heuristics(np.ones(3), np.ones(3), np.ones(3)).r_v is None


def test_split_reals(datasets: tuple[Path, Path]) -> None:
    subset, full = datasets
    reals = split_reals(subset, full, 8, SUBSET_SEED, seed=3)
    perm = np.random.default_rng(SUBSET_SEED).permutation(FULL_IMAGES)
    assert reals.held_out_index.tolist() == perm[SUBSET : SUBSET + 8].tolist()
    assert reals.train_index.tolist() == np.random.default_rng(3).permutation(16)[:8].tolist()
    with pytest.raises(
        UserError, match=r"is not the first 16 images of .*default_rng\(6\)\.permutation\(48\)"
    ):
        split_reals(subset, full, 8, SUBSET_SEED + 1, seed=3)
    with pytest.raises(UserError, match="pass --images at most 16"):
        split_reals(subset, full, 17, SUBSET_SEED, seed=3)


def _checkpoint(folder: Path, res: int, phase: str, shown: int, held: int, last_bias=None):  # type: ignore[no-untyped-def]
    """A weights-only checkpoint of the tiny spec with the given run state."""
    from progan_dsl.checkpoint import Checkpoint, RunState
    from progan_dsl.compiler import compile_spec

    program = compile_spec(TINY)
    stage = program.stage(res, phase)
    torch.manual_seed(shown)
    G, D = program.build("G", stage), program.build("D", stage)
    state = D.state_dict()
    if last_bias is not None:  # D's last dense layer (16 -> 1) outputs its bias alone
        state["b4_dense1.weight"].zero_()
        state["b4_dense1.bias"].fill_(last_bias)
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    return Checkpoint.from_weights(
        program.loaded,
        stage,
        G=G.state_dict(),
        D=state,
        images_shown=shown,
        run_state=RunState(held_images=held, data=None),
    ).save(folder / "checkpoints")


def test_alpha_is_the_trainers(tmp_path: Path) -> None:
    # tiny: 16x16 fade-in from 192 to 256 images; the last group read the schedule at 224
    assert checkpoint_alpha(_checkpoint(tmp_path, 16, "fade", 240, 224)) == 0.5
    assert checkpoint_alpha(_checkpoint(tmp_path, 8, "stable", 160, 144)) == 1.0


def test_minibatch_stddev_groups_are_four_drawn_images(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    """Scores of a batch of 8 (the tiny spec's 16x16 minibatch) equal those of its two groups of
    4 consecutive images scored alone (a batch of 4 is one group whatever the layout)."""
    subset, full = datasets
    ckpt = _checkpoint(tmp_path, 16, "stable", 300, 288)
    reals = split_reals(subset, full, 16, SUBSET_SEED, seed=0)
    alpha, scores = score_checkpoint(ckpt, reals, 16, seed=0)
    assert alpha == 1.0 and len(scores.train) == len(scores.val) == len(scores.fake) == 16
    quads = [reals.train_index[i : i + 4] for i in range(0, 16, 4)]
    alone = np.concatenate(
        [
            score_checkpoint(
                ckpt,
                bench.Reals(subset, q, full, reals.held_out_index[:4]),
                4,
                seed=0,
            )[1].train
            for q in quads
        ]
    )
    np.testing.assert_allclose(alone, scores.train, rtol=1e-5, atol=1e-6)
    assert len(np.unique(scores.train)) == 16  # not a constant D: the check means something


def test_cli_on_a_tiny_run(
    datasets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subset, full = datasets
    run = tmp_path / "00000-tiny"
    _checkpoint(run, 16, "fade", 240, 224, last_bias=0.75)
    _checkpoint(run, 16, "stable", 300, 288)
    out = tmp_path / "ada.json"
    args = ["ada_heuristics", "--", str(run), "--data", str(subset), "--held-out", str(full)]
    args += ["--subset-seed", str(SUBSET_SEED), "--images", "16", "--threads", "1"]
    assert bench_main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["kimg"], r["stage"], r["alpha"]) for r in rows] == [
        (0.24, "16/fade", 0.5),
        (0.3, "16/stable", 1.0),
    ]
    constant = rows[0]  # D outputs its bias 0.75 whatever the images
    assert constant["D_train"] == constant["D_val"] == constant["D_fake"] == pytest.approx(0.75)
    assert (constant["r_t"], constant["r_gap_tr"], constant["auc_tr"]) == (1.0, 0.0, 0.0)
    assert constant["r_v"] is None and constant["r_v_se"] is None
    from progan_dsl.checkpoint import Checkpoint

    ckpt = Checkpoint.read(run / "checkpoints" / "checkpoint-000000300.pt")
    _, scores = score_checkpoint(ckpt, split_reals(subset, full, 16, SUBSET_SEED, 0), 16, 0)
    expected = heuristics(scores.train, scores.val, scores.fake)
    assert rows[1]["r_gap_tr"] == expected.r_gap_tr and rows[1]["r_v"] == expected.r_v
    assert rows[1]["D_fake"] == expected.D_fake
    assert "00000-tiny" in result["summary"]
    printed = capsys.readouterr().out
    assert "r_gap_tr" in printed and "00000-tiny  0.3" in printed

    assert bench_main([*args[:-2], "--images", "0"]) == EXIT_USER_ERROR
    assert "argument --images: must be at least 1, got 0" in capsys.readouterr().err
    assert bench_main(["ada_heuristics", "--", str(tmp_path / "none")]) == EXIT_USER_ERROR
    assert "no checkpoint-*.pt files" in capsys.readouterr().err
