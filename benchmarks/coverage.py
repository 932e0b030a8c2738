"""Coverage of the calibration's 95% intervals in a Monte Carlo of recovery runs (issue 14).

A two-parameter problem at small N: xi (near its lower bound 0) and alpha are free, the other
parameters at the baseline. The "truth" theta0 gives model moments m(theta0) on fixed draws; each
replication draws targets m(theta0) + e with e ~ N(0, Sigma), Sigma = diag(se^2) with the shipped
targets' SEs scaled by ``--se-scale``. Every replication is re-estimated from theta0 in one batch
of starts (the optimiser's batch takes targets per start), and gets the calibration's interval:
the sandwich covariance V = (G'WG)^-1 G'W Sigma W G (G'WG)^-1 with W = Sigma^-1 at its estimate, and
``inference.bounded_intervals`` (delta method on the unconstrained scale; one-sided at a bound).
With no simulation noise in the targets' model side (the same draws), V is the estimator's
asymptotic covariance, so coverage should be close to 95% for each parameter.

    python benchmarks/coverage.py                      # 200 replications, N = 2,000
    python benchmarks/coverage.py --reps 400 --out benchmarks/results/coverage_400.json
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, environment, write_json  # noqa: E402


def run(reps: int = 200, n_agents: int = 2000, seed: int = 0, se_scale: float = 0.5,
        truth: dict | None = None) -> dict:
    """The Monte Carlo; returns coverage per parameter with its binomial standard error."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxmodel
    from estimation import inference
    from estimation.msm import optimiser
    from estimation.msm.calibrate import reestimate
    from estimation.msm.parameters import free_parameters
    from estimation.msm.targets import load_targets

    truth = truth or {"xi": 0.03, "alpha": 0.6}
    names = tuple(truth)
    free = free_parameters(names)
    settings = jaxmodel.Settings(n_agents=n_agents, n_firms=20)
    draws = jaxmodel.make_draws(jax.random.key(seed), settings)
    se = load_targets().se * se_scale
    sigma = np.diag(se**2)
    weights = np.linalg.inv(sigma)
    theta0 = np.array([truth[n] for n in names])
    base = jaxmodel.baseline()
    problem = optimiser.Problem(settings=settings, base=base, free=free.arrays(), draws=draws,
                                targets=jnp.zeros(6), weights=jnp.asarray(weights),
                                assigned=jaxmodel.assign(base, draws, settings))
    m0 = optimiser.evaluate(theta0, jaxmodel.outcomes.cold(settings), problem).moments
    rng = np.random.default_rng([seed, 20261126])
    targets = m0 + rng.standard_normal((reps, 6)) * se
    start = time.perf_counter()
    tol = optimiser.Tolerances(gtol=1e-9, ftol=1e-12, max_iter=50)
    estimates, _ = reestimate(np.tile(theta0, (reps, 1)), targets, free, problem, tol)
    seconds = time.perf_counter() - start
    covered = np.zeros((reps, len(names)), bool)
    at_bound = np.zeros((reps, len(names)), bool)
    for r in range(reps):
        jac = optimiser.evaluate(estimates[r], jaxmodel.outcomes.cold(settings), problem).jacobian
        cov = inference.cov_robust(jac, weights, sigma)
        binding = free.binding(estimates[r])
        ci = inference.bounded_intervals(estimates[r], cov, free.lower, free.upper, binding)
        covered[r] = (ci["lower"] <= theta0) & (theta0 <= ci["upper"])
        at_bound[r] = [b is not None for b in binding]
    rate = covered.mean(0)
    return {
        "benchmark": "coverage", "reps": reps, "n_agents": n_agents, "seed": seed, "se_scale": se_scale,
        "truth": truth, "bounds": dict(zip(names, zip(free.lower, free.upper))),
        "coverage": dict(zip(names, map(float, rate))),
        "binomial_se": dict(zip(names, (math.sqrt(0.95 * 0.05 / reps),) * len(names))),
        "share_at_a_bound": dict(zip(names, map(float, at_bound.mean(0)))),
        "reestimation_seconds": seconds,
        "note": ("95% intervals of the calibration (delta method on the unconstrained scale, one-sided at a "
                 "bound) in recovery runs; targets = m(theta0) + N(0, Sigma) on the estimation's own draws"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--se-scale", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=RESULTS / "coverage.json")
    args = parser.parse_args()
    import jaxmodel  # noqa: F401 - float64

    payload = {**run(args.reps, args.agents, args.seed, args.se_scale), "environment": environment()}
    print(payload["coverage"], file=sys.stderr)
    write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
