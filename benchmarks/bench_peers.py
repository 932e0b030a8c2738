"""levelfield against what an economist would otherwise use, side by side in one process.

1. ``moments``: jaxmodel (jit) against the NumPy port, N = 1e4 .. 1e6.
2. The moment Jacobian (6 moments x 5 free parameters): ``jax.jacfwd`` against central finite
   differences on the NumPy port; time, and error against a reference (jacfwd at a 1e-13 fixed-point
   tolerance, itself checked against finite differences in the tests).
3. A full calibration: ``estimation.calibrate`` (one start, L-BFGS with exact gradients) against
   estimagic's ``estimate_msm`` on the NumPy port (scipy L-BFGS-B with estimagic's numerical
   derivatives), same targets, weights, bounds and starting point, both stopped at the same
   relative criterion tolerance; wall time to the estimate with standard errors, and the criterion
   each reaches.

Every timing is min/median/max over repeats after a warm-up, compile time apart; results go to
``benchmarks/results/bench_peers.json`` with the device and versions.

    python benchmarks/bench_peers.py                # all three
    python benchmarks/bench_peers.py --only 1 --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
FREE = ("alpha", "sigma_nu", "sigma", "eta1", "xi")


def _timings(fn, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"min": min(times), "median": statistics.median(times), "max": max(times), "repeats": repeats}


def bench_moments(sizes, repeats) -> list[dict]:
    import jax

    import jaxmodel
    from benchmarks import numpy_port
    from jaxmodel import outcomes

    rows = []
    for n in sizes:
        settings = jaxmodel.Settings(n_agents=n, n_firms=max(10, n // 1000))
        params, draws = jaxmodel.baseline(), jaxmodel.make_draws(0, settings)
        start = time.perf_counter()
        compiled = outcomes._moments.lower(params, draws, settings).compile()
        compile_s = time.perf_counter() - start
        jax.block_until_ready(compiled(params, draws))
        jax_t = _timings(lambda: jax.block_until_ready(compiled(params, draws)), repeats)
        args = numpy_port.from_jax(params, draws, settings)
        numpy_port.moments(*args)
        np_t = _timings(lambda: numpy_port.moments(*args), max(1, repeats // 2) if n >= 1_000_000 else repeats)
        diff = float(np.max(np.abs(np.asarray(compiled(params, draws).vector()) - numpy_port.vector(*args))))
        rows.append({"n_agents": n, "jax_compile_s": compile_s, "jax_s": jax_t, "numpy_s": np_t,
                     "speedup_median": np_t["median"] / jax_t["median"], "max_abs_difference": diff})
        print(f"  moments N={n:_}: jax {jax_t['median']:.3f} s, numpy {np_t['median']:.3f} s, "
              f"x{rows[-1]['speedup_median']:.1f}, max |diff| {diff:.1e}", file=sys.stderr)
    return rows


def bench_jacobian(n, repeats) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxmodel
    from benchmarks import numpy_port
    from jaxmodel import outcomes

    settings = jaxmodel.Settings(n_agents=n, n_firms=max(10, n // 1000))
    base, draws = jaxmodel.baseline(), jaxmodel.make_draws(0, settings)
    x0 = jnp.array([getattr(base, k) for k in FREE])

    def f(x, d, s):
        return outcomes._moments(jaxmodel.Params(**{**base.to_dict(), **dict(zip(FREE, x))}), d, s).vector()

    # The draws are an argument, not a closed-over constant: XLA would constant-fold the sorts of
    # constant arrays at compile time (15 s per sort at N = 1e5).
    jac = jax.jit(jax.jacfwd(f), static_argnums=2)
    start = time.perf_counter()
    jax.block_until_ready(jac(x0, draws, settings))
    compile_s = time.perf_counter() - start
    jax_t = _timings(lambda: jax.block_until_ready(jac(x0, draws, settings)), repeats)
    reference = np.asarray(jac(x0, draws, settings.replace(fp_tol=1e-13)))
    auto = np.asarray(jac(x0, draws, settings))

    params, np_draws, np_settings = numpy_port.from_jax(base, draws, settings)

    def central_differences(step=1e-5):
        cols = []
        for j, k in enumerate(FREE):
            h = step * max(1.0, abs(params[k]))
            up = numpy_port.vector({**params, k: params[k] + h}, np_draws, np_settings)
            down = numpy_port.vector({**params, k: params[k] - h}, np_draws, np_settings)
            cols.append((up - down) / (2 * h))
        return np.stack(cols, axis=1)

    fd_t = _timings(central_differences, max(1, repeats // 2))
    fd = central_differences()
    scale = np.abs(reference).max()
    out = {
        "n_agents": n, "jax_compile_s": compile_s, "jacfwd_s": jax_t, "finite_differences_s": fd_t,
        "speedup_median": fd_t["median"] / jax_t["median"],
        "jacfwd_max_abs_error": float(np.abs(auto - reference).max()),
        "finite_differences_max_abs_error": float(np.abs(fd - reference).max()),
        "reference_max_abs": float(scale),
    }
    print(f"  jacobian N={n:_}: jacfwd {jax_t['median']:.3f} s, FD {fd_t['median']:.3f} s, x{out['speedup_median']:.1f}; "
          f"errors {out['jacfwd_max_abs_error']:.1e} vs {out['finite_differences_max_abs_error']:.1e}", file=sys.stderr)
    return out


def bench_calibration(n, ftol) -> dict:
    import warnings

    import pandas as pd

    import jaxmodel
    from benchmarks import numpy_port
    from estimation import calibrate
    from estimation.targets import load_targets

    warnings.filterwarnings("ignore")
    import estimagic as em
    import optimagic as om

    settings = jaxmodel.Settings(n_agents=n, n_firms=max(10, n // 200))
    targets = load_targets()
    start = time.perf_counter()
    ours = calibrate(n_agents=n, n_firms=settings.n_firms, n_starts=1, flip_checks=0, ftol=ftol, n_sim=20)
    ours_s = time.perf_counter() - start
    # The same calibration again in this process: every program is compiled, so this is run time.
    start = time.perf_counter()
    again = calibrate(n_agents=n, n_firms=settings.n_firms, n_starts=1, flip_checks=0, ftol=ftol, n_sim=20)
    ours_compiled_s = time.perf_counter() - start
    assert again.criterion == ours.criterion

    base, draws = jaxmodel.baseline(), jaxmodel.make_draws(0, settings)
    params, np_draws, np_settings = numpy_port.from_jax(base, draws, settings)
    start_values = ours.starts[0].start
    bounds_lo = np.array([0.0, 0.0, 1e-6, 0.0, 0.0])
    bounds_hi = np.array([np.inf, np.inf, np.inf, np.inf, 1.0])
    evaluations = {"count": 0}

    def simulate(theta):
        evaluations["count"] += 1
        return pd.Series(numpy_port.vector({**params, **dict(zip(FREE, theta))}, np_draws, np_settings),
                         index=list(targets.names))

    start = time.perf_counter()
    res = em.estimate_msm(
        simulate, pd.Series(targets.values, index=list(targets.names)), np.diag(targets.se**2),
        np.asarray(start_values, float), optimize_options={"algorithm": "scipy_lbfgsb",
                                                            "algo_options": {"convergence.ftol_rel": ftol}},
        bounds=om.Bounds(lower=bounds_lo, upper=bounds_hi), weights="diagonal",
    )
    theirs_s = time.perf_counter() - start
    theta_e = np.asarray(res.params)
    g = simulate(theta_e).to_numpy() - targets.values
    crit_e = float(g @ np.diag(1 / targets.se**2) @ g)
    out = {
        "n_agents": n, "ftol_rel": ftol,
        "levelfield_s": ours_s, "levelfield_criterion": ours.criterion, "levelfield_iterations": ours.starts[0].iterations,
        "levelfield_estimates": dict(zip(FREE, map(float, ours.estimates))),
        "estimagic_s": theirs_s, "estimagic_criterion": crit_e, "estimagic_model_evaluations": evaluations["count"],
        "estimagic_estimates": dict(zip(FREE, map(float, theta_e))),
        "speedup": theirs_s / ours_s,
        "levelfield_compiled_s": ours_compiled_s, "speedup_compiled": theirs_s / ours_compiled_s,
        "note": "levelfield_s includes compilation (init/step of the optimiser, Jacobian, simulation noise) "
                "and its 20 draw sets for Omega_sim; levelfield_compiled_s is the same calibration again in the same "
                "process (programs compiled); estimagic's includes its numerical Jacobian for the SEs.",
    }
    print(f"  calibration N={n:_}: levelfield {ours_s:.1f} s ({ours_compiled_s:.1f} s compiled; criterion {ours.criterion:.4f}), estimagic "
          f"{theirs_s:.1f} s (criterion {crit_e:.4f}, {evaluations['count']} model evaluations)", file=sys.stderr)
    return out


def environment() -> dict:
    import platform

    import jax
    import jaxlib

    try:
        import estimagic

        estimagic_version = estimagic.__version__
    except ImportError:  # pragma: no cover
        estimagic_version = None
    d = jax.devices()[0]
    return {"device": f"{d.platform}: {d.device_kind}", "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "numpy": np.__version__, "estimagic": estimagic_version, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=int, nargs="+", choices=(1, 2, 3), default=[1, 2, 3])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--jacobian-n", type=int, default=100_000)
    parser.add_argument("--calibration-n", type=int, default=20_000)
    parser.add_argument("--ftol", type=float, default=1e-6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_peers.json")
    args = parser.parse_args()
    import jaxmodel  # noqa: F401  (float64)

    payload = {"benchmark": "peers", "environment": environment()}
    if 1 in args.only:
        payload["moments"] = bench_moments(args.sizes, args.repeats)
    if 2 in args.only:
        payload["jacobian"] = bench_jacobian(args.jacobian_n, args.repeats)
    if 3 in args.only:
        payload["calibration"] = bench_calibration(args.calibration_n, args.ftol)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=args.out.parent, delete=False, suffix=".tmp") as tmp:
        json.dump(payload, tmp, indent=2)
    os.replace(tmp.name, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
