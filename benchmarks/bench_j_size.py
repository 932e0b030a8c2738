"""The size of Hansen's J test at the true parameters: a Monte Carlo of many small estimations (issue 22).

Each replication is an MSM estimation at small N whose targets are the model's moments at the true
parameters on a draw set of their own (the "data": their noise is that of an independent simulation),
estimated on another draw set of their own (the simulation), with weights W and the moments'
covariance Sigma = Omega_data + Omega_sim = 2 Omega, Omega the covariance of the moments over draw
sets at the truth (from ``--pilot`` draw sets, used by every replication). Under the model J is
chi-squared with m - k degrees of freedom, so it rejects at 5% in 5% of the replications.

Three weightings: ``diagonal`` (W = diag(1/se^2), se^2 = diag(Sigma)) and ``identity`` (W = I), both
with the generalised J = g' S^+ g, and ``optimal`` (W = Sigma^-1: J = g' Sigma^-1 g); and, for
contrast, g' Sigma^-1 g at the diagonal- and identity-weights estimates, the statistic levelfield
reported before issue 22.

Replications run in batches that share one optimiser program: ``--sets`` estimation draw sets, each
estimating ``--per-set`` data sets at once (``estimation.msm.calibrate.reestimate``, one batch whose
rows have their own targets), then G at every estimate in one batched program.

    python benchmarks/bench_j_size.py                      # 800 replications per weighting, N = 1000: benchmarks/results/j_size.json
    python benchmarks/bench_j_size.py --sets 4 --per-set 5 --out /tmp/j.json
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, environment, write_json  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

TRUTH = {"alpha": 0.45, "sigma": 1.3, "xi": 0.3}


def j_size(n_agents: int = 1000, n_firms: int = 20, sets: int = 80, per_set: int = 10, pilot: int = 400,
           seed: int = 0, weightings: tuple[str, ...] = ("diagonal", "identity", "optimal"), max_iter: int = 30) -> dict:
    """The Monte Carlo: J, its df and p-value for each replication and weighting, and the rejection rates.

    Keys: the pilot's and the data's draw sets split off ``fold_in(key(seed), 0)`` (the first ``pilot``
    are the pilot's); estimation draws of set e ``fold_in(key(seed), 2 + e)``.
    """
    import jaxmodel
    from estimation import identification, inference
    from estimation.msm import Tolerances, simulated_moments
    from estimation.msm.calibrate import reestimate
    from estimation.msm.optimiser import Problem
    from estimation.msm.parameters import free_parameters

    settings = jaxmodel.Settings(n_agents=n_agents, n_firms=n_firms)
    free = free_parameters(tuple(TRUTH))
    truth = np.array(list(TRUTH.values()))
    base = jaxmodel.baseline().replace(**TRUTH)
    root = jax.random.key(seed)
    started = time.perf_counter()
    # The pilot's and the data's draw sets in one program (one compilation): the first ``pilot`` sets
    # give Omega, the others are the replications' data.
    sims = np.asarray(simulated_moments(base, jax.random.fold_in(root, 0), settings, pilot + sets * per_set))
    omega = np.cov(sims[:pilot], rowvar=False)
    sigma = 2.0 * omega
    weights = {"diagonal": np.diag(1.0 / np.diag(sigma)), "identity": np.eye(sigma.shape[0]),
               "optimal": np.linalg.inv(sigma)}
    data = sims[pilot:]  # (R, 6)
    tol = Tolerances(gtol=1e-8, ftol=1e-10, max_iter=max_iter)
    k, m = free.size, data.shape[1]
    rows = {w: [] for w in weightings}
    for e in range(sets):
        draws = jaxmodel.make_draws(jax.random.fold_in(root, 2 + e), settings)
        assigned = jaxmodel.assign(base, draws, settings)
        targets = data[e * per_set:(e + 1) * per_set]
        model = identification.Model(settings=settings, base=base, free=free, draws=draws, assigned=assigned)
        for w in weightings:
            problem = Problem(settings=settings, base=base, free=free.arrays(), draws=draws,
                              targets=jax.numpy.asarray(targets[0]), weights=jax.numpy.asarray(weights[w]),
                              assigned=assigned)
            thetas, moments = reestimate(np.tile(truth, (per_set, 1)), targets, free, problem, tol)
            G = identification.jacobians(model, thetas)["jacobian"]
            for r in range(per_set):
                g = moments[r] - targets[r]
                if w == "optimal":
                    j = inference.j_test(g, sigma, k)
                    extra = {}
                else:
                    j = inference.j_test(g, sigma, k, jacobian=G[r], weights=weights[w])
                    hansen = inference.j_test(g, sigma, k)
                    extra = {"J_hansen_form": hansen["J"], "p_hansen_form": hansen["p_value"]}
                rows[w].append({"set": e, **j, **extra})
        print(f"set {e + 1}/{sets}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    df = m - k
    summary = {}
    for w, reps in rows.items():
        p = np.array([r["p_value"] for r in reps], dtype=float)
        j = np.array([r["J"] for r in reps], dtype=float)
        n = len(reps)
        out = {"replications": n, "rejection_rate_5pct": float(np.mean(p < 0.05)),
               "rejection_rate_10pct": float(np.mean(p < 0.10)),
               "binomial_se_at_5pct": math.sqrt(0.05 * 0.95 / n), "mean_J": float(np.mean(j)),
               "mean_J_expected": df, "mean_J_se": math.sqrt(2 * df / n), "form": reps[0]["form"]}
        if w != "optimal":
            ph = np.array([r["p_hansen_form"] for r in reps], dtype=float)
            out["hansen_form_at_these_estimates"] = {
                "rejection_rate_5pct": float(np.mean(ph < 0.05)),
                "mean_J": float(np.mean([r["J_hansen_form"] for r in reps]))}
        summary[w] = out
    return {"n_agents": n_agents, "n_firms": n_firms, "free": list(TRUTH), "truth": TRUTH, "df": df,
            "sets": sets, "per_set": per_set, "pilot_sets": pilot, "seed": seed, "seconds": seconds,
            "summary": summary, "replications": rows,
            "design": ("targets = the moments at the truth on an independent draw set; estimation on another "
                       "independent draw set; Sigma = 2 Omega, Omega over the pilot draw sets at the truth")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--firms", type=int, default=20)
    parser.add_argument("--sets", type=int, default=80, help="estimation draw sets (default 80)")
    parser.add_argument("--per-set", type=int, default=10, help="data sets estimated per estimation set (default 10)")
    parser.add_argument("--pilot", type=int, default=400, help="draw sets for Omega at the truth (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "j_size.json"))
    parser.add_argument("--keep-replications", action="store_true",
                        help="write every replication's J and p-value too (about 0.5 MB at the defaults)")
    args = parser.parse_args(argv)
    from estimation.cli import compilation_cache

    compilation_cache()  # as the command line: a second run loads the compiled programs
    result = j_size(args.agents, args.firms, args.sets, args.per_set, args.pilot, args.seed)
    result["environment"] = environment()
    write_json(args.out, result if args.keep_replications else {k: v for k, v in result.items() if k != "replications"})
    for w, s in result["summary"].items():
        line = (f"{w:9s} {s['form']}: rejection at 5% {s['rejection_rate_5pct']:.3f} (binomial se "
                f"{s['binomial_se_at_5pct']:.3f}), mean J {s['mean_J']:.2f} (df {result['df']}, se {s['mean_J_se']:.2f})")
        if "hansen_form_at_these_estimates" in s:
            h = s["hansen_form_at_these_estimates"]
            line += f"; g' Sigma^-1 g here: rejection {h['rejection_rate_5pct']:.3f}, mean {h['mean_J']:.2f}"
        print(line)
    print(f"{sum(s['replications'] for s in result['summary'].values())} estimations in {result['seconds']:.0f} s "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
