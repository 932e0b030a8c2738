"""``levelfield scenario``: counterfactual policy scenarios, every moment and the regime."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from estimation.cli.options import add_from_option, add_model_options, base_and_settings
from estimation.errors import ConfigError


def register(commands) -> None:
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
