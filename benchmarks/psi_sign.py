"""What calibrations say about the sign of d Delta Gini / d Gini(K) (issue 19).

For each calibration results folder given, at its estimate (its draws, N, F and seed): Delta Gini,
d Delta Gini / d Gini(K) and d Delta Gini / d psi (reverse mode through the fixed point), and the
asset intensity psi* at which d Delta Gini / d Gini(K) = 0 with the other parameters held at the
estimate (bisection on the first sign change of a grid over psi in [0, 3]).
Lower asset concentration lowers AI's effect on inequality where the derivative is positive, i.e.
where psi > psi*. The folder's estimate of psi, its interval, the criterion and J are copied beside.

    levelfield calibrate --out runs/default
    levelfield calibrate --free alpha,sigma_nu,sigma,eta1,xi,psi --out runs/psi-free
    levelfield calibrate --set psi=1.2 --out runs/psi-1.2
    python benchmarks/psi_sign.py runs/default runs/psi-free runs/psi-1.2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, environment, write_json  # noqa: E402


def analyse(folder: Path) -> dict:
    import jax
    import numpy as np
    import pandas as pd

    import jaxmodel
    from jaxmodel import outcomes

    report = json.loads((folder / "report.json").read_text())
    config = report["config"]
    estimates = pd.read_csv(folder / "estimates.csv").set_index("parameter")
    values = jaxmodel.baseline().to_dict()
    values.update({k: float(v) for k, v in (config.get("fixed") or {}).items()})
    values.update(estimates["estimate"].to_dict())
    settings = jaxmodel.Settings(n_agents=config["n_agents"], n_firms=config["n_firms"],
                                 n_occupations=config["n_occupations"], n_tasks=config["n_tasks"],
                                 spec=config["spec"])
    draws = jaxmodel.make_draws(jax.random.key(config["seed"]), settings)

    def delta_gini(gini_K, psi):
        params = jaxmodel.Params(**{**values, "gini_K": gini_K, "psi": psi})
        return outcomes.moments_jit(params, draws, settings).gini_change

    slope = jax.jit(jax.grad(delta_gini, argnums=0))
    gk, psi = values["gini_K"], values["psi"]
    grid = np.linspace(0.0, 3.0, 16)
    slopes = np.array([float(slope(gk, p)) for p in grid])
    crossings = np.nonzero(np.sign(slopes[:-1]) != np.sign(slopes[1:]))[0]
    threshold = None
    if crossings.size:
        lo, hi = grid[crossings[0]], grid[crossings[0] + 1]
        for _ in range(24):  # bracket width 0.2 / 2^24: psi* to 1e-8
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if np.sign(float(slope(gk, mid))) == np.sign(slopes[crossings[0]]) else (lo, mid)
        threshold = float(0.5 * (lo + hi))
    grad = jax.grad(delta_gini, argnums=(0, 1))(gk, psi)
    row = {"folder": folder.name, "free": config["free"], "fixed": config.get("fixed") or {},
           "criterion": report["criterion"], "j_test": report["j_test"], "regime": report["regime"],
           "delta_gini": float(delta_gini(gk, psi)), "psi": psi,
           "d_delta_gini_d_gini_K": float(grad[0]), "d_delta_gini_d_psi": float(grad[1]),
           "psi_threshold": threshold, "slope_grid": {"psi": grid.tolist(), "slope": slopes.tolist()}}
    if "psi" in estimates.index:
        r = estimates.loc["psi"]
        row["psi_estimate"] = {"se": float(r["se"]), "ci": [float(r["ci_lower"]), float(r["ci_upper"])]}
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="calibration results folders")
    parser.add_argument("--out", type=Path, default=RESULTS / "psi_sign.json")
    args = parser.parse_args()
    rows = []
    for folder in args.folders:
        rows.append(analyse(folder))
        print({k: v for k, v in rows[-1].items() if k != "slope_grid"}, file=sys.stderr)
    write_json(args.out, {"calibrations": rows, "environment": environment()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
