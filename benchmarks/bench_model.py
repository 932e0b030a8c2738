"""Benchmark of ``jaxmodel.moments``: compile time, run time, memory, per agent, by N.

Each size runs in its own subprocess so that its peak memory (max RSS) is its own. For every N
(F = N/1000, at least 10) it records trace+lower and compile time apart, the run time over repeats
(min/median/max, after a warm-up, with ``block_until_ready``), peak RSS, XLA's own memory analysis
of the compiled program, and time and bytes per agent; then the device and versions.

    python benchmarks/bench_model.py                      # N = 1e4, 1e5, 1e6, 1e7
    python benchmarks/bench_model.py --sizes 10000 100000 --repeats 3
    python benchmarks/bench_model.py --precision float32 --out benchmarks/results/bench_model_float32.json
    JAX_PLATFORMS=cuda python benchmarks/bench_model.py --out benchmarks/results/bench_model_gpu.json

The script runs unchanged on a CUDA device (``JAX_PLATFORMS=cuda``): the model has no CPU-only
code path there (sorts use ``jnp.argsort`` off the CPU).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import environment, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_one(n_agents: int, repeats: int, seed: int, fp_damping: float = 0.5, precision: str = "float64",
                fp_solver: str = "anderson") -> dict:
    """Compile and run ``moments`` at one size; returns a JSON-able record."""
    import jax

    import jaxmodel
    from jaxmodel import outcomes

    n_firms = max(10, n_agents // 1000)
    settings = jaxmodel.Settings(n_agents=n_agents, n_firms=n_firms, fp_damping=fp_damping, precision=precision,
                                 fp_solver=fp_solver)
    params = jaxmodel.baseline()
    rss_import = _rss_mib()
    draws = jax.block_until_ready(jaxmodel.make_draws(seed, settings))

    t0 = time.perf_counter()
    lowered = outcomes.moments_jit.lower(params, draws, settings)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    memory = compiled.memory_analysis()

    first = time.perf_counter()
    result = jax.block_until_ready(compiled(params, draws))
    first = time.perf_counter() - first
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, draws))
        times.append(time.perf_counter() - start)
    peak = _rss_mib()
    median = statistics.median(times)
    return {
        "n_agents": n_agents,
        "n_firms": n_firms,
        "fp_damping": fp_damping,
        "fp_solver": fp_solver,
        "precision": precision,
        "trace_lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "first_run_s": first,
        "run_s": {"min": min(times), "median": median, "max": max(times), "repeats": repeats},
        "per_agent_us": median / n_agents * 1e6,
        "peak_rss_mib": peak,
        "rss_after_import_mib": rss_import,
        "per_agent_bytes": (peak - rss_import) * 2**20 / n_agents,
        "xla_temp_mib": getattr(memory, "temp_size_in_bytes", 0) / 2**20 if memory else None,
        "xla_argument_mib": getattr(memory, "argument_size_in_bytes", 0) / 2**20 if memory else None,
        "fp_iterations": [int(result.before["fp_iterations"]), int(result.after["fp_iterations"])],
        "gini_change": float(result.gini_change),
        "moments": [float(x) for x in result.vector()],
        **({"float64_moments": _float64_moments(params, n_agents, n_firms, seed, fp_damping)}
           if precision == "float32" else {}),
    }


def _float64_moments(params, n_agents, n_firms, seed, fp_damping) -> list[float]:
    """The same economy in float64 (same draws, rounded for float32): float32's accuracy reference."""
    import jaxmodel

    settings = jaxmodel.Settings(n_agents=n_agents, n_firms=n_firms, fp_damping=fp_damping)
    return [float(x) for x in jaxmodel.moments(params, jaxmodel.make_draws(seed, settings), settings).vector()]



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size after a warm-up")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fp-damping", type=float, default=0.5, help="fixed-point damping (MODEL.md: 0.5)")
    parser.add_argument("--fp-solver", choices=("anderson", "damped"), default="anderson",
                        help="education fixed-point solver (default anderson; damped is MODEL.md's reference)")
    parser.add_argument("--precision", choices=("float64", "float32"), default="float64",
                        help="float32 also records the float64 moments of the same economy (accuracy)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_model.json")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        print(json.dumps(measure_one(args.one, args.repeats, args.seed, args.fp_damping, args.precision, args.fp_solver)))
        return 0

    records = []
    for n in args.sizes:
        repeats = args.repeats if n < 5_000_000 else max(1, min(args.repeats, 2))
        print(f"N = {n:_} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, "--one", str(n), "--repeats", str(repeats), "--seed", str(args.seed),
             "--fp-damping", str(args.fp_damping), "--precision", args.precision, "--fp-solver", args.fp_solver],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            records.append({"n_agents": n, "error": proc.stderr.strip().splitlines()[-1:]})
            print(proc.stderr, file=sys.stderr)
            continue
        record = json.loads(proc.stdout.strip().splitlines()[-1])
        records.append(record)
        print(
            f"  compile {record['compile_s']:.2f} s, run {record['run_s']['median']:.3f} s "
            f"({record['per_agent_us']:.2f} us/agent), peak RSS {record['peak_rss_mib']:.0f} MiB "
            f"({record['per_agent_bytes']:.0f} B/agent)",
            file=sys.stderr,
        )
    payload = {"benchmark": "moments", "environment": environment(), "results": records}
    write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
