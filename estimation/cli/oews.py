"""``levelfield oews``: occupation-level regressions on real BLS OEWS data and AI-exposure measures."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from estimation.cli.options import add_results_options, default_out
from estimation.errors import ConfigError


def register(commands) -> None:
    parser = commands.add_parser(
        "oews",
        help="occupation-level regressions on real BLS OEWS data and AI-exposure measures",
        description=(
            "Read BLS OEWS national files as BLS publishes them (xlsx, csv or the zip), harmonise "
            "occupations across years (hybrid SOC codes of 2019-2020 grouped explicitly), join AI-exposure "
            "measures through BLS crosswalks, and regress changes in log median and mean wages, "
            "within-occupation log(p90/p10) and employment shares on exposure (employment-weighted, HC1 SEs)."
        ),
    )
    parser.add_argument("--data", type=Path, required=True, metavar="DIR",
                        help="folder with the OEWS national files, the exposure files and the BLS crosswalks")
    parser.add_argument("--measure", action="append", metavar="NAME", help="exposure measure (repeatable; default all)")
    parser.add_argument("--from-year", type=int, default=2019, metavar="YEAR", help="first year (default 2019)")
    parser.add_argument("--to-year", type=int, default=2023, metavar="YEAR", help="second year (default 2023)")
    parser.add_argument("--fe", action="store_true", help="also with major-group fixed effects")
    parser.add_argument("--no-model", action="store_true",
                        help="skip the demonstration on occupations simulated from the model")
    add_results_options(parser, "oews")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from estimation.empirics import exposure, occupations, oews
    from estimation.output import command_files, tables
    from estimation.output.runfiles import RunFolder

    if not args.data.is_dir():
        raise ConfigError(f"--data {args.data}: not a folder (point it at your BLS and exposure downloads)")
    measures = args.measure or list(exposure.MEASURES)
    unknown = [m for m in measures if m not in exposure.MEASURES]
    if unknown:
        raise ConfigError(f"--measure {', '.join(unknown)}: unknown; known: {', '.join(exposure.MEASURES)}")
    if args.from_year >= args.to_year:
        raise ConfigError(f"--from-year {args.from_year} must be before --to-year {args.to_year}")
    years = (args.from_year, args.to_year)
    files = oews.find_oews_files(args.data)
    for year in years:
        if year not in files:
            found = ", ".join(map(str, sorted(files))) or "none"
            raise ConfigError(f"no OEWS national file for {year} under {args.data} (found years: {found}); "
                              "BLS names it national_M<year>_dl.xlsx or oesm<yy>nat.zip")
    out = default_out(args, "oews")
    folder = RunFolder(out)
    folder.check(resume=False, force=args.force)
    with tables.status("Reading OEWS files and exposure measures"):
        # Every input is read (and refused if malformed) before the results folder is made.
        first, second = oews.read_oews(files[args.from_year]), oews.read_oews(files[args.to_year])
        panel, grouping = oews.harmonise(first, second)
        values = exposure.load_measures(args.data, measures)
    folder.prepare({"command": "oews"}, resume=False, force=args.force)
    with tables.status("Occupation regressions"):
        study = occupations.study(files, first, second, panel, grouping, values, years, args.fe)
    if not args.no_model:
        import jax

        import jaxmodel

        with tables.status("The same regressions on occupations simulated from the model"):
            demo = occupations.demonstration(
                jaxmodel.baseline(), jaxmodel.Settings(n_agents=100_000, n_firms=500, n_occupations=20),
                jax.random.key(0))
        study = dataclasses.replace(study, demonstration=demo)
    command_files.write_oews(folder, study, years)
    tables.oews_tables(study, measures, years)
    tables.console.print(f"Results in {Path(out).absolute()}.")
    return 0
