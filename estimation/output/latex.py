"""LaTeX tables of a calibration, built only from the files of its results folder.

:func:`write_latex_tables` reads ``estimates.csv``, ``moments.csv``, ``sensitivity.csv`` and
``report.json`` of a ``levelfield calibrate`` results folder and writes three table fragments next
to them, each a ``tabular`` with booktabs rules (``\\toprule``, ``\\midrule``, ``\\bottomrule``) made by
pandas' ``Styler.to_latex``, to be ``\\input{}`` into a document whose preamble has
``\\usepackage{booktabs}`` (nothing else is needed: no siunitx, threeparttable or the like):

- ``estimates.tex``: parameter, estimate, standard error in parentheses, 95% interval; below the
  bottom rule, notes with N (agents, firms, occupations), the draw sets of the simulation noise,
  Hansen's J with its degrees of freedom and p-value, and the weighting (from ``report.json``);
- ``moments.tex``: each moment's target, its SE, the model's value and the error in target SEs;
- ``sensitivity.tex``: the Andrews-Gentzkow-Shapiro sensitivity scaled by the SEs (see
  :func:`scaled_sensitivity`).

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

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from estimation.errors import OutputError
from estimation.output.runfiles import atomic_write_text

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


def as_float(value) -> float:
    """A number from a CSV cell or report.json value: None, '' and 'nan' are NaN; 'inf' is inf."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def significant(x, digits: int = 4) -> tuple[str, int | None]:
    """``x`` to ``digits`` significant digits: (mantissa, exponent), exponent None in fixed notation.

    Fixed notation for 1e-4 <= |x| < 1e5 (``0.0009316``, ``254.8``, ``13320``), scientific otherwise
    (``("9.316", -5)``); zero is ``("0", None)``. NaN and inf are the caller's to handle.
    """
    x = float(x)
    if x == 0:
        return "0", None
    mag = math.floor(math.log10(abs(x)))
    if -4 <= mag < 5:
        decimals = max(0, digits - 1 - mag)
        text = f"{x:.{decimals}f}"
        # Rounding can carry into a new digit (9.9996 -> 10.000): drop the extra decimal.
        if decimals > 0 and len(text.lstrip("-").replace(".", "").lstrip("0")) > digits:
            text = f"{x:.{decimals - 1}f}"
        return text, None
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return mantissa, int(exponent)


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


def read_report(folder: Path) -> dict:
    """``report.json`` of a results folder as a dict (its 'inf'/'nan' strings left as they are)."""
    path = Path(folder) / "report.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: not a readable report.json ({exc})") from exc


def read_estimates(folder: Path) -> pd.DataFrame:
    """``estimates.csv`` with ``se`` numeric (empty cells NaN) and ``se_note``, ``at_bound``, ``interval`` text.

    Works before and after ``se_note`` and ``interval`` exist: a missing one is added, empty.
    """
    frame = pd.read_csv(Path(folder) / "estimates.csv", keep_default_na=False, na_values=[""],
                        dtype={"parameter": str})
    for col in ("estimate", "se", "ci_lower", "ci_upper", "lower_bound", "upper_bound", "start"):
        if col in frame:
            frame[col] = frame[col].map(as_float)
    for col in ("se_note", "at_bound", "interval"):
        # An all-empty column is read as float NaN: cast to object before filling it with text.
        frame[col] = frame[col].astype(object).fillna("").astype(str) if col in frame else ""
    return frame


def read_moments(folder: Path) -> pd.DataFrame:
    """``moments.csv`` (moment, symbol, target, se, model, error, error_in_se, ...)."""
    return pd.read_csv(Path(folder) / "moments.csv", keep_default_na=False, na_values=[""],
                       dtype={"moment": str, "symbol": str, "source": str})


def scaled_sensitivity(folder: Path) -> pd.DataFrame | None:
    """The AGS sensitivity of ``sensitivity.csv`` scaled by the SEs, parameters x moments.

    ``sensitivity.csv`` holds Andrews, Gentzkow & Shapiro's (2017, QJE) Lambda = -(G'WG)^-1 G'W:
    the first-order change in the estimate of parameter p per unit change in target m. Scaled by
    the SEs means the standardised form Lambda_{p,m} * se_m / se_p, with se_m the target's standard
    error (``se`` of ``moments.csv``) and se_p the parameter's (``se`` of ``estimates.csv``): the
    change in the estimate, in its own standard errors, when target m moves by one of its standard
    errors (what ``sensitivity.png`` and the CLI's table show). A parameter without a standard
    error has a row of NaN. None when the folder has no ``sensitivity.csv``.
    """
    path = Path(folder) / "sensitivity.csv"
    if not path.is_file():
        return None
    lam = pd.read_csv(path, index_col=0)
    lam.index = lam.index.astype(str)
    target_se = read_moments(folder).set_index("moment")["se"].astype(float)
    param_se = read_estimates(folder).set_index("parameter")["se"]
    se_p = param_se.reindex(lam.index).to_numpy(dtype=float)
    se_m = target_se.reindex(lam.columns).to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = lam.to_numpy(dtype=float) * se_m[None, :] / se_p[:, None]
    values[~np.isfinite(values)] = np.nan
    return pd.DataFrame(values, index=lam.index, columns=lam.columns)


def _sentence(text: str) -> str:
    """``text`` with a capital first letter and a final full stop."""
    text = str(text).strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


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


def estimate_note(row) -> str:
    """The note on one row of :func:`read_estimates` ('' if none), as a sentence.

    Without a standard error: the reason in ``se_note`` (or "Standard error not available.");
    with one at a binding bound (files written before ``se_note`` existed): that it assumes an
    interior optimum.
    """
    if math.isnan(row.se):
        return _sentence(row.se_note or "standard error not available")
    if row.at_bound:
        bound = row.lower_bound if row.at_bound == "lower" else row.upper_bound
        return (f"At its {row.at_bound} bound ({as_float(bound):g}): the standard error assumes an interior "
                "optimum and is not valid there.")
    return ""


def estimates_latex(folder: Path) -> str:
    """The text of ``estimates.tex`` (see :func:`write_latex_tables`)."""
    folder = Path(folder)
    est = read_estimates(folder)
    report = read_report(folder)
    notes_per_row = [estimate_note(row) for row in est.itertuples()]
    marks, legend = _markers(notes_per_row)
    rows = []
    for row, mark in zip(est.itertuples(), marks):
        # The marker goes on the missing SE, or on the estimate whose SE is not valid.
        se = "---" + mark if math.isnan(row.se) else f"$({_inner(row.se)})$"
        if math.isnan(row.ci_lower) or math.isnan(row.ci_upper):
            interval = "---"
        else:
            interval = f"$[{_inner(row.ci_lower)},\\ {_inner(row.ci_upper)}]$"
        rows.append({"Parameter": row.parameter,
                     "Estimate": tex_number(row.estimate) + ("" if math.isnan(row.se) else mark),
                     "SE": se, "95\\% interval": interval})
    frame = pd.DataFrame(rows, columns=["Parameter", "Estimate", "SE", "95\\% interval"])
    latex = _styled(frame, ["Parameter"], "lrrc", escape_headers=False)

    config = report.get("config", {})
    notes = []
    n_agents = config.get("n_agents")
    if n_agents is not None:
        size = f"$N = {int(n_agents):,}$".replace(",", "{,}") + " simulated agents"
        extra = [f"{config[k]} {label}" for k, label in (("n_firms", "firms"), ("n_occupations", "occupations"))
                 if config.get(k) is not None]
        notes.append(size + (f" ({', '.join(extra)})" if extra else "") + ".")
    if config.get("n_sim") is not None:
        notes.append(f"Simulation noise from {int(config['n_sim'])} independent draw sets.")
    j = report.get("j_test") or {}
    if j:
        p = as_float(j.get("p_value"))
        df = j.get("df")
        if math.isnan(p):
            notes.append(f"Hansen's $J = {_inner(j.get('J'))}$ ({df} d.f.: no over-identifying "
                         "restriction, no test).")
        else:
            notes.append(f"Hansen's $J = {_inner(j.get('J'))}$ ({df} d.f.), "
                         f"$p = {_inner(p, 3)}$.")
    weighting = j.get("weights") or config.get("weights")
    if weighting:
        notes.append("Weighting: " + escape_latex(weighting) + ".")
    kinds = _interval_kinds(est)
    if kinds:
        notes.append("95\\% intervals: " + "; ".join(kinds) + ".")
    return _with_notes(latex, notes + legend)


def _interval_kinds(est: pd.DataFrame) -> list[str]:
    """How each interval was formed (column ``interval`` of newer estimates.csv), grouped: LaTeX."""
    if "interval" not in est:
        return []
    groups: dict[str, list[str]] = {}
    for row in est.itertuples():
        kind = str(row.interval or "").strip()
        if kind and kind.lower() != "nan":
            groups.setdefault(kind, []).append(row.parameter)
    if len(groups) == 1:
        return [escape_latex(next(iter(groups)))]
    return [f"{escape_latex(kind)} ({escape_latex(', '.join(names))})" for kind, names in groups.items()]


def moments_latex(folder: Path) -> str:
    """The text of ``moments.tex`` (see :func:`write_latex_tables`)."""
    mom = read_moments(Path(folder))
    frame = pd.DataFrame({
        "Moment": mom["moment"].astype(str),
        "Target": [tex_number(v) for v in mom["target"]],
        "SE": [tex_number(v) for v in mom["se"]],
        "Model": [tex_number(v) for v in mom["model"]],
        "Error/SE": [tex_number(v, signed=True, fixed=2) for v in mom["error_in_se"]],
    })
    latex = _styled(frame, ["Moment"], "lrrrr", escape_headers=True)
    return _with_notes(latex, ["Error/SE: (model $-$ target) / the target's SE."])


def sensitivity_latex(folder: Path) -> str | None:
    """The text of ``sensitivity.tex`` (see :func:`write_latex_tables`); None without sensitivity.csv."""
    folder = Path(folder)
    scaled = scaled_sensitivity(folder)
    if scaled is None:
        return None
    mom = read_moments(folder)
    symbols = dict(zip(mom["moment"], mom["symbol"])) if "symbol" in mom else {}
    headers = []
    for name in scaled.columns:
        found = re.fullmatch(r"m(\d+)", str(symbols.get(name, "")))
        headers.append(f"$m_{{{found.group(1)}}}$" if found else escape_latex(name))
    est = read_estimates(folder).set_index("parameter")
    notes_per_row = []
    for name in scaled.index:
        if name in est.index and math.isnan(est.loc[name, "se"]):
            notes_per_row.append(_sentence(est.loc[name, "se_note"] or "standard error not available"))
        else:
            notes_per_row.append("")
    marks, legend = _markers(notes_per_row)
    rows = []
    for (name, values), mark in zip(scaled.iterrows(), marks):
        rows.append([escape_latex(name) + mark, *[tex_number(v, signed=True, fixed=2) for v in values]])
    frame = pd.DataFrame(rows, columns=["Parameter", *headers])
    latex = _styled(frame, [], "l" + "r" * len(headers), escape_headers=False)
    notes = [r"Entries: $\Lambda_{pm}\,\mathrm{se}_m/\mathrm{se}_p$, the change in the estimate of parameter $p$, "
             r"in its SEs, when target $m$ moves by one of its SEs (Andrews, Gentzkow \& Shapiro 2017; first order)."]
    if any(h.startswith("$m_") for h in headers):
        notes.append("; ".join(f"{h}: {escape_latex(n)}" for h, n in zip(headers, scaled.columns)
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
    tables = (("estimates.tex", estimates_latex(folder), "estimates.csv and report.json"),
              ("moments.tex", moments_latex(folder), "moments.csv"),
              ("sensitivity.tex", sensitivity_latex(folder), "sensitivity.csv, moments.csv and estimates.csv"))
    for name, text, sources in tables:
        if text is None:
            continue
        path = folder / name
        atomic_write_text(path, f"% {name} by levelfield from {sources}; needs \\usepackage{{booktabs}}\n" + text)
        written.append(path)
    return written
