"""The run side of `progan-train` under faults, with real processes: a reader that goes away
(`progan-train ... | head`) and a torchrun worker killed mid-run under `--max-restarts`.

- a closed stdout: training goes on to the end (exit 0), its lines in log.txt, one note on
  stderr, the final checkpoint written;
- torchrun --max-restarts 1 without --resume: the survivor says in one line that a peer died,
  the restarted workers join a fresh process group (they used to wait on the dead attempt's
  addresses for the whole gloo timeout), resume from the newest checkpoint in the same run
  folder, and finish.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from progan_dsl.checkpoint import Checkpoint
from tests.fault.test_fault_train import ENV, ROOT, start_slow, train_argv


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_closed_stdout_does_not_stop_training(
    train_spec: Path, train_data: Path, tmp_path: Path
) -> None:
    outdir = tmp_path / "runs"
    proc = start_slow(tmp_path, train_argv(train_spec, train_data, outdir, "--kimg", "0.128"))
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # as `| head -1` reads, then goes away
    assert first.startswith("progan-train: new run in ")
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err
    assert err.count("note: stdout was closed (its reader went away); training goes on") == 1
    (run,) = outdir.iterdir()
    text = (run / "log.txt").read_text()
    assert "tick 2 " in text and "done: 0.128 kimg in " in text
    assert Checkpoint.load(run).images_shown == 128
    assert [r["event"] for r in records(run)][-1] == "done"


# Rank 1 of the first attempt dies (SIGKILL) after the checkpoint at 96 images.
KILLED_PEER = """
import os, signal, sys
import progan_dsl.train.loop as loop

def die(trainer):
    first = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if first and os.environ["LOCAL_RANK"] == "1" and trainer.images_shown >= 96:
        os.kill(os.getpid(), signal.SIGKILL)

real_train = loop.train
loop.train = lambda options, **kw: real_train(options, on_iteration=die)
from progan_dsl.cli import train_main
sys.exit(train_main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_torchrun_restart_resumes_instead_of_hanging(
    train_spec: Path, train_data: Path, tmp_path: Path
) -> None:
    script = tmp_path / "killed_peer.py"
    script.write_text(KILLED_PEER)
    outdir = tmp_path / "runs"
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "--max-restarts",
            "1",
            str(script),
            *train_argv(train_spec, train_data, outdir, "--kimg", "0.16"),
        ],
        cwd=ROOT,
        env={**ENV, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=400,  # the hang this guards against lasted the 30-minute gloo timeout
    )
    out = launched.stdout + launched.stderr
    assert launched.returncode == 0, out[-4000:]
    assert "another process of this torchrun job died" in out  # the survivor, in one line
    assert "[rank0]: Traceback" not in out
    assert "torchrun restarted the workers (restart 1): resuming " in out
    (run,) = outdir.iterdir()  # the restart continued the run folder
    events = [r["event"] for r in records(run)]
    assert events.count("start") == 1 and events.count("resume") == 1
    assert events[-1] == "done"
    resumed = next(r for r in records(run) if r["event"] == "resume")
    assert resumed["images_shown"] >= 96
    assert Checkpoint.load(run).images_shown == 160
    assert os.path.exists(run / "log.txt")
