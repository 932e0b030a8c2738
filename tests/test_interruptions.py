"""Interruptions and reproducibility, for real: separate processes, SIGKILL, resume, replay.

One calibration command runs to the end (A), again in a second process (B), is killed with
SIGKILL in the middle of its optimisation and resumed with ``--resume`` (C), and is replayed from
A's report.json with ``--replay`` (D). Every results file of B, C and D must be byte for byte A's
(on the CPU, XLA's programs are deterministic and the checkpoint holds the optimiser's exact
state), except ``timing.json``, which holds the wall time. The killed run must leave no results
folder, only its hidden partial folder.

The processes share a compilation cache folder (the CLI's persistent XLA cache), so only A
compiles; the others load its programs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

COMMAND = ["calibrate", "--agents", "4000", "--firms", "40", "--starts", "2", "--max-iter", "15",
           "--sim-sets", "3", "--flip-checks", "0", "--quiet", "--seed", "3"]


def _cli(*args: str, cwd: Path) -> list[str]:
    return [sys.executable, "-m", "estimation.cli", *args]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(_cli(*args, cwd=cwd), capture_output=True, text=True, timeout=600, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc


def _iteration(checkpoint: Path) -> int:
    """The stage-1 iteration recorded in a checkpoint (-1 if there is none yet)."""
    try:
        with np.load(checkpoint, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
    except (OSError, ValueError, KeyError):
        return -1
    return int(meta.get("stage1_batch", {}).get("iteration", -1)) if meta.get("stage") == "stage1" else -1


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "timing.json"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("interruptions")
    a, b, c, d = (work / name for name in "abcd")
    _run([*COMMAND, "--out", str(a)], work)
    _run([*COMMAND, "--out", str(b)], work)

    # C: killed with SIGKILL once its checkpoint shows the third optimiser iteration.
    killed = subprocess.Popen(_cli(*COMMAND, "--out", str(c), cwd=work), cwd=work,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = work / ".c.partial" / "checkpoint.npz"
    deadline = time.monotonic() + 300
    while _iteration(checkpoint) < 3:
        assert killed.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    state_after_kill = {"returncode": killed.returncode, "out_exists": c.exists(),
                        "partial": sorted(p.name for p in (work / ".c.partial").iterdir()),
                        "iteration": _iteration(checkpoint)}
    _run([*COMMAND, "--out", str(c), "--resume"], work)

    _run(["calibrate", "--replay", str(a / "report.json"), "--out", str(d), "--quiet"], work)
    return a, b, c, d, state_after_kill


def test_the_killed_run_left_no_results_folder(runs):
    *_, killed = runs
    assert killed["returncode"] == -signal.SIGKILL
    assert not killed["out_exists"]
    assert "checkpoint.npz" in killed["partial"] and "run.json" in killed["partial"]
    assert killed["iteration"] >= 3


def test_resumed_run_gives_the_uninterrupted_estimate(runs):
    a, _, c, _, _ = runs
    import pandas as pd

    whole, resumed = pd.read_csv(a / "estimates.csv"), pd.read_csv(c / "estimates.csv")
    np.testing.assert_allclose(resumed["estimate"], whole["estimate"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(resumed["se"], whole["se"], rtol=0, atol=1e-10)
    # Stronger: the resumed computation is the same computation, file for file.
    assert _files(c) == _files(a)
    assert not (c.parent / ".c.partial").exists()


def test_the_same_command_twice_gives_identical_files(runs):
    a, b, *_ = runs
    files = _files(a)
    assert {"estimates.csv", "moments.csv", "report.json", "fit.png", "sensitivity.png"} <= set(files)
    assert _files(b) == files


def test_replay_reproduces_the_run_and_report_records_every_input(runs):
    a, _, _, d, _ = runs
    assert _files(d) == _files(a)
    report = json.loads((a / "report.json").read_text())
    config = report["config"]
    assert config["seed"] == 3 and config["n_agents"] == 4_000 and config["n_starts"] == 2
    assert config["flip_checks"] == 0 and config["n_sim"] == 3 and config["weights"] == "diagonal"
    assert report["inputs"] == {"targets": None, "weights": None}  # the shipped targets, no files read
    assert report["targets"][0]["moment"] == "cv_change" and report["targets"][0]["value"] == -0.22
    for pkg in ("levelfield", "jax", "jaxlib", "numpy", "optax", "pandas"):
        assert report["versions"][pkg]
    assert json.loads((a / "timing.json").read_text())["seconds"] > 0
