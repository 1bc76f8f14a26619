"""The schedule of the paper's 1024 spec at chosen kimg points, derived by hand from
specs/celebahq_1024.yaml: 600 kimg per phase, 4x4 stable first, then fade + stable for 8 ... 1024
(8 resolutions x 1200 kimg), so the 1024 fade-in runs 9000-9600 kimg and the final stable phase
9600-12000 kimg."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from progan_dsl.errors import UserError
from progan_dsl.ir import Stage
from progan_dsl.spec import load_spec, load_spec_text
from progan_dsl.train.schedule import build_schedule, format_schedule

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "specs" / "celebahq_1024.yaml"


@pytest.fixture(scope="module")
def paper():
    return build_schedule(load_spec(PAPER).spec)


# (kimg, resolution, phase, alpha, minibatch, learning rate)
POINTS = [
    (0, 4, "stable", 1.0, 128, 0.001),
    (599.999, 4, "stable", 1.0, 128, 0.001),
    (600, 8, "fade", 0.0, 128, 0.001),
    (900, 8, "fade", 0.5, 128, 0.001),
    (1199.4, 8, "fade", 0.999, 128, 0.001),
    (1200, 8, "stable", 1.0, 128, 0.001),
    (3150, 32, "fade", 0.25, 64, 0.001),
    (4500, 64, "fade", 0.5, 32, 0.001),
    (7000, 256, "fade", 400 / 600, 8, 0.001),
    (8700, 512, "stable", 1.0, 4, 0.001),
    (9000, 1024, "fade", 0.0, 4, 0.0015),
    (9450, 1024, "fade", 0.75, 4, 0.0015),
    (9600, 1024, "stable", 1.0, 4, 0.0015),
    (11999.999, 1024, "stable", 1.0, 4, 0.0015),
]


@pytest.mark.parametrize(("kimg", "res", "phase", "alpha", "batch", "lr"), POINTS)
def test_paper_schedule_points(paper, kimg, res, phase, alpha, batch, lr) -> None:
    images = round(kimg * 1000)
    p = paper.phase_at(images)
    assert p.stage == Stage(res, phase)
    assert p.alpha(images) == pytest.approx(alpha, abs=1e-9)
    assert paper.alpha_at(images) == pytest.approx(alpha, abs=1e-9)
    assert p.minibatch == batch
    assert p.learning_rate == lr


def test_paper_schedule_shape(paper) -> None:
    assert len(paper.phases) == 17  # 4 stable + 8 x (fade, stable)
    assert paper.total == 12_000_000
    assert [p.start for p in paper.phases[:4]] == [0, 600_000, 1_200_000, 1_800_000]
    assert paper.phases[-1].stage == Stage(1024, "stable")
    assert (paper.phases[-1].start, paper.phases[-1].end) == (9_600_000, 12_000_000)
    assert paper.done(12_000_000) and not paper.done(11_999_999)
    assert paper.phase_of(Stage(1024, "fade")).start == 9_000_000


def test_alpha_is_monotone_within_a_fade(paper) -> None:
    fade = paper.phase_of(Stage(128, "fade"))
    alphas = [fade.alpha(i) for i in range(fade.start, fade.end, 7919)]
    assert alphas[0] == 0.0 and alphas == sorted(alphas) and alphas[-1] < 1.0


def test_kimg_override_stops_inside_a_phase() -> None:
    sched = build_schedule(load_spec(PAPER).spec, total_kimg=1000)
    assert sched.total == 1_000_000
    assert [str(p.stage) for p in sched.phases] == ["4/stable", "8/fade"]
    last = sched.phases[-1]
    assert (last.start, last.end, last.length) == (600_000, 1_000_000, 600_000)
    assert last.alpha(999_999) == pytest.approx(399_999 / 600_000)  # alpha keeps the nominal pace


def test_kimg_override_extends_the_final_phase() -> None:
    sched = build_schedule(load_spec(PAPER).spec, total_kimg=15000)
    assert sched.phases[-1].end == 15_000_000 and sched.total == 15_000_000
    with pytest.raises(UserError, match="--kimg must be positive"):
        build_schedule(load_spec(PAPER).spec, total_kimg=0)


def test_no_fade_in_and_tables() -> None:
    text = (
        PAPER.read_text()
        .replace("  fade_in: true", "  fade_in: false")
        .replace(
            "    fade_kimg: 600\n    stable_kimg: 600\n    total_kimg: 12000",
            "    fade_kimg: 600\n    stable_kimg: {4: 100, 8: 200, 16: 300, 32: 400, 64: 500, "
            "128: 600, 256: 700, 512: 800, 1024: 900}",
        )
    )
    assert "fade_in: false" in text and "stable_kimg: {4: 100" in text
    sched = build_schedule(load_spec_text(text, "nofade.yaml").spec)
    assert all(p.stage.phase == "stable" for p in sched.phases)
    assert [p.start for p in sched.phases[:3]] == [0, 100_000, 300_000]
    assert sched.total == 4_500_000  # 100 + 200 + ... + 900 kimg
    assert sched.alpha_at(150_000) == 1.0


def test_format_schedule_lists_every_phase(paper) -> None:
    text = format_schedule(paper)
    lines = text.splitlines()
    assert len(lines) == 2 + 17 + 1
    assert "1024  fade     9000.000 -  9600.000   0.00 -> 1.00" in text
    assert lines[-1] == "total: 12000 kimg (12,000,000 images)"
    # 600k images at minibatch 128 need ceil(600000 / 128) = 4688 iterations
    assert lines[2].split()[-1] == "4,688"


def test_schedule_does_not_import_torch() -> None:
    code = (
        "import sys; import progan_dsl.train.schedule; sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
