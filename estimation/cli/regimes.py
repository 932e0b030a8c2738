"""``levelfield regimes``: the boundary Delta Gini = 0 of the two regimes and maps of Delta Gini."""

from __future__ import annotations

import argparse
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
