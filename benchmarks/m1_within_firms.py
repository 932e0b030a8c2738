"""m1 within firms against m1 over all workers as proprietary access becomes more unequal (issue 19).

At the baseline and at psi, eta1 pairs that make proprietary access chi1_j = eta1 K~_j^psi more
unequal across firms, the CV change within firms (m1, MODEL.md section 5) and the CV change over
all workers (the diagnostic ``cv_change_all_workers``), with Delta Gini beside them; then the two
"partial_multiplicative" checks of MODEL.md section 6 (mu = 1.5 reverses homogenization, mu = 0.3
does not). Writes benchmarks/results/m1_within_firms.json.

    python benchmarks/m1_within_firms.py                 # N = 5x10^4, F = 250, seed 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, environment, write_json  # noqa: E402

POINTS = [(0.5, 0.5), (1.2, 0.25), (1.2, 0.5), (1.3, 0.5)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=50_000)
    parser.add_argument("--firms", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "m1_within_firms.json")
    args = parser.parse_args()

    import jax

    import jaxmodel

    settings = jaxmodel.Settings(n_agents=args.agents, n_firms=args.firms)
    draws = jaxmodel.make_draws(jax.random.key(args.seed), settings)
    base = jaxmodel.baseline()
    rows = []
    for psi, eta1 in POINTS:
        m = jaxmodel.moments(base.replace(psi=psi, eta1=eta1), draws, settings)
        rows.append({"psi": psi, "eta1": eta1, "m1_within_firms": float(m.cv_change),
                     "m1_all_workers": float(m.cv_change_all_workers), "delta_gini": float(m.gini_change)})
        print(rows[-1], file=sys.stderr)
    spec = settings.replace(spec="partial_multiplicative")
    amplification = {f"mu={mu}": float(jaxmodel.moments(base.replace(mu=mu), draws, spec).cv_change)
                     for mu in (1.5, 0.3)}
    write_json(args.out, {"settings": {"n_agents": args.agents, "n_firms": args.firms, "seed": args.seed},
                          "points": rows, "partial_multiplicative_m1": amplification,
                          "environment": environment()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
