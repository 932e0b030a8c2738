"""``levelfield simulate``: solve the economy before and after AI and print the six moments."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from estimation import memory
from estimation.cli.options import add_model_options, model_inputs, parse_assignments


def register(commands) -> None:
    parser = commands.add_parser(
        "simulate",
        help="solve the economy before and after AI and print the six moments",
        description=(
            "Solve the economy before AI (A = 0) and after (A = A1) on the same draws and print the "
            "six moments of MODEL.md section 5 (m1 cv_change .. m6 gini_change), diagnostics of both "
            "states and the regime (concentrating when Delta Gini > 0)."
        ),
    )
    add_model_options(parser)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of tables; a value that is not finite is written as "
                             "null (valid JSON, RFC 8259) and named in the field \"non_finite\" with what it "
                             "was (nan, inf or -inf)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import jax

    import jaxmodel
    from estimation.output import tables
    from estimation.output.runfiles import with_nulls

    params, settings = model_inputs(args)
    memory.check_fits("simulate", settings.n_agents, settings.n_firms, settings.precision)
    start = time.perf_counter()
    with tables.status(f"Simulating N={settings.n_agents:_} agents, F={settings.n_firms} firms", quiet=args.json):
        draws = jaxmodel.make_draws(args.seed, settings)
        result = jax.block_until_ready(jaxmodel.moments(params, draws, settings))
    elapsed = time.perf_counter() - start
    values = result.to_dict()
    warnings = model_warnings(values, settings)
    for warning in warnings:
        print(f"levelfield simulate: warning: {warning}", file=sys.stderr)
    if args.json:
        payload = {
            **values,
            "warnings": warnings,
            "seed": args.seed,
            "settings": {"n_agents": settings.n_agents, "n_firms": settings.n_firms,
                         "n_tasks": settings.n_tasks, "n_occupations": settings.n_occupations,
                         "spec": settings.spec, "precision": settings.precision},
            "params": {k: float(v) for k, v in params.to_dict().items()},
        }
        payload, flags = with_nulls(payload)
        payload["non_finite"] = flags
        print(json.dumps(payload, indent=2, allow_nan=False))
    else:
        tables.moments_report(values, settings, args.seed, changed=parse_assignments(args.assignments),
                              seconds=elapsed)
    return 0


def model_warnings(values: dict, settings) -> list[str]:
    """What is wrong with one solution of the model: moments that are not finite, and a fixed
    point that stopped at ``fp_max_iter`` above its tolerance (with its residual)."""
    from jaxmodel import MOMENT_NAMES

    out = []
    bad = [n for n in MOMENT_NAMES if not math.isfinite(values[n])]
    if bad:
        out.append(f"moment(s) {', '.join(bad)} are not finite at these parameters (extreme values inside the "
                   "domain); move the parameters towards the baseline")
    for state in ("before", "after"):
        residual, iterations = values[f"fp_residual_{state}"], int(values[f"fp_iterations_{state}"])
        if not math.isfinite(residual):
            out.append(f"the education fixed point {state} AI is not finite (its residual is {residual})")
        elif residual > settings.tol:
            out.append(f"the education fixed point {state} AI did not converge: residual {residual:.2e} after "
                       f"{iterations} iterations (tolerance {settings.tol:.0e}, fp_max_iter {settings.fp_max_iter}); "
                       "its moments are approximate")
    return out
