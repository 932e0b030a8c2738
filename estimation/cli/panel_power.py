"""``levelfield panel-power``: power of within-task panel tests of H1-H4."""

from __future__ import annotations

import argparse
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
        "panel-power",
        help="power of within-task panel tests of H1-H4 and the panel size each needs",
        description=(
            "Simulate the within-occupation, within-task panel that could test the model (workers x tasks "
            "x periods with AI use; applicants; firms), with effects from the model, and compute the power of "
            "one-sided 5% tests of H1-H4 by panel size, the size needed for 80% power, and the rejection "
            "rate with no effect."
        ),
    )
    parser.add_argument("--reps", type=positive_int, default=200, metavar="R", help="replications per size (default 200)")
    parser.add_argument("--sizes", type=positive_int, nargs="+", metavar="N", help="panel sizes (default 10 .. 10240)")
    add_from_option(parser)
    add_results_options(parser, "panel-power")
    add_model_options(parser, agents=20_000, firms=100)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from estimation.empirics import panel
    from estimation.output import command_files, tables
    from estimation.output.runfiles import RunFolder

    if args.reps < 20:
        raise ConfigError(f"--reps {args.reps} must be at least 20 (power is a share of replications)")
    sizes = sorted(set(args.sizes)) if args.sizes else [int(x) for x in np.unique(np.geomspace(10, 10240, 11).round())]
    params, settings, seed, origin = base_and_settings(args)
    out = default_out(args, "panel-power")
    folder = RunFolder(out)
    folder.prepare({"command": "panel-power"}, resume=False, force=args.force)
    with tables.status("Effects from the model, then simulated panels"):
        study = panel.power_study(params, settings, jax.random.key(seed), sizes, args.reps, seed)
    command_files.write_panel_power(folder, study, origin, args.reps)
    tables.power_table(study, args.reps)
    tables.console.print(f"Effects from the model ({origin}): college premium change {study.design.premium_change:+.3f}, "
                         f"firm slope {study.design.firm_slope:+.4f}; results in {Path(out).absolute()}.")
    return 0
