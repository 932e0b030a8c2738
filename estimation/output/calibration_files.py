"""The files of a calibration's results folder (every one written atomically).

- ``estimates.csv``: parameter, estimate, se, ci_lower, ci_upper, bounds, at_bound, start.
- ``moments.csv``: target, its se, the model's value, the error in target SEs, simulation sd, source,
  and ``targeted`` (False for a moment the estimation gave weight 0: ``--moments``, or no row in the
  targets file; its target and se are empty where the file gives none).
- ``jacobian.csv``: G (moments x free parameters); ``weights.csv``: W; ``moments_cov.csv``:
  Omega + Omega_sim; ``cov.csv``: covariance of the estimates; ``sensitivity.csv``: Lambda
  (parameters x moments); ``delta_gini.csv``: the Delta Gini decomposition by target;
  ``omega_sim_first_step.csv`` (two-step runs): Omega_sim at the first-step estimate, from which
  the second step's weights are W2 = inv(diag(se^2) + Omega_sim1).
- ``report.json``: everything, machine-readable (inf and nan as strings): the configuration,
  seed, input files with their SHA-256 and package versions (``--replay`` repeats the run).
- ``timing.json``: wall time and date (the one file that differs when a run is repeated).
- ``fit.png`` (targets with SE bars and the model) and ``sensitivity.png`` (heatmap of Lambda in
  units of parameter SE per target SE).
- ``estimates.tex``, ``moments.tex``, ``sensitivity.tex`` (booktabs tables, ``estimation.output.latex``)
  and ``report.html`` (one self-contained page, ``estimation.output.html``), built from the files.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from estimation.output.figures import fit_figure, sensitivity_figure
from estimation.output.html import build_report
from estimation.output.latex import write_latex_tables
from estimation.output.runfiles import atomic_write_bytes, atomic_write_json, to_jsonable, write_csv
from estimation.output.view import calibration_from_report
from jaxmodel import MOMENT_NAMES


def write_results(result, folder: Path) -> None:
    """Write every results file of ``result`` into ``folder``."""
    folder = Path(folder)
    names = list(result.free.names)
    write_csv(pd.DataFrame(result.estimates_table()), folder / "estimates.csv", index=False)
    write_csv(pd.DataFrame(result.moments_table()), folder / "moments.csv", index=False)
    write_csv(pd.DataFrame(result.jac, index=MOMENT_NAMES, columns=names).rename_axis("moment"), folder / "jacobian.csv", True)
    write_csv(pd.DataFrame(result.weights, index=MOMENT_NAMES, columns=MOMENT_NAMES).rename_axis("moment"),
              folder / "weights.csv", True)
    write_csv(pd.DataFrame(result.moments_cov, index=MOMENT_NAMES, columns=MOMENT_NAMES).rename_axis("moment"),
              folder / "moments_cov.csv", True)
    write_csv(pd.DataFrame(result.cov, index=names, columns=names).rename_axis("parameter"), folder / "cov.csv", True)
    write_csv(pd.DataFrame(result.sensitivity, index=names, columns=MOMENT_NAMES).rename_axis("parameter"),
              folder / "sensitivity.csv", True)
    if result.stage2 is not None:  # W2 = inv(diag(se^2) + this): the second step's weights from the folder
        write_csv(pd.DataFrame(result.stage2.omega_sim_first_step, index=MOMENT_NAMES, columns=MOMENT_NAMES)
                  .rename_axis("moment"), folder / "omega_sim_first_step.csv", True)
    if result.decomposition is not None:
        write_csv(pd.DataFrame(result.decomposition.targets), folder / "delta_gini.csv", index=False)
    report = to_jsonable(result.to_report())
    # The figures draw the view of the run (the one its files give back).
    view = calibration_from_report(report)
    atomic_write_bytes(folder / "fit.png", fit_figure(view))
    atomic_write_bytes(folder / "sensitivity.png", sensitivity_figure(view))
    atomic_write_json(folder / "report.json", report)
    # Built from the files above only (as `levelfield report DIR` rebuilds them).
    write_latex_tables(folder)
    build_report(folder)
    # Wall time and date apart from the results, so that every other file is bit-identical when
    # the same run is repeated.
    atomic_write_json(folder / "timing.json", result.timing_record())


