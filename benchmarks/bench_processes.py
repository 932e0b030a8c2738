"""One process with two devices against two processes with one device each (issue 15).

Both layouts have two devices in all: one process with two virtual CPU devices
(``--xla_force_host_platform_device_count=2``), or two processes on 127.0.0.1 joined by
``jax.distributed`` (gloo CPU collectives) with one device each. Measured:

- ``jaxmodel.moments`` at N = 20,000 (F = 20) with the agents sharded over the two devices
  (``jaxmodel.sharding.shard_draws``): the first call (tracing and compiling, then one run) and the
  median of the next runs;
- a short ``levelfield calibrate`` (N = 20,000, F = 100, free xi and eta1, one start, at most 8
  iterations, 3 draw sets, no flip checks), with an empty compilation cache and again with the cache
  the first run left; compile and run times from its timing.json, and the wall time of the command.

On one host the two processes share the same two cores as the two devices of one process, and their
collectives go through gloo over TCP instead of memory, so this measures the overhead of the
multi-process runtime, not a speed-up (which needs several machines or accelerators).

    python benchmarks/bench_processes.py            # writes benchmarks/results/processes.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, ROOT, environment, write_json  # noqa: E402

CHILD = r"""
import json, os, statistics, sys, time
from estimation import distributed
launch = distributed.resolve()
if launch is not None:
    distributed.initialize(launch)  # before any JAX computation
import jax
jax.config.update("jax_enable_x64", True)
import jaxmodel as jm
from jaxmodel.sharding import shard_draws
n, repeats = int(sys.argv[1]), int(sys.argv[2])
s = jm.Settings(n_agents=n, n_firms=max(10, n // 1000))
p = jm.baseline()
t0 = time.perf_counter(); d = shard_draws(jm.make_draws(0, s), jax.devices()); jax.block_until_ready(d)
draws_s = time.perf_counter() - t0
t0 = time.perf_counter(); m = jax.block_until_ready(jm.moments(p, d, s)); first = time.perf_counter() - t0
times = []
for _ in range(repeats):
    t0 = time.perf_counter(); jax.block_until_ready(jm.moments(p, d, s)); times.append(time.perf_counter() - t0)
run = statistics.median(times)
print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(), "devices": jax.device_count(),
                  "local_devices": jax.local_device_count(), "n_agents": n, "n_firms": s.n_firms,
                  "draws_s": draws_s, "first_call_s": first, "compile_s": first - run,
                  "run_s": {"min": min(times), "median": run, "max": max(times)},
                  "moments": [float(x) for x in m.vector()]}))
"""

CALIBRATE = ["calibrate", "--agents", "20000", "--firms", "100", "--free", "xi,eta1", "--starts", "1",
             "--max-iter", "8", "--sim-sets", "3", "--flip-checks", "0", "--quiet"]
TIMEOUT = 900


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int, cache: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "LEVELFIELD_"))}
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    if cache is not None:
        env["LEVELFIELD_CACHE_DIR"] = str(cache)
    return env


def _processes(command: list[str], processes: int, devices: int, cwd: Path, cache: Path | None = None,
               cli_options: bool = True) -> tuple[float, list[str]]:
    """Run ``command`` (arguments of ``levelfield`` with ``cli_options``, else a whole command line)
    as ``processes`` processes of ``devices`` devices each; (wall s, stdouts)."""
    port = _port()
    procs = []
    start = time.perf_counter()
    for i in range(processes):
        env = _env(devices, cache)
        extra = []
        if processes > 1:
            if cli_options:
                extra = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes), "--process-id", str(i)]
            else:
                env.update(LEVELFIELD_COORDINATOR=f"127.0.0.1:{port}", LEVELFIELD_NUM_PROCESSES=str(processes),
                           LEVELFIELD_PROCESS_ID=str(i))
        argv = [sys.executable, "-m", "estimation.cli", *extra, *command] if cli_options else command
        procs.append(subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outs = []
    try:
        for i, p in enumerate(procs):
            out, err = p.communicate(timeout=TIMEOUT)
            if p.returncode != 0:
                raise RuntimeError(f"process {i} of {' '.join(argv)} exited with {p.returncode}: {err[-2000:]}")
            outs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return time.perf_counter() - start, outs


def bench_moments(n: int, repeats: int, work: Path) -> list[dict]:
    rows = []
    for processes, devices in ((1, 2), (2, 1)):
        wall, outs = _processes([sys.executable, "-c", CHILD, str(n), str(repeats)], processes, devices, ROOT,
                                cli_options=False)
        per_process = [json.loads(out.strip().splitlines()[-1]) for out in outs]
        row = {"layout": f"{processes} process(es) x {devices} device(s)", "wall_s": wall, **per_process[0]}
        if processes > 1:
            row["other_processes"] = per_process[1:]
        rows.append(row)
        print(f"  moments, {row['layout']}: run {row['run_s']['median']:.3f} s, compile {row['compile_s']:.1f} s",
              file=sys.stderr)
    base = rows[0]["moments"]
    for r in rows:
        r["max_abs_difference_from_first"] = max(abs(a - b) for a, b in zip(r["moments"], base))
    return rows


def bench_calibration(work: Path) -> list[dict]:
    import pandas as pd

    rows = []
    for processes, devices in ((1, 2), (2, 1)):
        cache = work / f"cache-{processes}x{devices}"
        for attempt in ("empty cache", "cache of the first run"):
            out = work / f"calibrate-{processes}x{devices}-{len(rows)}"
            wall, _ = _processes([*CALIBRATE, "--out", str(out)], processes, devices, work, cache)
            timing = json.loads((out / "timing.json").read_text())
            estimates = [float(x) for x in pd.read_csv(out / "estimates.csv")["estimate"].tolist()]
            rows.append({"layout": f"{processes} process(es) x {devices} device(s)", "cache": attempt,
                         "wall_s": wall, "compile_s": timing["total"]["compile_s"], "run_s": timing["total"]["run_s"],
                         "stages": timing["stages"], "estimates": estimates})
            print(f"  calibrate, {rows[-1]['layout']}, {attempt}: {wall:.1f} s "
                  f"({rows[-1]['compile_s']:.1f} s compiling, {rows[-1]['run_s']:.1f} s computing)", file=sys.stderr)
    base = rows[0]["estimates"]
    for r in rows:
        r["max_abs_difference_from_first"] = max(abs(a - b) for a, b in zip(r["estimates"], base))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "processes.json")
    args = parser.parse_args()
    import importlib
    import inspect

    from estimation import distributed
    from estimation.msm import noise

    msm_calibrate = importlib.import_module("estimation.msm.calibrate")

    ok, why = distributed.collectives_available()
    if not ok:
        print(f"no CPU collectives: {why}", file=sys.stderr)
        return 1
    sharded = "place_draws" in inspect.getsource(msm_calibrate._problem)
    spread = "place_draws" in inspect.getsource(noise.simulated_moments)
    work = Path(tempfile.mkdtemp(prefix="bench-processes-"))
    try:
        moments = bench_moments(args.agents, args.repeats, work)
        calibration = bench_calibration(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    payload = {
        "benchmark": "processes",
        "note": ("One host (2 CPU cores): 1 process with 2 virtual devices against 2 processes with 1 device each, "
                 "joined by jax.distributed with gloo collectives over TCP on 127.0.0.1. Both layouts share the same "
                 "2 cores, so this measures the overhead of the multi-process runtime, not a speed-up. compile_s of "
                 "moments is the first call less the median run; the calibration's compile_s and run_s are its "
                 "timing.json totals, wall_s the command's wall time (imports and joining included). In a single "
                 "process the calibration uses one device (only the multi-process run spreads its work). JAX's "
                 "persistent compilation cache is written by process 0 only, and process 1's cache keys differ "
                 "from process 0's on the CPU, so process 1 compiles again in every run."),
        "calibration_cut": {
            "draws": "agents sharded over every process's devices" if sharded else
                     "replicated: every process computes everything on its first device",
            "simulation_noise_sets": "one at a time, each set's agents sharded over every process's devices" if spread else
                                     "replicated: every process simulates every set",
        },
        "environment": environment("pandas"),
        "moments": moments,
        "calibration": {"command": "levelfield " + " ".join(CALIBRATE), "runs": calibration},
    }
    write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
