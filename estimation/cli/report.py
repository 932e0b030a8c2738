"""``levelfield report DIR``: rebuild report.html (and a calibration's LaTeX tables) from a results folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from estimation.errors import ConfigError


def register(commands) -> None:
    parser = commands.add_parser(
        "report",
        help="rebuild report.html (and a calibration's LaTeX tables) from a results folder",
        description=(
            "Rebuild the self-contained report.html of a results folder of calibrate, regimes or oews from "
            "its CSV, JSON and PNG files alone (figures embedded, opens offline), and for a calibration "
            "estimates.tex, moments.tex and sensitivity.tex (booktabs tables to \\input into a paper)."
        ),
    )
    parser.add_argument("folder", type=Path, metavar="DIR", help="a results folder of calibrate, regimes or oews")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from estimation.output import tables
    from estimation.output.html import build_report, folder_kind
    from estimation.output.latex import write_latex_tables

    if not args.folder.is_dir():
        raise ConfigError(f"{args.folder}: not a folder (a results folder of calibrate, regimes or oews)")
    kind = folder_kind(args.folder)
    written = write_latex_tables(args.folder) if kind == "calibrate" else []
    written.append(build_report(args.folder))
    for path in written:
        tables.console.print(f"wrote {Path(path).absolute()}")
    return 0
