"""``levelfield identify`` at S points against one evaluation of the moments and their Jacobian.

1. One ``evaluate`` alone: the moments and G = dm/dtheta (jax.jacfwd through the fixed point) at the
   baseline, the default free set, one point: compile once, then the median of ``--repeats`` runs.
2. One default ``levelfield identify`` (S = ``--points`` Sobol points, the criterion slices and the
   contour) as a user runs it: a new process with an empty compilation cache, so that compile
   times are those of a first run; its timing.json splits compile and run per program.
3. One default ``levelfield calibrate`` at the same size, also a new process with an empty cache:
   issue 22's aim compares identify's wall time with this run's optimisation stage.

The per-point cost of the batched Jacobians (run time / (S + 1)) is compared with one evaluate.
Writes benchmarks/results/identify.json (or --out). Run: ``python benchmarks/bench_identify.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, environment, write_json  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20_000)
    parser.add_argument("--firms", type=int, default=100)
    parser.add_argument("--points", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "identify.json")
    args = parser.parse_args()
    os.environ["LEVELFIELD_CACHE_DIR"] = "off"  # the evaluate below: a first compile

    import jax

    import jaxmodel
    from estimation import identification as ident
    from estimation.msm.parameters import free_parameters

    settings = jaxmodel.Settings(n_agents=args.agents, n_firms=args.firms)
    base = jaxmodel.baseline()
    draws = jaxmodel.make_draws(jax.random.key(0), settings)
    free = free_parameters(None)
    assigned = jaxmodel.assign(base, draws, settings)
    theta = jax.numpy.asarray([float(getattr(base, n)) for n in free.names])
    one = jax.jit(ident._moments_and_jacobian, static_argnames="settings")
    call = (theta, ident.cold(settings), base, free.arrays(), draws, assigned)
    start = time.perf_counter()
    program = one.lower(*call, settings=settings).compile()
    compile_one = time.perf_counter() - start
    runs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready(program(*call))
        runs.append(time.perf_counter() - start)
    evaluate_s = statistics.median(runs)
    print(f"evaluate: compile {compile_one:.1f} s, run median {evaluate_s:.3f} s", file=sys.stderr)

    size = ["--agents", str(args.agents), "--firms", str(args.firms)]
    identify, total = _first_run(["identify", *size, "--points", str(args.points)])
    timing = identify["timing"]
    calibration, calibrate_total = _first_run(["calibrate", *size])
    optimisation = calibration["timing"]["stages"]["optimisation"]
    jac = timing["jacobians"]
    per_point = jac["run_s"] / jac["points"]
    print(f"identify S={args.points}: {total:.1f} s in all; batched Jacobians {jac['run_s']:.1f} s run "
          f"({per_point:.3f} s per point, {per_point / evaluate_s:.2f} x one evaluate), {jac['compile_s']:.1f} s "
          f"compile; slices {timing['slices']['run_s']:.1f} s run, {timing['slices']['compile_s']:.1f} s compile",
          file=sys.stderr)
    ratio = total / optimisation["wall_s"]
    print(f"calibrate: optimisation stage {optimisation['wall_s']:.1f} s of {calibrate_total:.1f} s; identify / "
          f"optimisation stage = {ratio:.2f} (aim <= 3)", file=sys.stderr)
    write_json(args.out, {
        "environment": environment("scipy"),
        "load_average_at_end": os.getloadavg(),
        "n_agents": args.agents, "n_firms": args.firms, "points": args.points, "free": list(free.names),
        "evaluate": {"compile_s": compile_one, "run_s_median": evaluate_s, "runs_s": runs},
        "identify": {"total_s": total, "timing": timing, "jacobian_run_s_per_point": per_point,
                     "per_point_over_one_evaluate": per_point / evaluate_s},
        "calibrate": {"total_s": calibrate_total, "timing": calibration["timing"]},
        "identify_over_optimisation_stage": ratio,
        "how": "each command in a new process with an empty LEVELFIELD_CACHE_DIR; total_s is the process's wall",
    })
    return 0


def _first_run(command: list[str]) -> tuple[dict, float]:
    """Run ``levelfield COMMAND --quiet`` in a new process with an empty compilation cache; its
    timing.json and the process's wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        out, env = Path(tmp) / "out", {**os.environ, "LEVELFIELD_CACHE_DIR": str(Path(tmp) / "cache")}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "estimation.cli", *command, "--out", str(out), "--quiet"],
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"levelfield {command[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
        return {"timing": json.loads((out / "timing.json").read_text("utf-8"))}, wall


if __name__ == "__main__":
    raise SystemExit(main())
