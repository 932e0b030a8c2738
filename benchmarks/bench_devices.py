"""Moments with the agents sharded over 1, 2 and 4 devices (JAX NamedSharding on the agent axis).

On a CPU the devices are virtual (``--xla_force_host_platform_device_count``) and share its cores,
so this measures the overhead of the partitioned program and checks its result; on a machine with
several GPUs set ``JAX_PLATFORMS=cuda`` and the devices are real. Each count runs in its own
process (the device count is fixed when JAX starts).

    python benchmarks/bench_devices.py --agents 200000 --devices 1 2 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, write_json  # noqa: E402

CHILD = r"""
import json, statistics, sys, time
import jax, numpy as np
import jaxmodel as jm
from jaxmodel.sharding import shard_draws
n, repeats = int(sys.argv[1]), int(sys.argv[2])
s = jm.Settings(n_agents=n, n_firms=max(10, n // 1000))
p = jm.baseline()
d = jm.make_draws(0, s)
if jax.device_count() > 1:
    d = shard_draws(d)
t0 = time.perf_counter(); m = jax.block_until_ready(jm.moments(p, d, s)); first = time.perf_counter() - t0
times = []
for _ in range(repeats):
    t0 = time.perf_counter(); jax.block_until_ready(jm.moments(p, d, s)); times.append(time.perf_counter() - t0)
print(json.dumps({"devices": jax.device_count(), "platform": jax.devices()[0].platform, "n_agents": n,
                  "first_call_s": first, "run_s": {"min": min(times), "median": statistics.median(times),
                  "max": max(times)}, "moments": [float(x) for x in m.vector()]}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=200_000)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_devices.json")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    rows = []
    for k in args.devices:
        env = dict(os.environ)
        if env.get("JAX_PLATFORMS", "cpu") == "cpu":
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={k}"
        proc = subprocess.run([sys.executable, "-c", CHILD, str(args.agents), str(args.repeats)],
                              capture_output=True, text=True, env=env, cwd=root)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            rows.append({"devices": k, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"  {k} device(s): {row['run_s']['median']:.3f} s (first call {row['first_call_s']:.1f} s)", file=sys.stderr)
    ok = [r for r in rows if "moments" in r]
    if len(ok) > 1:
        base = ok[0]["moments"]
        for r in ok:
            r["max_abs_difference_from_first"] = max(abs(a - b) for a, b in zip(r["moments"], base))
    payload = {"benchmark": "devices", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpu_count": os.cpu_count(),
               "results": rows}
    write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
