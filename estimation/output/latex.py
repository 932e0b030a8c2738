"""LaTeX tables of a calibration, rendered from the view of its results folder.

:func:`write_latex_tables` reads the view of a ``levelfield calibrate`` results folder
(``estimation.output.view.read_calibration``: ``estimates.csv``, ``moments.csv``, ``sensitivity.csv``
and ``report.json``) and writes three table fragments next to them, each a ``tabular`` with booktabs
rules (``\\toprule``, ``\\midrule``, ``\\bottomrule``) made by pandas' ``Styler.to_latex``,
to be ``\\input{}`` into a document whose preamble has ``\\usepackage{booktabs}`` (nothing else
is needed: no siunitx, threeparttable or the like):

- ``estimates.tex``: parameter, estimate, standard error in parentheses, 95% interval; below the
  bottom rule, notes with N (agents, firms, occupations), the draw sets of the simulation noise,
  Hansen's J with its degrees of freedom and p-value, and the weighting (from ``report.json``);
- ``moments.tex``: each moment's target, its SE, the model's value and the error in target SEs;
- ``sensitivity.tex``: the Andrews-Gentzkow-Shapiro sensitivity scaled by the SEs
  (``estimation.msm.sensitivity``).

Every number is in math mode (a true minus sign) with four significant digits (errors in SEs and
scaled sensitivities with two decimals); very small or large numbers as ``1.234\\times10^{-5}``.
A standard error that is not available (NaN, as for a parameter at a binding bound or a set that
is not identified) prints as an em dash with a footnote marker, and the note below the table gives
the reason from the column ``se_note`` of ``estimates.csv`` where there is one (files written before
that column existed work too: a finite SE at a binding bound gets a marker on the estimate and a
note that it assumes an interior optimum). Where ``estimates.csv`` says how each interval was formed
(column ``interval``), a note says so. Names are escaped (``sigma_nu`` becomes ``sigma\\_nu``).
Every file is written atomically.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from estimation.errors import OutputError
from estimation.output.numbers import as_float, significant
from estimation.output.runfiles import atomic_write_text
from estimation.output.view import Calibration, read_calibration

#: The files a calibration's results folder must hold for its LaTeX tables.
CALIBRATION_FILES = ("estimates.csv", "moments.csv", "report.json")

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    # Characters pdflatex's default UTF-8 input does not know.
    "\u2014": "---", "\u2013": "--", "\u2212": "-", "\u00d7": r"$\times$", "\u2264": r"$\leq$",
    "\u2265": r"$\geq$", "\u00b1": r"$\pm$", "\u2248": r"$\approx$",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIALS))


def escape_latex(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (``_`` to ``\\_``, ``%`` to ``\\%``, ...)."""
    return _LATEX_PATTERN.sub(lambda m: _LATEX_SPECIALS[m.group(0)], str(text))


def tex_number(x, digits: int = 4, signed: bool = False, fixed: int | None = None) -> str:
    """One number for a LaTeX table, in math mode: ``$-0.2200$``, ``$9.316\\times10^{-4}$``.

    ``fixed`` gives that many decimals instead of significant digits; ``signed`` adds ``+`` to
    positive numbers. NaN is an em dash (``---``), inf ``$\\infty$``.
    """
    x = as_float(x)
    if math.isnan(x):
        return "---"
    if math.isinf(x):
        return r"$\infty$" if x > 0 else r"$-\infty$"
    if fixed is not None:
        if round(x, fixed) == 0:
            return f"${0:.{fixed}f}$"
        return f"${'+' if signed and x > 0 else ''}{x:.{fixed}f}$"
    plus = "+" if signed and x > 0 else ""
    mantissa, exponent = significant(x, digits)
    if exponent is None:
        return f"${plus}{mantissa}$"
    return f"${plus}{mantissa}\\times10^{{{exponent}}}$"


def _inner(x, digits: int = 4) -> str:
    """:func:`tex_number` without its ``$`` delimiters (for use inside a formula)."""
    return tex_number(x, digits).strip("$")


def _markers(notes: list[str]) -> tuple[list[str], list[str]]:
    """Footnote markers a, b, ... for the distinct non-empty notes: (marker per row, legend)."""
    order: list[str] = []
    for note in notes:
        if note and note not in order:
            order.append(note)
    # In a cell the marker takes no width (\rlap), so the numbers of a column stay aligned.
    marks = [rf"\rlap{{\textsuperscript{{{chr(97 + order.index(n))}}}}}" if n else "" for n in notes]
    legend = [rf"\textsuperscript{{{chr(97 + i)}}}{escape_latex(n)}" for i, n in enumerate(order)]
    return marks, legend


def _with_notes(latex: str, notes: list[str]) -> str:
    """The Styler table with its notes (already LaTeX) below it, wrapped at the table's width.

    The tabular is measured in a save box and set in a ``\\parbox`` of its own width, the notes
    below it (what threeparttable's tablenotes do, with nothing beyond the LaTeX kernel).
    """
    if not notes:
        return latex
    body = "".join(f"{note}\\par\n" for note in notes)
    return ("\\ifdefined\\levelfieldtablebox\\else\\newsavebox{\\levelfieldtablebox}\\fi\n"
            "\\sbox{\\levelfieldtablebox}{%\n" + latex.rstrip("\n") + "}%\n"
            "\\noindent\\parbox{\\wd\\levelfieldtablebox}{\\usebox{\\levelfieldtablebox}\\par\\smallskip\n"
            "\\footnotesize\\raggedright\n" + body + "}\n")


def _styled(frame: pd.DataFrame, text_columns: list[str], column_format: str, escape_headers: bool = True):
    """Styler of ``frame`` (cells already strings) with the text columns LaTeX-escaped."""
    styler = frame.style.hide(axis="index")
    if text_columns:
        styler = styler.format(escape="latex", subset=text_columns)
    if escape_headers:
        styler = styler.format_index(escape="latex", axis=1)
    return styler.to_latex(hrules=True, column_format=column_format)


def _estimate_rows(view: Calibration) -> tuple[pd.DataFrame, list[str]]:
    """The body of estimates.tex (cells as LaTeX) and the legend of its footnote markers."""
    marks, legend = _markers([e.note for e in view.estimates])
    rows = []
    for e, mark in zip(view.estimates, marks):
        # The marker goes on the missing SE, or on the estimate whose SE is not valid.
        se = "---" + mark if math.isnan(e.se) else f"$({_inner(e.se)})$"
        if math.isnan(e.ci_lower) or math.isnan(e.ci_upper):
            interval = "---"
        else:
            interval = f"$[{_inner(e.ci_lower)},\\ {_inner(e.ci_upper)}]$"
        rows.append({"Parameter": e.parameter, "Estimate": tex_number(e.estimate) + ("" if math.isnan(e.se) else mark),
                     "SE": se, "95\\% interval": interval})
    return pd.DataFrame(rows, columns=["Parameter", "Estimate", "SE", "95\\% interval"]), legend


#: The forms of J (``inference.j_test``) in LaTeX.
_J_FORMS = {"g' Sigma^-1 g": "g'\\Sigma^{-1}g", "g' S^+ g": "g'S^{+}g"}


def _run_notes(view: Calibration) -> list[str]:
    """The notes of estimates.tex on the run: N, the draw sets, Hansen's J, the weighting, the intervals."""
    config, j, notes = view.config, view.j_test, []
    n_agents = config.get("n_agents")
    if n_agents is not None:
        size = f"$N = {int(n_agents):,}$".replace(",", "{,}") + " simulated agents"
        extra = [f"{config[k]} {label}" for k, label in (("n_firms", "firms"), ("n_occupations", "occupations"))
                 if config.get(k) is not None]
        notes.append(size + (f" ({', '.join(extra)})" if extra else "") + ".")
    if config.get("n_sim") is not None:
        notes.append(f"Simulation noise from {int(config['n_sim'])} independent draw sets.")
    if j is not None:
        if math.isnan(j.p_value):
            notes.append(f"Hansen's $J = {_inner(j.J)}$ ({j.df} d.f.: no over-identifying "
                         "restriction, no test).")
        else:
            notes.append(f"Hansen's $J = {_inner(j.J)}$ ({j.df} d.f.), $p = {_inner(j.p_value, 3)}$.")
    weighting = (j.weights if j is not None else "") or config.get("weights")
    if weighting:
        form = "" if j is None or not j.form else (
            f"; $J = {_J_FORMS[j.form]}$" if j.form in _J_FORMS else f"; J: {escape_latex(j.form)}")
        notes.append("Weighting: " + escape_latex(weighting) + form + ".")
    u = view.regime_uncertainty
    if u is not None:
        drawn = ("" if math.isnan(u.probability_concentrating) else
                 f"${_inner(u.probability_concentrating, 2)}$ from {u.draws} draws of $\\theta \\sim N(\\hat\\theta, V)$ "
                 f"in the search box (Monte Carlo SE ${_inner(u.monte_carlo_se, 2)}$), ")
        notes.append(f"$\\Delta$Gini $= {_inner(u.delta_gini)}$ (delta-method SE ${_inner(u.se)}$); probability of "
                     f"the concentrating regime {drawn}${_inner(u.probability_normal, 2)}$ to first order.")
    kinds = _interval_kinds(view)
    if kinds:
        notes.append("95\\% intervals: " + "; ".join(kinds) + ".")
    return notes


def estimates_latex(view: Calibration) -> str:
    """The text of ``estimates.tex`` (see :func:`write_latex_tables`)."""
    frame, legend = _estimate_rows(view)
    latex = _styled(frame, ["Parameter"], "lrrc", escape_headers=False)
    return _with_notes(latex, _run_notes(view) + legend)


def _interval_kinds(view: Calibration) -> list[str]:
    """How each interval was formed (column ``interval`` of newer estimates.csv), grouped: LaTeX."""
    groups: dict[str, list[str]] = {}
    for e in view.estimates:
        kind = e.interval.strip()
        if kind and kind.lower() != "nan":
            groups.setdefault(kind, []).append(e.parameter)
    if len(groups) == 1:
        return [escape_latex(next(iter(groups)))]
    return [f"{escape_latex(kind)} ({escape_latex(', '.join(names))})" for kind, names in groups.items()]


def moments_latex(view: Calibration) -> str:
    """The text of ``moments.tex`` (see :func:`write_latex_tables`)."""
    mom = view.moments
    frame = pd.DataFrame({
        "Moment": [m.moment + ("" if m.targeted else " (not targeted)") for m in mom],
        "Target": [tex_number(m.target) for m in mom],
        "SE": [tex_number(m.se) for m in mom],
        "Model": [tex_number(m.model) for m in mom],
        "Error/SE": [tex_number(m.error_in_se, signed=True, fixed=2) for m in mom],
    })
    latex = _styled(frame, ["Moment"], "lrrrr", escape_headers=True)
    return _with_notes(latex, ["Error/SE: (model $-$ target) / the target's SE."])


def sensitivity_latex(view: Calibration) -> str | None:
    """The text of ``sensitivity.tex`` (see :func:`write_latex_tables`); None without sensitivity.csv."""
    sens = view.sensitivity
    if sens is None:
        return None
    symbols = view.symbols
    headers = []
    for name in sens.moments:
        found = re.fullmatch(r"m(\d+)", str(symbols.get(name, "")))
        headers.append(f"$m_{{{found.group(1)}}}$" if found else escape_latex(name))
    reasons = [(view.estimate(name).se_reason if view.estimate(name) else "") for name in sens.parameters]
    marks, legend = _markers(reasons)
    rows = [[escape_latex(name) + mark, *[tex_number(v, signed=True, fixed=2) for v in values]]
            for name, values, mark in zip(sens.parameters, sens.scaled, marks)]
    frame = pd.DataFrame(rows, columns=["Parameter", *headers])
    latex = _styled(frame, [], "l" + "r" * len(headers), escape_headers=False)
    notes = [r"Entries: $\Lambda_{pm}\,\mathrm{se}_m/\mathrm{se}_p$, the change in the estimate of parameter $p$, "
             r"in its SEs, when target $m$ moves by one of its SEs (Andrews, Gentzkow \& Shapiro 2017; first order)."]
    if any(h.startswith("$m_") for h in headers):
        notes.append("; ".join(f"{h}: {escape_latex(n)}" for h, n in zip(headers, sens.moments)
                               if h.startswith("$m_")) + ".")
    return _with_notes(latex, notes + legend)


def write_latex_tables(folder: Path) -> list[Path]:
    """Write ``estimates.tex``, ``moments.tex`` and ``sensitivity.tex`` into a calibration's folder.

    Reads only the folder's files (``estimates.csv``, ``moments.csv``, ``report.json`` and, where
    present, ``sensitivity.csv``). Each output is a ``tabular`` fragment with booktabs rules, one
    body row per parameter (estimates, sensitivity) or target (moments), notes below the bottom
    rule; ``\\input{}`` it in a document with ``\\usepackage{booktabs}``. ``sensitivity.tex`` is
    skipped when the folder has no ``sensitivity.csv``. Returns the paths written, in that order.

    Raises:
        OutputError: the folder is not a calibration's results folder (names the missing files).
    """
    folder = Path(folder)
    missing = [name for name in CALIBRATION_FILES if not (folder / name).is_file()]
    if missing:
        raise OutputError(f"{folder}: not a calibration's results folder (missing {', '.join(missing)}; "
                          f"LaTeX tables need {', '.join(CALIBRATION_FILES)} and sensitivity.csv)")
    written = []
    view = read_calibration(folder)
    tables = (("estimates.tex", estimates_latex(view), "estimates.csv and report.json"),
              ("moments.tex", moments_latex(view), "moments.csv"),
              ("sensitivity.tex", sensitivity_latex(view), "sensitivity.csv, moments.csv and estimates.csv"))
    for name, text, sources in tables:
        if text is None:
            continue
        path = folder / name
        atomic_write_text(path, f"% {name} by levelfield from {sources}; needs \\usepackage{{booktabs}}\n" + text)
        written.append(path)
    return written
