"""``levelfield regimes`` (the boundary Delta Gini = 0 and regime maps) and ``levelfield scenario``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from estimation.cli.options import (
    add_from_option,
    add_model_options,
    add_results_options,
    base_and_settings,
    default_out,
    positive_int,
)
from estimation.errors import ConfigError


def register(commands) -> None:
    parser = commands.add_parser(
        "regimes",
        help="the boundary Delta Gini = 0 and maps of the two regimes",
        description=(
            "Find the boundary Delta Gini = 0 in the plane (xi, Gini(K)) for a commodity-leaning and a "
            "proprietary-leaning AI (safeguarded Newton with the autodiff derivative), its slope by the "
            "implicit function theorem, and maps of Delta Gini over (xi, Gini(K)) and (eta1, xi). "
            "Parameters from a calibration (--from DIR) or the baseline."
        ),
    )
    add_from_option(parser, "a calibration's results folder: its estimates, settings and seed")
    parser.add_argument("--grid", type=positive_int, default=10, metavar="N", help="grid points per axis (default 10)")
    add_results_options(parser, "regimes")
    add_model_options(parser, agents=20_000, firms=100)
    parser.set_defaults(run=run_regimes)

    parser = commands.add_parser(
        "scenario",
        help="counterfactual policy scenarios: every moment and the regime",
        description=(
            "Counterfactuals named by their policy meaning: stronger-rent-sharing (xi doubled), "
            "lower-asset-concentration (Gini(K) - 0.2), commoditised-ai (eta1 moved into eta0), "
            "open-asset-access (psi = 0). Prints the change in every moment and the regime, from the "
            "baseline or a calibration (--from DIR)."
        ),
    )
    parser.add_argument("names", nargs="+", metavar="NAME", help="scenario names, or all")
    add_from_option(parser)
    parser.add_argument("--csv", type=Path, metavar="FILE", help="also write the results as CSV")
    parser.add_argument("--force", action="store_true", help="replace an existing --csv file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    add_model_options(parser, agents=20_000, firms=100)
    parser.set_defaults(run=run_scenario)


def run_regimes(args: argparse.Namespace) -> int:
    import jax

    import jaxmodel
    from estimation import regimes
    from estimation.output import command_files, tables
    from estimation.output.runfiles import RunFolder

    if args.grid < 3:
        raise ConfigError(f"--grid {args.grid} must be at least 3")
    params, settings, seed, origin = base_and_settings(args)
    out = default_out(args, "regimes")
    folder = RunFolder(out)
    folder.prepare({"command": "regimes", "grid": args.grid, "origin": origin}, resume=False, force=args.force)
    draws = jaxmodel.make_draws(jax.random.key(seed), settings)
    start = time.perf_counter()
    with tables.progress_console.status("Boundary Delta Gini = 0") as status:
        result = regimes.study(params, draws, settings, args.grid, progress=status.update)
    command_files.write_regimes(folder, result, params, settings, seed, origin, time.perf_counter() - start)
    tables.boundary_tables(result.boundaries)
    tables.console.print(f"Parameters: {origin}. Results in {Path(out).absolute()}.")
    return 0


def run_scenario(args: argparse.Namespace) -> int:
    import jax

    import jaxmodel
    from estimation import regimes
    from estimation.output import tables
    from estimation.output.runfiles import atomic_write_text

    names = list(regimes.SCENARIOS) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in regimes.SCENARIOS]
    if unknown:
        raise ConfigError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(regimes.SCENARIOS)}, or all")
    params, settings, seed, origin = base_and_settings(args)
    if args.csv is not None and args.csv.exists() and not args.force:
        raise ConfigError(f"--csv {args.csv} already exists; pass --force to replace it")
    draws = jaxmodel.make_draws(jax.random.key(seed), settings)
    with tables.status(f"Solving {len(names)} scenario(s) and the base", quiet=args.json):
        rows = regimes.run_scenarios(params, draws, settings, names)
    if args.csv is not None:
        import pandas as pd

        frame = pd.DataFrame([{k: (str(v) if isinstance(v, dict) else v) for k, v in r.items()} for r in rows])
        atomic_write_text(args.csv, frame.to_csv(index=False))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    tables.scenario_tables(rows)
    tables.console.print(f"Base parameters: {origin}.")
    return 0
