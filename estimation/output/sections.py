"""The sections of a report, in order: one list shared by report.html and the terminal report.

A section is an id (the anchor of the page and the name of its template block) and a title.
:func:`calibration_sections` says which sections a calibration's view has; the page renders the
block of each, and ``estimation.output.tables.calibration_report`` prints the table of each it has
one for (the summary and the configuration are the page's only).
"""

from __future__ import annotations

from typing import NamedTuple

from estimation.output.view import Calibration


class Section(NamedTuple):
    id: str  # the page's anchor and template block
    title: str


SUMMARY = Section("summary", "Summary")
ESTIMATES = Section("estimates", "Estimates")
FIT = Section("fit", "Fit of the targets")
J_TEST = Section("j_test", "J test")
IDENTIFICATION = Section("identification", "Identification")
SENSITIVITY = Section("sensitivity", "Sensitivity")
DELTA_GINI = Section("delta_gini", "Delta Gini decomposition")
CONVERGENCE = Section("convergence", "Convergence")
CONFIGURATION = Section("configuration", "Run configuration")

#: Every section of a calibration's report, in the order of the page and of the terminal report.
CALIBRATION = (SUMMARY, ESTIMATES, FIT, J_TEST, IDENTIFICATION, SENSITIVITY, DELTA_GINI, CONVERGENCE, CONFIGURATION)

#: The sections of a regimes folder's page and of an OEWS folder's page.
REGIMES = (Section("summary", "Summary"), Section("boundary", "Boundary Delta Gini = 0"), Section("maps", "Maps"))
OEWS = (Section("summary", "Summary"), Section("regressions", "Regressions on AI exposure"),
        Section("coverage", "Coverage of the exposure measures"), Section("binned", "Binned scatters"),
        Section("model", "The same regressions on occupations simulated from the model"))

#: The last section of every page, for the PNGs no other section shows.
OTHER_FIGURES = Section("figures", "Other figures")


def calibration_sections(view: Calibration, figures=()) -> list[Section]:
    """The sections ``view`` has (``figures``: the names of the folder's PNGs)."""
    present = {
        J_TEST: view.j_test is not None,
        IDENTIFICATION: view.identification is not None,
        SENSITIVITY: view.sensitivity is not None or "sensitivity.png" in figures,
        DELTA_GINI: view.decomposition is not None or bool(view.flip_checks),
        CONVERGENCE: bool(view.convergence.starts),
    }
    return [s for s in CALIBRATION if present.get(s, True)]


def oews_sections(has_demonstration: bool) -> list[Section]:
    """The sections of an OEWS folder's page (the model's section only with model_demonstration.csv)."""
    return [s for s in OEWS if s.id != "model" or has_demonstration]
