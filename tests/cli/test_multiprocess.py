"""Several processes, one program (issue 15): JAX's multi-controller runtime on 127.0.0.1.

Two processes, each with two virtual CPU devices (``--xla_force_host_platform_device_count=2``),
joined by ``jax.distributed`` with gloo CPU collectives (four global devices):

(a) ``levelfield calibrate`` run as two processes writes the single-process results to 1e-10
    (relative for numbers above 1), with output from process 0 only. Its files hold the moments
    and their exact Jacobian (``jax.jacfwd``) at the estimate, computed with the agents sharded
    over the four devices of both processes (``moments.csv``, ``jacobian.csv``), so this is also
    the check that sharded moments and Jacobian equal the single-device ones;
(b) a process killed with SIGKILL in the middle of the optimisation makes the other stop with
    JAX's error ("another task died") within the heartbeat timeout (10 s here) instead of hanging,
    leaving only the hidden partial folder;
(c) both processes rerun with ``--resume`` write the files of the uninterrupted two-process run,
    byte for byte (timing.json apart). They are launched through the environment variables
    (``LEVELFIELD_COORDINATOR``, ``LEVELFIELD_NUM_PROCESSES``, ``LEVELFIELD_PROCESS_ID``,
    ``LEVELFIELD_HEARTBEAT_TIMEOUT``), the other runs through the options.

Which files differ from the single-process run in their last digits depends on the cut: computed
replicated on every process (each process runs the whole model on its first device) none do; with
the agents sharded over the processes (``estimation.distributed.place_draws``), for the estimation's
draws and for each draw set of Omega_sim, every results file of numbers does, by about 1e-12 relative, because sums are reduced across devices in another order.
The test prints which.

Every subprocess is bounded by a timeout. Skipped, with the reason, where this jaxlib has no CPU
collectives (``estimation.distributed.collectives_available``, which asks the library). The
processes share the test session's compilation cache (``LEVELFIELD_CACHE_DIR``, tests/conftest.py).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from estimation import distributed

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT = 10
OK, WHY = distributed.collectives_available()
pytestmark = pytest.mark.skipif(not OK, reason=f"no CPU collectives for a multi-process run: {WHY}")

COMMAND = ["calibrate", "--agents", "4000", "--firms", "40", "--free", "xi,eta1", "--starts", "1",
           "--max-iter", "8", "--sim-sets", "3", "--flip-checks", "0", "--quiet"]
TIMEOUT = 400  # seconds for any one command (two processes compile on two shared cores)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int = 2) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "LEVELFIELD_COORD",
                                                                      "LEVELFIELD_NUM", "LEVELFIELD_PROCESS"))}
    return {**env, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu",
            "PYTHONUNBUFFERED": "1"}


def _start(args: list[str], cwd: Path, port: int, through_environment: bool = False) -> list[subprocess.Popen]:
    """Both processes of one run of ``levelfield <args>``, told how to join by the options or,
    ``through_environment``, by the environment variables that stand for them."""
    def launch(i: int) -> tuple[list[str], dict]:
        if through_environment:
            return [], {distributed.ENV_COORDINATOR: f"127.0.0.1:{port}", distributed.ENV_NUM_PROCESSES: "2",
                        distributed.ENV_PROCESS_ID: str(i), distributed.ENV_HEARTBEAT: str(HEARTBEAT)}
        return ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i),
                "--heartbeat-timeout", str(HEARTBEAT)], {}

    procs = []
    for i in range(2):
        options, variables = launch(i)
        procs.append(subprocess.Popen([sys.executable, "-m", "estimation.cli", *options, *args], cwd=cwd,
                                      env={**_env(), **variables}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    return procs


def _finish(procs: list[subprocess.Popen], timeout: float = TIMEOUT) -> list[tuple[int, str, str]]:
    """(returncode, stdout, stderr) of each process; every process is killed if one overruns."""
    deadline = time.monotonic() + timeout
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            out.append((p.returncode, stdout, stderr))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"a multi-process command ran past {timeout} s (a hang)")
    return out


def _run_pair(args: list[str], cwd: Path, through_environment: bool = False) -> list[tuple[int, str, str]]:
    results = _finish(_start(args, cwd, _port(), through_environment))
    for i, (rc, _, err) in enumerate(results):
        assert rc == 0, f"process {i} exited with {rc}:\n{err[-3000:]}"
    return results


def _progress(checkpoint: Path) -> int:
    """Stage-1 iterations a checkpoint records (a large number once stage 1 is over; -1 if none)."""
    try:
        with np.load(checkpoint, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
    except (OSError, ValueError, KeyError):
        return -1
    if meta.get("stage") != "stage1":
        return 10**6
    return int(meta.get("stage1_batch", {}).get("iteration", -1))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "timing.json"}


# --- (a), (b), (c): the calibration as two processes ------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("multiprocess")
    single, pair, killed = work / "single", work / "pair", work / "killed"
    clock = {}
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "estimation.cli", *COMMAND, "--out", str(single)], cwd=work,
                          env=_env(1), capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    clock["single"] = time.monotonic() - t

    t = time.monotonic()
    outputs = _run_pair([*COMMAND, "--out", str(pair)], work)
    clock["pair"] = time.monotonic() - t

    # Killed: SIGKILL to process 1 once process 0's checkpoint shows a stage-1 iteration.
    t = time.monotonic()
    procs = _start([*COMMAND, "--out", str(killed)], work, _port())
    checkpoint = work / ".killed.partial" / "checkpoint.npz"
    deadline = time.monotonic() + TIMEOUT
    try:
        while _progress(checkpoint) < 1:
            assert all(p.poll() is None for p in procs), "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, f"no checkpoint after {TIMEOUT} s"
            time.sleep(0.05)
        os.kill(procs[1].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        rc0, _, err0 = _finish(procs[:1], timeout=HEARTBEAT + 60)[0]
        stopped_after = time.monotonic() - killed_at
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=60)
    after_kill = {"returncode": rc0, "stderr": err0, "stopped_after": stopped_after,
                  "killed_returncode": procs[1].returncode, "out_exists": killed.exists(),
                  "partial": sorted(p.name for p in (work / ".killed.partial").iterdir()),
                  "progress": _progress(checkpoint)}
    clock["killed"] = time.monotonic() - t

    t = time.monotonic()
    _run_pair([*COMMAND, "--out", str(killed), "--resume"], work, through_environment=True)
    clock["resumed"] = time.monotonic() - t
    print(f"\nmulti-process test wall times (s): {json.dumps({k: round(v, 1) for k, v in clock.items()})}; "
          f"process 0 stopped {stopped_after:.1f} s after process 1 was killed, with: "
          f"{[line for line in err0.splitlines() if 'Terminating' in line or 'error:' in line][:1]}")
    return single, pair, killed, outputs, after_kill


def _close(a, b, where: str, differing: set, name: str) -> None:
    """Every number equal to 1e-10 (relative above 1), everything else equal; ``name`` goes into
    ``differing`` when a number differs at all."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}", differing, name)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]", differing, name)
    elif isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        if a != b:
            differing.add(name)
            assert math.isclose(a, b, rel_tol=1e-10, abs_tol=1e-10), f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_two_processes_write_the_single_process_results(runs):
    import pandas as pd

    single, pair, _, outputs, _ = runs
    one, two = _files(single), _files(pair)
    assert one.keys() == two.keys() and {"estimates.csv", "report.json", "moments_cov.csv"} <= one.keys()
    differing: set = set()
    for name in one:
        if name.endswith(".csv"):
            a, b = pd.read_csv(single / name), pd.read_csv(pair / name)
            assert list(a.columns) == list(b.columns), name
            for column in a.columns:
                if pd.api.types.is_numeric_dtype(a[column]) and pd.api.types.is_numeric_dtype(b[column]):
                    x, y = a[column].to_numpy(float), b[column].to_numpy(float)
                    np.testing.assert_allclose(y, x, rtol=1e-10, atol=1e-10, err_msg=f"{name}:{column}")
                    if not np.array_equal(x, y, equal_nan=True):
                        differing.add(name)
                else:
                    assert a[column].equals(b[column]), f"{name}:{column}"
        elif name.endswith(".json"):
            _close(json.loads(one[name]), json.loads(two[name]), name, differing, name)
    # Which files differ in their last digits (none when the calibration runs replicated on every
    # process; a few when its sums are reduced across processes in another order):
    print(f"\nfiles differing from the single-process run in their last digits: {sorted(differing) or 'none'}")
    # The agents are sharded over the four devices of both processes (estimation.distributed.cuts),
    # so the sums of the moments and of their Jacobian are reduced across processes in another
    # order than on one device: among the thousands of numbers written, some differ in their last
    # digits. None would mean the two processes computed replicated, which this test is not about.
    assert {"moments.csv", "jacobian.csv"} & differing, sorted(differing)

    # Only process 0 prints: its stdout holds levelfield's one line, process 1's nothing.
    (rc0, out0, _), (rc1, out1, err1) = outputs
    assert "Results in" in out0 and "[Gloo]" not in out0 and out1 == "" and err1 == ""


def test_a_killed_process_stops_the_other_with_a_clear_error(runs):
    after = runs[4]
    assert after["killed_returncode"] == -signal.SIGKILL
    assert after["returncode"] != 0
    assert after["stopped_after"] <= HEARTBEAT + 45, after["stopped_after"]
    assert re.search(r"another task died|stopped sending heartbeats|process 0 of 2 stopped", after["stderr"]), \
        after["stderr"][-3000:]
    assert not after["out_exists"]
    assert "checkpoint.npz" in after["partial"] and "run.json" in after["partial"]
    # Killed after process 0 checkpointed a stage-1 iteration; when the processes compute
    # independently (replicated), process 0 may have moved on before the heartbeat stopped it.
    assert after["progress"] >= 1


def test_both_processes_resume_to_the_uninterrupted_files(runs):
    _, pair, killed, *_ = runs
    assert _files(killed) == _files(pair)
    assert not (killed.parent / ".killed.partial").exists()


# --- Options: checked before any work, exit code 2 --------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--coordinator", "127.0.0.1", "--num-processes", "2", "--process-id", "0"], "must look like HOST:PORT"),
    (["--coordinator", "127.0.0.1:70000", "--num-processes", "2", "--process-id", "0"], "allowed: 1..65535"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"], "allowed: 0..1"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "0", "--process-id", "0"], "whole numbers >= 1"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "two", "--process-id", "0"], "not a whole number"),
    (["--coordinator", "127.0.0.1:1234"], "--num-processes"),
    (["--num-processes", "2", "--process-id", "1"], "--coordinator"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "0", "--heartbeat-timeout", "0"],
     "whole seconds >= 1"),
])
def test_bad_options_exit_2_before_any_work(argv, message, monkeypatch, capsys):
    from estimation.cli import main

    for var in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(var, raising=False)
    assert main([*argv, "simulate", "--agents", "1000", "--firms", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("levelfield: error:") and message in err and "Traceback" not in err
    assert distributed.process_count() == 1


def test_environment_variables_and_launchers_are_read_and_checked():
    env = {"LEVELFIELD_COORDINATOR": "node1:1234", "LEVELFIELD_NUM_PROCESSES": "4", "LEVELFIELD_PROCESS_ID": "3"}
    launch = distributed.resolve(environ=env)
    assert (launch.coordinator, launch.num_processes, launch.process_id, launch.source) == ("node1:1234", 4, 3,
                                                                                          "environment")
    assert distributed.resolve(process_id=1, environ=env).process_id == 1  # an option beats its variable
    with pytest.raises(distributed.ConfigError, match="LEVELFIELD_PROCESS_ID 4 is not allowed"):
        distributed.resolve(environ={**env, "LEVELFIELD_PROCESS_ID": "4"})
    assert distributed.resolve(environ={}) is None
    assert distributed.resolve(environ={**env, "LEVELFIELD_NUM_PROCESSES": "1", "LEVELFIELD_PROCESS_ID": "0"}) is None
    slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2", "SLURM_PROCID": "1",
             "SLURM_LOCALID": "0"}
    launch = distributed.resolve(environ=slurm)
    assert (launch.source, launch.num_processes, launch.process_id, launch.coordinator) == ("slurm", 2, 1, None)
    assert distributed.resolve(environ={**slurm, "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    assert distributed.resolve(environ={**slurm, "LEVELFIELD_DISTRIBUTED": "off"}) is None
    ompi = {"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1", "OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "2"}
    assert distributed.resolve(environ=ompi).source == "ompi"
    with pytest.raises(distributed.ConfigError, match="SLURM_PROCID"):
        distributed.resolve(environ={**slurm, "SLURM_PROCID": "x"})
