"""Results folders: their files get the mode ``open()`` gives, and a run's partial folder is locked.

The lock (``fcntl.flock`` on ``.DIR.partial/lock``) is held by the process that writes the folder
and dies with it. The tests use real processes: helpers that take the lock through
``RunFolder.prepare`` and wait, and a real ``levelfield calibrate`` that is stopped (SIGSTOP: alive,
holding its lock, not finishing) while a second run tries the same ``--out``, then killed (SIGKILL)
and resumed.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from estimation.errors import OutputError
from estimation.output.runfiles import RunFolder, atomic_write_json, atomic_write_text, write_csv
from tests.helpers import ROOT, run_cli

#: The size of tests/msm/test_interruptions.py (whose compiled programs the session's cache holds).
COMMAND = ["calibrate", "--agents", "4000", "--firms", "40", "--starts", "2", "--max-iter", "15",
           "--sim-sets", "3", "--flip-checks", "0", "--quiet", "--seed", "3"]

#: A helper process: prints "ready", waits for the file argv[2], takes the folder argv[1] through
#: RunFolder.prepare and prints "holds" (then waits to be killed) or "refused <message>".
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from estimation.errors import OutputError
    from estimation.output.runfiles import RunFolder
    print("ready", flush=True)
    while not Path(sys.argv[2]).exists():
        time.sleep(0.005)
    folder = RunFolder(sys.argv[1])  # the lock lives as long as the folder's RunFolder (the run)
    try:
        folder.prepare({"command": "test"}, resume=False, force=False)
    except OutputError as exc:
        print("refused", exc, flush=True)
        sys.exit(0)
    print("holds", flush=True)
    time.sleep(600)
""")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)],
                         ids=["umask-022", "umask-077", "umask-002"])
def test_results_files_get_the_mode_open_gives_them(tmp_path: Path, umask: int, mode: int):
    """Every writer of results files (text, CSV, JSON) creates them as open() does, 0666 less the
    umask: readable by the group under the usual 022, not mkstemp's private 0600."""
    import pandas as pd

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "a\n")
        write_csv(pd.DataFrame({"x": [1.0]}), tmp_path / "b.csv")
        atomic_write_json(tmp_path / "c.json", {"x": 1})
        with open(tmp_path / "reference", "w"):
            pass
    finally:
        os.umask(old)
    modes = {p.name: _mode(p) for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys(["a.txt", "b.csv", "c.json", "reference"], mode), modes


def _holders(folder: Path, go: Path, count: int) -> list[subprocess.Popen]:
    """``count`` HOLDER processes on ``folder``, each imported and waiting for ``go``."""
    procs = [subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(go)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(count)]
    for proc in procs:
        line = proc.stdout.readline().strip()
        assert line == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")
    return procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()


def test_of_runs_started_at_once_on_one_folder_one_goes_on(tmp_path: Path):
    """Four processes prepare the same results folder at the same moment: exactly one holds it, and
    each of the others is refused with a message naming the holder's pid."""
    out, go = tmp_path / "results", tmp_path / "go"
    procs = _holders(out, go, 4)
    try:
        go.touch()
        lines = {proc.pid: proc.stdout.readline().strip() for proc in procs}
        holding = [pid for pid, line in lines.items() if line == "holds"]
        assert len(holding) == 1, lines
        for pid, line in lines.items():
            if pid != holding[0]:
                assert line.startswith("refused another process (pid ") and f"(pid {holding[0]} " in line, line
    finally:
        _stop(procs)


def test_the_lock_dies_with_its_process(tmp_path: Path):
    """A folder held by a live process refuses --resume with its pid; once that process is killed
    with SIGKILL (no chance to clean up), --resume takes the folder over."""
    out, go = tmp_path / "results", tmp_path / "go"
    procs = _holders(out, go, 1)
    try:
        go.touch()
        assert procs[0].stdout.readline().strip() == "holds"
        with pytest.raises(OutputError, match=rf"another process \(pid {procs[0].pid} "):
            RunFolder(out).prepare({"command": "test"}, resume=True, force=False)
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(timeout=60)
        folder = RunFolder(out)
        assert folder.prepare({"command": "test"}, resume=True, force=False) is True
        assert (folder.partial / "lock").read_text().startswith(f"pid {os.getpid()} ")
    finally:
        _stop(procs)


def test_a_second_command_on_a_running_folder_is_refused_and_resume_after_sigkill_works(tmp_path: Path):
    """While a real ``levelfield calibrate`` writes DIR, another command on the same --out (calibrate
    itself, with --resume or --force, and regimes) is refused in one line, exit code 2, naming that
    process's pid, and the running run's partial folder is left as it was; after the run is killed
    with SIGKILL, ``--resume`` completes it, into a results folder that holds the results only
    (no lock file) with the mode open() gives files."""
    out = tmp_path / "results"
    partial = tmp_path / ".results.partial"
    owner = subprocess.Popen([sys.executable, "-m", "estimation.cli", *COMMAND, "--out", str(out)], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (partial / "run.json").exists():  # written once the run holds its folder
            assert owner.poll() is None, owner.stderr.read()
            assert time.monotonic() < deadline, "the run did not start within 300 s"
            time.sleep(0.05)
        os.kill(owner.pid, signal.SIGSTOP)  # alive and holding the folder, but it cannot finish
        before = sorted(p.name for p in partial.iterdir())
        for argv in ([*COMMAND, "--out", str(out)], [*COMMAND, "--out", str(out), "--resume"],
                     [*COMMAND, "--out", str(out), "--force"],
                     ["regimes", "--agents", "4000", "--firms", "40", "--grid", "3", "--out", str(out)]):
            code, _, stderr = run_cli(*argv)
            assert code == 2, (argv, stderr)
            said = [line for line in stderr.splitlines() if line.startswith("levelfield")]
            assert len(said) == 1 and said[0].startswith(f"levelfield {argv[0]}: error: another process "
                                                         f"(pid {owner.pid} "), stderr
            assert "is writing" in said[0]
        assert sorted(p.name for p in partial.iterdir()) == before and not out.exists()
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=60)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(timeout=60)
        owner.stderr.close()
    code, _, stderr = run_cli(*COMMAND, "--out", str(out), "--resume")
    assert code == 0, stderr
    names = sorted(p.name for p in out.iterdir())
    assert "report.json" in names and "estimates.csv" in names and "lock" not in names, names
    assert not partial.exists()
    mode = 0o666 & ~_umask()
    assert {p.name: _mode(p) for p in out.iterdir()} == dict.fromkeys(names, mode)
