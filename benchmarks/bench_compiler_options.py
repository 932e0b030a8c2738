"""XLA's compiler options on and off (``jaxmodel.compilation``), side by side in new processes.

Each pair runs one new process with the options ``import jaxmodel`` sets (XLA:CPU's YNNPACK
library fusions off) and one with ``LEVELFIELD_XLA_OPTIONS=off`` (XLA's defaults), in alternating
order, at each size. A process compiles and runs, from a cold start of the fixed points:
``moments`` (both states) and ``jax.jacfwd`` of the six moments in the five default free
parameters (an ``evaluate``), and reports compile seconds and the median of 7 runs. The largest
difference between the two processes' moments is recorded too (the option changes the order of
sums, not what is computed).

    python benchmarks/bench_compiler_options.py [--sizes 20000:100,100000:500] [--pairs 3]

Results: ``benchmarks/results/compiler_options.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, environment, write_json  # noqa: E402

NAMES = ("alpha", "sigma_nu", "sigma", "eta1", "xi")


def _worker(n_agents: int, n_firms: int, repeats: int) -> dict:
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxmodel
    from estimation.msm.parameters import free_parameters, params_with
    from jaxmodel.outcomes import cold, moments_at

    settings = jaxmodel.Settings(n_agents=n_agents, n_firms=n_firms)
    base = jaxmodel.baseline()
    draws = jaxmodel.make_draws(jax.random.key(0), settings)
    free = free_parameters(NAMES).arrays()
    assigned = jaxmodel.assign(base, draws, settings)
    theta = jnp.asarray([float(getattr(base, n)) for n in NAMES])
    start = cold(settings)

    def moments(t, s):
        return moments_at(params_with(base, t, free), draws, settings, s, assigned).vector()

    out = {"xla_flags": os.environ.get("XLA_FLAGS", "")}
    for name, fn in (("moments", jax.jit(moments)), ("evaluate", jax.jit(jax.jacfwd(moments)))):
        t0 = time.perf_counter()
        program = fn.lower(theta, start).compile()
        compile_s = time.perf_counter() - t0
        value = jax.block_until_ready(program(theta, start))
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(program(theta, start))
            runs.append(time.perf_counter() - t0)
        out[name] = {"compile_s": compile_s, "run_s": statistics.median(runs), "runs_s": runs,
                     "library_fusions": "ynn_fusion" in program.as_text()}
        if name == "moments":
            out["values"] = np.asarray(value).tolist()
    return out


def _process(n_agents: int, n_firms: int, repeats: int, on: bool, candidate: str = "") -> dict:
    """One worker process: jaxmodel's options (on) or XLA's defaults (off); with ``candidate``,
    "off" means jaxmodel's options plus the candidate XLA flags instead."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "LEVELFIELD_XLA_OPTIONS")}
    if not on and candidate:
        env["XLA_FLAGS"] = candidate
    elif not on:
        env["LEVELFIELD_XLA_OPTIONS"] = "off"
    done = subprocess.run([sys.executable, __file__, "--worker", f"{n_agents}:{n_firms}", "--repeats", str(repeats)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000:100,100000:500", help="N:F pairs, comma-separated")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--candidate", default="",
                        help="XLA flags to try on top of jaxmodel's options: the 'off' side runs with them instead "
                             "of XLA's defaults (for example --xla_backend_optimization_level=1)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "compiler_options.json")
    args = parser.parse_args()
    if args.worker:
        n, f = (int(x) for x in args.worker.split(":"))
        print(json.dumps(_worker(n, f, args.repeats)))
        return 0

    rows = []
    for size in args.sizes.split(","):
        n, f = (int(x) for x in size.split(":"))
        pairs = []
        for p in range(args.pairs):
            order = (True, False) if p % 2 == 0 else (False, True)
            runs = {("on" if on else "off"): _process(n, f, args.repeats, on, args.candidate) for on in order}
            pairs.append(runs)
            print(f"N={n} F={f} pair {p + 1}: " + "; ".join(
                f"{k}: moments {v['moments']['run_s']:.4f} s (compile {v['moments']['compile_s']:.1f}), "
                f"evaluate {v['evaluate']['run_s']:.4f} s (compile {v['evaluate']['compile_s']:.1f})"
                for k, v in runs.items()), file=sys.stderr)

        def median(side: str, program: str, what: str) -> float:
            return statistics.median(pr[side][program][what] for pr in pairs)

        summary = {side: {program: {what: median(side, program, what) for what in ("compile_s", "run_s")}
                          for program in ("moments", "evaluate")} for side in ("on", "off")}
        summary["run_ratio_off_over_on"] = {program: median("off", program, "run_s") / median("on", program, "run_s")
                                            for program in ("moments", "evaluate")}
        summary["evaluate_over_moments"] = {side: median(side, "evaluate", "run_s") / median(side, "moments", "run_s")
                                            for side in ("on", "off")}
        summary["max_moment_difference"] = max(
            max(abs(a - b) for a, b in zip(pr["on"]["values"], pr["off"]["values"])) for pr in pairs)
        rows.append({"n_agents": n, "n_firms": f, "summary": summary, "pairs": pairs})
        print(f"N={n}: medians {json.dumps(summary)}", file=sys.stderr)
    write_json(args.out, {
        "environment": environment(),
        "load_average_at_end": os.getloadavg(),
        "how": "pairs of new processes in alternating order, options on (import jaxmodel) and off "
               "(LEVELFIELD_XLA_OPTIONS=off); compile and median run of a cold-start program",
        "options": __import__("jaxmodel").compilation.CPU_OPTIONS,
        "off_side": f"jaxmodel's options and {args.candidate}" if args.candidate else "XLA's defaults",
        "sizes": rows,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
