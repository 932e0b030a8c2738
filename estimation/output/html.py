"""report.html: the self-contained page of a results folder, rendered from its view with jinja2 templates.

:func:`build_report` reads a results folder of ``levelfield calibrate``, ``levelfield regimes`` or
``levelfield oews`` once (``estimation.output.view.read_folder``; which kind, it tells from the
files) and writes ``report.html`` into it: one file with inline CSS, every PNG of the folder embedded
as a base64 ``data:`` URI, no JavaScript and no reference to anything outside the file, so it opens
offline, can be mailed, and can be rebuilt at any time from the CSV, JSON and PNG files alone
(``levelfield report DIR``). The page is ``templates/<kind>.html.j2`` (extending ``page.html.j2``,
one block per section of ``estimation.output.sections``), autoescaped; its tables come ready from
``calibration_page``, ``regimes_page`` and ``oews_page``, each ``<table>`` with the id ``T_<name>``
listed in that module's docstring.
"""

from __future__ import annotations

import base64
import functools
from pathlib import Path

import jinja2

from estimation.output import calibration_page, html_tables, oews_page, regimes_page, sections
from estimation.output.runfiles import atomic_write_text
from estimation.output.view import KIND_FILES, ResultsFolder, folder_kind, read_folder

__all__ = ["KIND_FILES", "build_report", "folder_kind", "render", "report_html"]

_TITLES = {"calibrate": "Calibration (method of simulated moments)",
           "regimes": "The two regimes: boundary Delta Gini = 0",
           "oews": "Occupation data: wage changes and AI exposure"}

#: Per kind: the module that prepares its page, and the PNGs its sections show.
_PAGES = {"calibrate": (calibration_page, lambda names: calibration_page.FIGURES),
          "regimes": (regimes_page, lambda names: regimes_page.FIGURES),
          "oews": (oews_page, oews_page.binned_figures)}


@functools.cache
def environment() -> jinja2.Environment:
    """The templates of ``estimation/output/templates``, autoescaped, with the number formats as filters."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("estimation.output", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(fmt=html_tables.fmt, fmt_int=html_tables.fmt_int)
    return env


def render(folder: ResultsFolder) -> str:
    """The text of ``report.html`` of a folder read by ``read_folder``."""
    page, shown = _PAGES[folder.kind]
    context = page.page_context(folder.view, tuple(folder.figures))
    used = [name for name in shown(list(folder.figures)) if name in folder.figures]
    other = [name for name in folder.figures if name not in used]
    if other:
        context["sections"] = [*context["sections"], sections.OTHER_FIGURES]
    data = {name: base64.b64encode(png).decode("ascii") for name, png in folder.figures.items()}
    return environment().get_template(f"{folder.kind}.html.j2").render(
        kind=folder.kind, title=_TITLES[folder.kind], name=folder.name, figure_data=data, other_figures=other,
        **context)


def report_html(folder: Path) -> str:
    """The text of ``report.html`` for ``folder`` (see :func:`build_report`)."""
    return render(read_folder(folder))


def build_report(folder: Path) -> Path:
    """Write ``folder/report.html``: the run's tables and figures in one self-contained file.

    The kind of folder (calibrate, regimes, oews) is told from its files (``view.folder_kind``):

    - calibrate: summary, estimates, fit of the targets (with ``fit.png``), the J test,
      identification, the sensitivity scaled by the SEs (with ``sensitivity.png``), the Delta Gini
      decomposition with its flip checks, the convergence of every start and the fixed point, and
      the configuration and package versions (not ``timing.json``: the report of a calibration is
      a function of the files a repeated run reproduces byte for byte, so it reproduces too);
    - regimes: the boundary table of each AI structure and both maps (``regime_map.png``,
      ``technology_map.png``, with their grids);
    - oews: the regression table (coefficient and HC1 SE by measure and outcome), the coverage of
      each exposure measure and the binned scatters (``binned_*.png``).

    Any other PNG in the folder is added at the end, so every figure is in the report. Only the
    folder's files are read; the page has inline CSS, its images as base64 data URIs, no
    JavaScript and no external reference. Written atomically; returns its path.

    Raises:
        OutputError: the folder is missing or is not a results folder of one of the three kinds.
    """
    folder = Path(folder)
    text = report_html(folder)
    path = folder / "report.html"
    atomic_write_text(path, text)
    return path
