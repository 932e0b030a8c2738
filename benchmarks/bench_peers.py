"""levelfield against what an economist would otherwise use, side by side in one process.

1. ``moments``: jaxmodel (jit) against the NumPy port, N = 1e4 .. 1e6: the port as MODEL.md first
   specified it (damped fixed point, d = 0.5) and the port given jaxmodel's Anderson solver.
2. The moment Jacobian (6 moments x 5 free parameters): ``jax.jacfwd`` against central finite
   differences on the NumPy port; time, and error against a reference (jacfwd at a 1e-13 fixed-point
   tolerance, itself checked against finite differences in the tests).
3. A full calibration: ``levelfield calibrate`` (one start, Levenberg-Marquardt with exact
   Jacobians) in new processes, with an empty and then a warm compilation cache, against estimagic's
   ``estimate_msm`` on the NumPy port, as a user would write it (scipy L-BFGS-B, damped fixed point)
   and given the same algorithms (scipy's least-squares trust region, Anderson fixed point); same
   targets, weights, bounds, starting point and relative criterion tolerance; wall time to the
   estimate with standard errors, and the criterion each reaches.

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import environment, write_json  # noqa: E402

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
    """jaxmodel.moments (Anderson fixed point) against the NumPy port as an economist writes it from
    MODEL.md (damped iteration, d = 0.5) and against the port given the same Anderson solver."""
    import jax

    import jaxmodel
    from benchmarks import numpy_port
    from jaxmodel import outcomes

    rows = []
    for n in sizes:
        settings = jaxmodel.Settings(n_agents=n, n_firms=max(10, n // 1000))
        params, draws = jaxmodel.baseline(), jaxmodel.make_draws(0, settings)
        start = time.perf_counter()
        compiled = outcomes.moments_jit.lower(params, draws, settings).compile()
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, draws))
        cold_s = time.perf_counter() - start
        jax_t = _timings(lambda: jax.block_until_ready(compiled(params, draws)), repeats)
        row = {"n_agents": n, "jax_compile_s": compile_s, "jax_first_call_s": cold_s, "jax_s": jax_t}
        ours = np.asarray(compiled(params, draws).vector())
        for label, solver in (("numpy_damped", "damped"), ("numpy_anderson", "anderson")):
            args = numpy_port.from_jax(params, draws, settings.replace(fp_solver=solver))
            numpy_port.moments(*args)
            np_t = _timings(lambda args=args: numpy_port.moments(*args), max(1, repeats // 2) if n >= 1_000_000 else repeats)
            row[f"{label}_s"] = np_t
            row[f"speedup_vs_{label}"] = np_t["median"] / jax_t["median"]
            row[f"max_abs_difference_{label}"] = float(np.max(np.abs(ours - numpy_port.vector(*args))))
        rows.append(row)
        print(f"  moments N={n:_}: jax {jax_t['median']:.3f} s (compile {compile_s:.1f} s), numpy damped "
              f"{row['numpy_damped_s']['median']:.3f} s (x{row['speedup_vs_numpy_damped']:.1f}), numpy anderson "
              f"{row['numpy_anderson_s']['median']:.3f} s (x{row['speedup_vs_numpy_anderson']:.1f})", file=sys.stderr)
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
        return outcomes.moments_jit(jaxmodel.Params(**{**base.to_dict(), **dict(zip(FREE, x))}), d, s).vector()

    # The draws are an argument, not a closed-over constant: XLA would constant-fold the sorts of
    # constant arrays at compile time (15 s per sort at N = 1e5).
    jac = jax.jit(jax.jacfwd(f), static_argnums=2)
    start = time.perf_counter()
    jax.block_until_ready(jac(x0, draws, settings))
    compile_s = time.perf_counter() - start
    jax_t = _timings(lambda: jax.block_until_ready(jac(x0, draws, settings)), repeats)
    reference = np.asarray(jac(x0, draws, settings.replace(fp_tol=1e-13)))
    auto = np.asarray(jac(x0, draws, settings))

    def central_differences(np_settings, params, np_draws, step=1e-5):
        cols = []
        for j, k in enumerate(FREE):
            h = step * max(1.0, abs(params[k]))
            up = numpy_port.vector({**params, k: params[k] + h}, np_draws, np_settings)
            down = numpy_port.vector({**params, k: params[k] - h}, np_draws, np_settings)
            cols.append((up - down) / (2 * h))
        return np.stack(cols, axis=1)

    scale = np.abs(reference).max()
    out = {
        "n_agents": n, "jax_compile_s": compile_s, "jacfwd_s": jax_t, "reference_max_abs": float(scale),
        "jacfwd_max_abs_error": float(np.abs(auto - reference).max()),
    }
    # Central differences on the NumPy port as MODEL.md first specified it (damped fixed point) and
    # given the same Anderson solver as jaxmodel.
    for label, solver in (("damped", "damped"), ("anderson", "anderson")):
        params, np_draws, np_settings = numpy_port.from_jax(base, draws, settings.replace(fp_solver=solver))
        fd_t = _timings(lambda: central_differences(np_settings, params, np_draws), max(1, repeats // 2))
        fd = central_differences(np_settings, params, np_draws)
        out[f"finite_differences_{label}_s"] = fd_t
        out[f"speedup_vs_finite_differences_{label}"] = fd_t["median"] / jax_t["median"]
        out[f"finite_differences_{label}_max_abs_error"] = float(np.abs(fd - reference).max())
    out["speedup_median"] = out["speedup_vs_finite_differences_anderson"]
    out["finite_differences_s"] = out["finite_differences_anderson_s"]
    out["finite_differences_max_abs_error"] = out["finite_differences_anderson_max_abs_error"]
    print(f"  jacobian N={n:_}: jacfwd {jax_t['median']:.3f} s, FD (damped port) "
          f"{out['finite_differences_damped_s']['median']:.3f} s, x{out['speedup_vs_finite_differences_damped']:.1f}, "
          f"FD (Anderson port) {out['finite_differences_anderson_s']['median']:.3f} s, x{out['speedup_median']:.1f}; "
          f"errors {out['jacfwd_max_abs_error']:.1e} vs {out['finite_differences_max_abs_error']:.1e}", file=sys.stderr)
    return out


def _levelfield_process(n: int, firms: int, ftol: float, cache: Path, out: Path) -> dict:
    """``levelfield calibrate`` (one start, no flip checks) in a new process: wall time and timing.json."""
    env = {**os.environ, "LEVELFIELD_CACHE_DIR": str(cache)}
    command = [sys.executable, "-m", "estimation.cli", "calibrate", "--agents", str(n), "--firms", str(firms),
               "--starts", "1", "--flip-checks", "0", "--sim-sets", "20", "--quiet", "--out", str(out)]
    if ftol != 1e-6:
        raise ValueError("the CLI's ftol is 1e-6")
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    report = json.loads((out / "report.json").read_text())
    timing = json.loads((out / "timing.json").read_text())
    best = report["convergence"]["starts"][report["convergence"]["best_start"]]
    return {"process_wall_s": wall, "criterion": report["criterion"], "evaluations": best["iterations"],
            "estimates": {r["parameter"]: r["estimate"] for r in report["estimates"]},
            "start": best["start"], "timing": timing}


def bench_calibration(n, ftol) -> dict:
    """levelfield in new processes (empty cache, then warm) against estimagic's estimate_msm on the
    NumPy port, (a) as a user would write it (L-BFGS-B, MODEL.md's damped fixed point) and (b) given
    levelfield's algorithms (a least-squares trust-region optimiser, Anderson fixed point)."""
    import warnings

    import pandas as pd

    import jaxmodel
    from benchmarks import numpy_port
    from estimation.msm.targets import load_targets

    warnings.filterwarnings("ignore")
    import estimagic as em
    import optimagic as om

    firms = max(10, n // 200)
    settings = jaxmodel.Settings(n_agents=n, n_firms=firms)
    targets = load_targets()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        first = _levelfield_process(n, firms, ftol, tmp / "cache", tmp / "first")
        second = _levelfield_process(n, firms, ftol, tmp / "cache", tmp / "second")
    assert second["criterion"] == first["criterion"]

    base, draws = jaxmodel.baseline(), jaxmodel.make_draws(0, settings)
    start_values = np.array([first["start"][k] for k in FREE])
    bounds = om.Bounds(lower=np.array([0.0, 0.0, 1e-6, 0.0, 0.0]), upper=np.array([np.inf, np.inf, np.inf, np.inf, 1.0]))
    peers = {}
    for label, solver, algorithm in (("as_written", "damped", "scipy_lbfgsb"), ("same_algorithm", "anderson", "scipy_ls_trf")):
        params, np_draws, np_settings = numpy_port.from_jax(base, draws, settings.replace(fp_solver=solver))
        evaluations = {"count": 0}

        def simulate(theta, params=params, np_draws=np_draws, np_settings=np_settings, evaluations=evaluations):
            evaluations["count"] += 1
            return pd.Series(numpy_port.vector({**params, **dict(zip(FREE, theta))}, np_draws, np_settings),
                             index=list(targets.names))

        start = time.perf_counter()
        res = em.estimate_msm(
            simulate, pd.Series(targets.values, index=list(targets.names)), np.diag(targets.se**2),
            start_values, optimize_options={"algorithm": algorithm, "algo_options": {"convergence.ftol_rel": ftol}},
            bounds=bounds, weights="diagonal",
        )
        res.se()  # the standard errors, with estimagic's numerical Jacobian
        seconds = time.perf_counter() - start
        theta_e = np.asarray(res.params)
        g = simulate(theta_e).to_numpy() - targets.values
        crit = float(g @ np.diag(1 / targets.se**2) @ g)
        peers[label] = {"algorithm": algorithm, "fixed_point": solver, "seconds": seconds, "criterion": crit,
                        "model_evaluations": evaluations["count"], "estimates": dict(zip(FREE, map(float, theta_e))),
                        "speedup_first_run": seconds / first["process_wall_s"],
                        "speedup_second_run": seconds / second["process_wall_s"],
                        "criterion_relative_difference": abs(crit - first["criterion"]) / first["criterion"]}
        print(f"  calibration N={n:_}: estimagic {label} ({algorithm}, {solver}) {seconds:.1f} s, criterion {crit:.6f}, "
              f"{evaluations['count']} evaluations", file=sys.stderr)
    print(f"  calibration N={n:_}: levelfield first run {first['process_wall_s']:.1f} s, second run "
          f"{second['process_wall_s']:.1f} s, criterion {first['criterion']:.6f}", file=sys.stderr)
    return {
        "n_agents": n, "n_firms": firms, "ftol_rel": ftol, "levelfield_first_run": first,
        "levelfield_second_run": second, "estimagic": peers,
        "note": "levelfield runs as a user runs it: a new process of `levelfield calibrate --starts 1 --flip-checks 0` "
                "(estimates, Jacobian, 20 draw sets for Omega_sim, inference, files), first with an empty "
                "compilation cache and then with the cache the first run left. estimagic runs in this process "
                "(imports already paid) and includes its numerical Jacobian for the standard errors.",
    }



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
    import jaxmodel  # noqa: F401 - sets float64

    payload = {"benchmark": "peers", "environment": environment("estimagic")}
    if 1 in args.only:
        payload["moments"] = bench_moments(args.sizes, args.repeats)
    if 2 in args.only:
        payload["jacobian"] = bench_jacobian(args.jacobian_n, args.repeats)
    if 3 in args.only:
        payload["calibration"] = bench_calibration(args.calibration_n, args.ftol)
    write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
