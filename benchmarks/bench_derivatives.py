"""What the exact derivatives cost, in model runs: ``evaluate`` and the gradient against ``moments``.

For each size and each fixed-point solver, in one process and on the same draws:

- ``moments``: the six moments (a cold start, as a first evaluation of a calibration);
- ``evaluate``: the six moments and their exact Jacobian in the five default free parameters
  (``jax.jacfwd``, forward mode through the fixed point: the MSM Jacobian);
- ``gradient``: the reverse-mode gradient of the scalar sum of squared moments (``jax.grad``);
- ``feedback``: one assembly of the fixed point's Jacobian D (``jaxmodel.feedback``), and one pass
  x -> market(choice(x)), to say what D costs in passes.

Compile time (the first call) and run time (min and median of repeats after it) are kept apart; the
ratios divide run times measured side by side. Results go to ``benchmarks/results/derivatives.json``.

    python benchmarks/bench_derivatives.py                       # N = 1e5 and 1e6, both solvers
    python benchmarks/bench_derivatives.py --sizes 100000 --solvers anderson
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, environment, write_json  # noqa: E402

FREE = ("alpha", "sigma_nu", "sigma", "eta1", "xi")


def _timed(fn, repeats: int) -> dict:
    start = time.perf_counter()
    fn()
    compile_s = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return {"first_call_s": compile_s, "min_s": min(runs), "median_s": statistics.median(runs), "repeats": repeats}


def measure(n: int, firms: int, solver: str, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxmodel
    from jaxmodel import education, feedback, outcomes
    from jaxmodel.market import economy
    from jaxmodel.workers import workforce

    settings = jaxmodel.Settings(n_agents=n, n_firms=firms, fp_solver=solver)
    base, draws = jaxmodel.baseline(), jaxmodel.make_draws(0, settings)
    theta = jnp.array([getattr(base, k) for k in FREE])

    def f(x, d):
        return outcomes.moments_jit(jaxmodel.Params(**{**base.to_dict(), **dict(zip(FREE, x))}), d, settings).vector()

    # Draws are arguments, never closed-over constants (XLA would constant-fold their sorts).
    programs = {
        "moments": jax.jit(f),
        "evaluate": jax.jit(jax.jacfwd(f)),
        "gradient": jax.jit(jax.grad(lambda x, d: jnp.sum(f(x, d) ** 2))),
    }
    out = {"n_agents": n, "n_firms": firms, "fp_solver": solver}
    for name, program in programs.items():
        out[name] = _timed(lambda p=program: jax.block_until_ready(p(theta, draws)), repeats)

    econ = economy(base, workforce(base, draws, settings), draws.u_K, settings, jnp.asarray(1.0, settings.dtype))
    _, x, _ = education.solve_education(base, econ, settings)
    one_pass = jax.jit(lambda z, e: education.market_map(base, e, education.choice(base, e, z, settings), settings))
    assembly = jax.jit(lambda z, e: feedback.feedback_jacobian(base, e, z, settings))
    out["market_pass"] = _timed(lambda: jax.block_until_ready(one_pass(x, econ)), repeats)
    out["feedback_assembly"] = _timed(lambda: jax.block_until_ready(assembly(x, econ)), repeats)
    m = jaxmodel.moments(base, draws, settings)
    out["fp_iterations"] = [int(m.before["fp_iterations"]), int(m.after["fp_iterations"])]
    run = {k: out[k]["median_s"] for k in ("moments", "evaluate", "gradient", "market_pass", "feedback_assembly")}
    out["evaluate_over_moments"] = run["evaluate"] / run["moments"]
    out["gradient_over_moments"] = run["gradient"] / run["moments"]
    out["assembly_over_pass"] = run["feedback_assembly"] / run["market_pass"]
    print(f"N={n:_} F={firms} {solver}: moments {run['moments']:.3f} s, evaluate {run['evaluate']:.3f} s "
          f"(x{out['evaluate_over_moments']:.2f}), gradient {run['gradient']:.3f} s (x{out['gradient_over_moments']:.2f}); "
          f"D {run['feedback_assembly'] * 1e3:.1f} ms = {out['assembly_over_pass']:.1f} passes; "
          f"compile {out['moments']['first_call_s']:.1f} / {out['evaluate']['first_call_s']:.1f} / "
          f"{out['gradient']['first_call_s']:.1f} s", file=sys.stderr)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--firms-per", type=int, default=200, help="agents per firm (default 200: F = 500 at N = 1e5)")
    parser.add_argument("--solvers", default="anderson,newton")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "derivatives.json")
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jaxmodel
    from jaxmodel.settings import DENSE_LIMIT

    rows = []
    for n in args.sizes:
        for solver in args.solvers.split(","):
            firms = n // args.firms_per
            size = jaxmodel.Settings(n_agents=n, n_firms=firms).n_aggregates
            if solver == "newton" and size > DENSE_LIMIT:
                print(f"N={n:_}: newton skipped (3 O + F = {size} > {DENSE_LIMIT})", file=sys.stderr)
                continue
            rows.append(measure(n, firms, solver, args.repeats))
    write_json(args.out, {"benchmark": "derivatives", "environment": environment(), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
