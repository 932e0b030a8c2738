"""A self-contained HTML report of a finished run, built only from the files of its results folder.

:func:`build_report` reads a results folder of ``levelfield calibrate``, ``levelfield regimes`` or
``levelfield oews`` (which one, it tells from the files: :func:`folder_kind`) and writes
``report.html`` into it: one file with inline CSS, every PNG of the folder embedded as a base64
``data:`` URI, no JavaScript and no reference to anything outside the file, so it opens offline,
can be mailed, and can be rebuilt at any time from the CSV, JSON and PNG files alone (``levelfield
report DIR``). Tables are pandas Stylers with readable numbers (four significant digits, errors in
SEs and scaled sensitivities with two decimals, missing values as an em dash); each ``<table>`` has
the id ``T_<name>`` listed in the docstring of its kind's section builder.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from estimation.errors import OutputError
from estimation.output.latex import (
    as_float,
    estimate_note,
    read_estimates,
    read_moments,
    read_report,
    scaled_sensitivity,
    significant,
)
from estimation.output.runfiles import atomic_write_text

#: Files that identify each kind of results folder (all must be present).
KIND_FILES = {
    "calibrate": ("estimates.csv", "moments.csv", "report.json"),
    "regimes": ("boundary.csv", "regimes.json"),
    "oews": ("regressions.csv", "coverage.csv"),
}

_TITLES = {"calibrate": "Calibration (method of simulated moments)",
           "regimes": "The two regimes: boundary Delta Gini = 0",
           "oews": "Occupation data: wage changes and AI exposure"}

_OUTCOMES = {"d_log_median_wage": "Δ log median wage", "d_log_mean_wage": "Δ log mean wage",
             "d_log_p90_p10": "Δ log(p90/p10)", "d_employment_share_pp": "Δ employment share (pp)"}

_DASH = "\u2014"

_CSS = """
:root { --ink: #1c2430; --muted: #5b6673; --rule: #d5dbe2; --head: #eef2f6; --accent: #1f4e79; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.45;
       font-family: "DejaVu Sans", "Segoe UI", Roboto, Helvetica, Arial, sans-serif; font-size: 15px; }
header { background: var(--accent); color: #fff; padding: 18px 32px 14px; }
header h1 { margin: 0 0 4px; font-size: 1.55em; font-weight: 600; }
header p { margin: 0; opacity: 0.9; font-size: 0.92em; }
nav { padding: 8px 32px; background: var(--head); border-bottom: 1px solid var(--rule); font-size: 0.92em; }
nav a { color: var(--accent); margin-right: 1.1em; text-decoration: none; }
main { max-width: 1200px; padding: 8px 32px 48px; }
h2 { font-size: 1.25em; color: var(--accent); border-bottom: 2px solid var(--accent);
     padding-bottom: 3px; margin: 1.6em 0 0.6em; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
p.note, p.lead { max-width: 60em; }
p.note { color: var(--muted); font-size: 0.9em; margin: 0.3em 0 0.9em; }
p.warn { color: #8a4b00; background: #fff4e0; border-left: 4px solid #e09a2b; padding: 6px 10px; }
table.data { border-collapse: collapse; margin: 0.4em 0 0.6em; font-size: 0.9em;
             font-variant-numeric: tabular-nums; }
table.data caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; }
table.data th, table.data td { padding: 4px 10px; border-bottom: 1px solid var(--rule);
                               text-align: right; vertical-align: top; }
table.data thead th { background: var(--head); border-bottom: 2px solid #9aa6b4; white-space: nowrap; }
table.data tbody tr:nth-child(even) td { background-color: #fafbfc; }
table.data td.text, table.data th.text { text-align: left; }
table.data td.nowrap { white-space: nowrap; }
table.data td.small { font-size: 0.85em; color: var(--muted); max-width: 34em; }
div.scroll { overflow-x: auto; max-width: 100%; }
div.figrow { display: flex; flex-wrap: wrap; gap: 16px; }
div.figrow figure { flex: 1 1 520px; min-width: 0; }
figure { margin: 0.6em 0 1.2em; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); }
figcaption { color: var(--muted); font-size: 0.85em; }
details { margin: 0.3em 0 1em; }
summary { color: var(--accent); }
footer { color: var(--muted); font-size: 0.85em; border-top: 1px solid var(--rule); margin-top: 2em;
         padding-top: 8px; }
"""


# --- numbers -------------------------------------------------------------------------------------


def fmt(x, digits: int = 4) -> str:
    """A number for an HTML table: four significant digits (``0.1123``, ``9.316e-05``), NaN as a dash."""
    x = as_float(x)
    if math.isnan(x):
        return _DASH
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    mantissa, exponent = significant(x, digits)
    return mantissa if exponent is None else f"{mantissa}e{exponent:+03d}"


def fmt_fixed(decimals: int, signed: bool = True) -> Callable[[object], str]:
    """A formatter with ``decimals`` decimals (and a + on positive numbers when ``signed``)."""

    def formatter(x) -> str:
        x = as_float(x)
        if math.isnan(x):
            return _DASH
        if round(x, decimals) == 0:
            return f"{0:.{decimals}f}"
        return f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"

    return formatter


def _int(x) -> str:
    x = as_float(x)
    return _DASH if math.isnan(x) else f"{int(round(x)):,}"


def _bound(x) -> str:
    x = as_float(x)
    return _DASH if math.isnan(x) else ("∞" if x == math.inf else ("-∞" if x == -math.inf else f"{x:g}"))


def _p_value(x) -> str:
    x = as_float(x)
    if math.isnan(x):
        return _DASH
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


# --- building blocks -----------------------------------------------------------------------------


def _table(frame: pd.DataFrame, name: str, formats: dict | None = None, caption: str | None = None,
           text: tuple = (), small: tuple = (), nowrap: tuple = (), style: Callable | None = None) -> str:
    """One table as HTML: a pandas Styler with id ``T_<name>``, no index, text columns escaped.

    ``formats`` maps columns to formatters (default :func:`fmt` for numeric columns); ``text`` and
    ``small`` name left-aligned and small-print columns, ``nowrap`` columns whose cells never wrap;
    ``style`` may restyle the Styler.
    """
    frame = frame.reset_index(drop=True)
    formats = dict(formats or {})
    for col in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col])
        if col not in formats and numeric:
            formats[col] = fmt
    text_cols = [c for c in frame.columns if c in text or c in small or (
        c not in formats and not pd.api.types.is_numeric_dtype(frame[c]))]
    styler = frame.style.hide(axis="index").set_uuid(name).set_table_attributes('class="data"')
    styler = styler.format(formats, escape="html", na_rep=_DASH).format_index(escape="html", axis=1)
    if text_cols and len(frame):
        classes = [(("text small" if c in small else "text") if c in text_cols else "")
                   + (" nowrap" if c in nowrap else "") for c in frame.columns]
        styler = styler.set_td_classes(pd.DataFrame([classes] * len(frame), index=frame.index, columns=frame.columns))
    if text_cols:
        styler = styler.set_table_styles(
            [{"selector": f"th.col_heading.col{list(frame.columns).index(c)}", "props": "text-align: left"}
             for c in text_cols], overwrite=False)
    if caption:
        styler = styler.set_caption(_esc(caption))
    if style is not None:
        styler = style(styler)
    return f'<div class="scroll">{styler.to_html(cell_ids=False)}</div>'


def _figure(folder: Path, name: str, caption: str, used: set) -> str:
    """A PNG of the folder as an ``<img>`` with a base64 data URI (a note saying so if it is absent)."""
    path = folder / name
    if not path.is_file():
        return f'<p class="note">{_esc(name)} is not in this folder.</p>'
    used.add(name)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(name)}: {_esc(caption)}</figcaption></figure>")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=["", "nan", "NaN"], **kwargs)


def _gradient(columns, limit: float = 1.0) -> Callable:
    """Blue-white-red background over ``columns``, symmetric at +-``limit``."""

    import matplotlib

    # Missing values (a parameter without an SE) on a light grey, not the colormap's black.
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#f1f3f5")

    def style(styler):
        return styler.background_gradient(cmap=cmap, vmin=-limit, vmax=limit, subset=list(columns))

    return style


# --- the kinds of folder -------------------------------------------------------------------------


def folder_kind(folder: Path) -> str:
    """``"calibrate"``, ``"regimes"`` or ``"oews"``, from the files in ``folder``.

    Raises:
        OutputError: the folder does not exist or holds none of the kinds' files (names them).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OutputError(f"{folder}: not a folder (report needs a results folder of levelfield "
                          "calibrate, regimes or oews)")
    for kind, files in KIND_FILES.items():
        if all((folder / name).is_file() for name in files):
            return kind
    expected = "; ".join(f"{kind}: {', '.join(files)}" for kind, files in KIND_FILES.items())
    raise OutputError(f"{folder}: not a levelfield results folder (expected the files of one kind: {expected})")


def _calibrate_sections(folder: Path, used: set) -> tuple[str, list[tuple[str, str, str]]]:
    """Sections of a calibration: tables T_summary, T_estimates, T_fit, T_j_test, T_singular_values,
    T_weak_directions (when there are any), T_sensitivity, T_sensitivity_raw, T_delta_gini,
    T_delta_gini_parameters, T_flip_checks (when checked), T_convergence, T_start_points,
    T_fixed_point, T_configuration; figures fit.png and sensitivity.png."""
    report = read_report(folder)
    config = report.get("config", {})
    est = read_estimates(folder)
    mom = read_moments(folder)
    sections = []

    dec = (report.get("delta_gini") or {}).get("decomposition") or {}
    j = report.get("j_test") or {}
    ident = report.get("identification") or {}
    summary = pd.DataFrame([
        ("free parameters", ", ".join(report.get("free_parameters", est["parameter"]))),
        ("criterion g'Wg", fmt(report.get("criterion"))),
        ("Delta Gini at the estimate",
         fmt(dec.get("delta_gini")) + (f" ({dec['regime']})" if dec.get("regime") else "")),
        ("Hansen J", f"{fmt(j.get('J'))} ({j.get('df')} d.f.), p-value {_p_value(j.get('p_value'))}" if j else _DASH),
        ("identification", f"rank {ident.get('rank')} of {ident.get('n_params')}, condition number "
                           f"{fmt(ident.get('condition_number'), 3)}" if ident.get("rank") is not None else _DASH),
        ("simulated agents N", f"{_int(config.get('n_agents'))} ({_int(config.get('n_firms'))} firms, "
                               f"{_int(config.get('n_occupations'))} occupations, "
                               f"{_int(config.get('n_tasks'))} tasks)"),
        ("draw sets for the simulation noise", _int(config.get("n_sim"))),
        ("weighting", config.get("weights", _DASH)),
        ("starts", _int(config.get("n_starts"))),
        ("seed", config.get("seed", _DASH)),
        ("targets", config.get("targets") or "shipped (MODEL.md section 7)"),
    ], columns=["item", "value"])
    sections.append(("summary", "Summary", _table(summary, "summary", text=("item", "value"))))

    # Estimates
    notes = []
    rows = []
    for row in est.itertuples():
        note = estimate_note(row)
        rows.append({"parameter": row.parameter, "estimate": row.estimate, "se": row.se,
                     "95% interval": (_DASH if math.isnan(row.ci_lower)
                                      else f"[{fmt(row.ci_lower)}, {fmt(row.ci_upper)}]"),
                     "interval": row.interval, "bounds": f"[{_bound(row.lower_bound)}, {_bound(row.upper_bound)}]",
                     "at bound": row.at_bound, "note": note, "start": row.start})
        if note:
            notes.append(f"{row.parameter}: {note}")
    frame = pd.DataFrame(rows)
    if not frame["interval"].astype(bool).any():
        frame = frame.drop(columns="interval")
    body = _table(frame, "estimates", text=("parameter", "95% interval", "interval", "bounds", "at bound"),
                  small=("note",), nowrap=("95% interval", "bounds"))
    body += ('<p class="note">Sandwich standard errors with the simulation noise of '
             f"{_int(config.get('n_sim'))} draw sets; 95% intervals.</p>")
    if notes:
        body += '<p class="warn">' + "<br>".join(_esc(n) for n in notes) + "</p>"
    sections.append(("estimates", "Estimates", body))

    # Fit
    cols = [c for c in ("symbol", "moment", "target", "se", "model", "error", "error_in_se", "simulation_sd", "source")
            if c in mom]
    fit = mom[cols].rename(columns={"error_in_se": "error / se", "simulation_sd": "simulation sd"})

    def flag(styler):
        return styler.map(lambda v: "color: #b00020; font-weight: 600" if abs(as_float(v)) > 2 else "",
                          subset=["error / se"])

    body = _table(fit, "fit", formats={"error / se": fmt_fixed(2)}, text=("symbol", "moment"), small=("source",),
                  style=flag if "error / se" in fit else None)
    body += '<p class="note">error = model - target; error / se in the target\'s standard errors (red beyond 2).</p>'
    body += _figure(folder, "fit.png", "targets with their SEs and the model at the estimate", used)
    sections.append(("fit", "Fit of the targets", body))

    # J test
    if j:
        jt = pd.DataFrame([{"J": as_float(j.get("J")), "degrees of freedom": _int(j.get("df")),
                            "p-value": _p_value(j.get("p_value")), "weighting": j.get("weights", "")}])
        p = as_float(j.get("p_value"))
        verdict = ("no over-identifying restriction: no test" if math.isnan(p) else
                   ("the over-identifying restrictions are rejected at 5%" if p < 0.05 else
                    "the over-identifying restrictions are not rejected at 5%"))
        body = _table(jt, "j_test", text=("weighting",)) + f'<p class="note">Hansen\'s J: {_esc(verdict)}.</p>'
        sections.append(("j_test", "J test", body))

    # Identification
    if ident:
        body = ""
        if ident.get("reason"):
            body += f'<p class="warn">No inference: {_esc(ident["reason"])}.</p>'
        sv = [as_float(v) for v in ident.get("singular_values") or []]
        if sv:
            top = max(sv) if sv else 1.0
            body += _table(pd.DataFrame({"#": [f"s{i + 1}" for i in range(len(sv))], "singular value of W^1/2 G": sv,
                                         "relative to the largest": [v / top if top else math.nan for v in sv]}),
                           "singular_values", text=("#",))
        state = "identified" if ident.get("identified") else "NOT identified"
        body += (f'<p class="lead">Local identification: rank {ident.get("rank")} of {ident.get("n_params")}, '
                 f'condition number {_esc(fmt(ident.get("condition_number"), 3))}; the free parameters are '
                 f"{state} by these moments.</p>")
        weak = ident.get("weak_directions") or []
        if weak:
            body += _table(pd.DataFrame([{"singular value": as_float(w.get("singular_value")),
                                          "weakly identified combination": w.get("text", "")} for w in weak]),
                           "weak_directions", text=("weakly identified combination",))
        sections.append(("identification", "Identification", body))

    # Sensitivity
    scaled = scaled_sensitivity(folder)
    if scaled is not None:
        symbols = dict(zip(mom["moment"], mom["symbol"])) if "symbol" in mom else {}
        table = scaled.copy()
        table.columns = [symbols.get(c) or c for c in table.columns]
        table.insert(0, "parameter", table.index)
        numeric = [c for c in table.columns if c != "parameter"]
        body = _table(table, "sensitivity", formats={c: fmt_fixed(2) for c in numeric}, text=("parameter",),
                      style=_gradient(numeric))
        if symbols:
            body += '<p class="note">' + "; ".join(f"{_esc(v)}: {_esc(k)}" for k, v in symbols.items()) + ".</p>"
        body += ('<p class="note">Andrews-Gentzkow-Shapiro sensitivity Lambda = -(G\'WG)<sup>-1</sup>G\'W scaled by '
                 "the SEs: Lambda<sub>pm</sub> se<sub>m</sub> / se<sub>p</sub>, the change in the estimate of "
                 "parameter p, in its standard errors, when target m moves by one of its standard errors "
                 "(first order).</p>")
        body += _figure(folder, "sensitivity.png", "sensitivity scaled by the SEs", used)
        raw = pd.read_csv(folder / "sensitivity.csv")
        body += ("<details><summary>Lambda unscaled (sensitivity.csv: parameter units per target unit)</summary>"
                 + _table(raw, "sensitivity_raw", text=(raw.columns[0],)) + "</details>")
        sections.append(("sensitivity", "Sensitivity", body))
    elif (folder / "sensitivity.png").is_file():
        sections.append(("sensitivity", "Sensitivity", _figure(folder, "sensitivity.png", "sensitivity", used)))

    # Delta Gini
    body = ""
    if dec:
        body += (f'<p class="lead">Delta Gini at the estimate: <b>{_esc(fmt(dec.get("delta_gini")))}</b> '
                 f"({_esc(dec.get('regime', ''))}).</p>")
    if (folder / "delta_gini.csv").is_file():
        dg = _read_csv(folder / "delta_gini.csv")
        dg = dg.rename(columns={"d_delta_gini_d_target": "dDeltaGini/dtarget", "effect_of_one_se": "effect of +1 se",
                                "share_of_total_effect": "share", "se_to_flip_sign": "se to flip sign",
                                "shift_to_flip_sign": "shift to flip sign"})
        formats = {"share": lambda v: _DASH if math.isnan(as_float(v)) else f"{100 * as_float(v):.0f}%",
                   "se to flip sign": fmt_fixed(2)}
        body += _table(dg, "delta_gini", formats=formats, text=("moment",),
                       caption="By target: what moves Delta Gini (first order)")
    params = dec.get("parameters") or []
    if params:
        body += _table(pd.DataFrame(params).rename(columns={"d_delta_gini_d_parameter": "dDeltaGini/dtheta",
                                                            "effect_of_one_se": "effect of +1 se"}),
                       "delta_gini_parameters", text=("parameter",), caption="By parameter")
    flips = (report.get("delta_gini") or {}).get("flip_checks") or []
    if flips:
        frame = pd.DataFrame([{"moment": f.get("moment"), "se moved": as_float(f.get("se_moved")),
                               "Delta Gini before": as_float(f.get("delta_gini_before")),
                               "after re-estimation": as_float(f.get("delta_gini_after_reestimation")),
                               "sign flipped": "yes" if f.get("sign_flipped") else "no",
                               "secant: se to flip": as_float(f.get("se_to_flip_sign_secant"))} for f in flips])
        body += _table(frame, "flip_checks", formats={"se moved": fmt_fixed(2), "secant: se to flip": fmt_fixed(2)},
                       text=("moment", "sign flipped"), caption="Checked by re-estimation")
    if body:
        sections.append(("delta_gini", "Delta Gini decomposition", body))

    # Convergence
    conv = report.get("convergence") or {}
    starts = conv.get("starts") or []
    if starts:
        best = conv.get("best_start")
        frame = pd.DataFrame([{"start": f"{i} (best)" if i == best else str(i), "status": s.get("status", ""),
                               "iterations": s.get("iterations"), "criterion": as_float(s.get("criterion")),
                               "max|grad|": as_float(s.get("grad_norm")), "method": s.get("method", "")}
                              for i, s in enumerate(starts)])
        body = _table(frame, "convergence", formats={"iterations": _int}, text=("start", "status", "method"))
        names = list(starts[0].get("start", {}))
        points = pd.DataFrame({"parameter": names})
        for i, s in enumerate(starts):
            points[f"start {i}"] = [as_float(s.get("start", {}).get(n)) for n in names]
            points[f"end {i}"] = [as_float(s.get("end", {}).get(n)) for n in names]
        body += _table(points, "start_points", text=("parameter",), caption="Starting and end points")
        stage2 = conv.get("stage2")
        if stage2:
            body += (f'<p class="note">Two-step optimal weights: second step from start {_esc(stage2.get("start"))}, '
                     f'{_esc(stage2.get("iterations"))} iterations, criterion {_esc(fmt(stage2.get("criterion")))}, '
                     f'{_esc(stage2.get("status", ""))}.</p>')
        fp = report.get("fixed_point") or {}
        states = fp.get("states") or {}
        if states:
            frame = pd.DataFrame([{"AI state": k, "residual": as_float(v.get("residual")),
                                   "iterations": v.get("iterations"),
                                   "converged": "yes" if v.get("converged") else "NO"}
                                  for k, v in states.items()])
            body += _table(frame, "fixed_point", formats={"iterations": _int}, text=("AI state", "converged"),
                           caption=f"Education fixed point at the estimate ({fp.get('solver', '')}, "
                                   f"tolerance {as_float(fp.get('tol')):g})")
        sections.append(("convergence", "Convergence", body))

    # Configuration
    items = [(f"config.{k}", v) for k, v in config.items()]
    items += [(f"versions.{k}", v) for k, v in (report.get("versions") or {}).items()]
    frame = pd.DataFrame([(k, json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else str(v)))
                          for k, v in items], columns=["setting", "value"])
    sections.append(("configuration", "Run configuration",
                     "<details><summary>Configuration and package versions</summary>"
                     + _table(frame, "configuration", text=("setting", "value")) + "</details>"))
    regime = dec.get("regime") or report.get("regime") or ""
    subtitle = f"{len(est)} free parameters, {len(mom)} targets"
    if regime:
        subtitle += f"; {regime} regime at the estimate"
    return subtitle, sections


def _regimes_sections(folder: Path, used: set) -> tuple[str, list[tuple[str, str, str]]]:
    """Sections of a regimes folder: tables T_summary, T_boundary_<k> (one per AI structure, k = 0, 1,
    ...), T_map_xi_gini_K and T_map_eta1_xi (the maps' grids, when their CSVs are present); figures
    regime_map.png and technology_map.png."""
    info = _read_json(folder / "regimes.json")
    settings = info.get("settings") or {}
    params = info.get("params") or {}
    structures = info.get("structures") or {}
    boundary = _read_csv(folder / "boundary.csv")
    summary = pd.DataFrame([
        ("parameters", info.get("origin", "")),
        ("simulated agents N", f"{_int(settings.get('n_agents'))} ({_int(settings.get('n_firms'))} firms, "
                               f"{_int(settings.get('n_occupations'))} occupations)"),
        ("spec, precision", f"{settings.get('spec', '')}, {settings.get('precision', '')}"),
        ("seed", info.get("seed", "")),
        ("AI structures", "; ".join(f"{k}: eta0={v.get('eta0')}, eta1={v.get('eta1')}" for k, v in structures.items())),
        ("at the parameters", ", ".join(f"{k}={fmt(params[k])}" for k in ("xi", "gini_K", "eta0", "eta1", "psi")
                                        if k in params)),
        ("wall time", f"{as_float(info['seconds']):.1f} s" if "seconds" in info else _DASH),
    ], columns=["item", "value"])
    sections = [("summary", "Summary", _table(summary, "summary", text=("item", "value")))]

    body = ('<p class="lead">For each rent-sharing xi, the asset concentration Gini(K)* at which Delta Gini '
            "crosses zero (safeguarded Newton with the autodiff derivative), and the slope dGini(K)*/dxi by the "
            "implicit function theorem.</p>")
    for k, (name, part) in enumerate(boundary.groupby("structure", sort=False)):
        rows = []
        for r in part.to_dict("records"):
            status = str(r.get("status", ""))
            if status == "converged":
                side = "Gini(K) > Gini(K)*" if r.get("concentrating_side") == "above" else "Gini(K) < Gini(K)*"
            else:
                side = ("always" if "> 0" in status else "never") + " (no crossing)"
            rows.append({"xi": as_float(r.get("xi")), "Gini(K)*": as_float(r.get("gini_K")),
                         "|Delta Gini| at Gini(K)*": abs(as_float(r.get("delta_gini_residual"))),
                         "slope dGini(K)*/dxi": as_float(r.get("slope_dginiK_dxi")),
                         "iterations": r.get("iterations"), "concentrating when": side, "status": status})
        first = part.iloc[0]
        body += _table(pd.DataFrame(rows), f"boundary_{k}", formats={"iterations": _int},
                       text=("concentrating when",), small=("status",),
                       caption=f"{name} AI (eta0 = {as_float(first.get('eta0')):g}, "
                               f"eta1 = {as_float(first.get('eta1')):g})")
    sections.append(("boundary", "Boundary Delta Gini = 0", body))

    body = ('<div class="figrow">'
            + _figure(folder, "regime_map.png", "Delta Gini over (xi, Gini(K)) with both boundaries", used)
            + _figure(folder, "technology_map.png", "Delta Gini over (eta1, xi)", used) + "</div>")
    for name, (row, col) in (("map_xi_gini_K", ("xi", "gini_K")), ("map_eta1_xi", ("eta1", "xi"))):
        path = folder / f"{name}.csv"
        if not path.is_file():
            continue
        grid = _read_csv(path).pivot(index=row, columns=col, values="delta_gini")
        limit = float(np.nanmax(np.abs(grid.to_numpy()))) if grid.size else 1.0
        grid.columns = [f"{col}={fmt(c, 3)}" for c in grid.columns]
        grid.insert(0, row, grid.index)
        numeric = list(grid.columns[1:])
        body += (f"<details><summary>Delta Gini grid of {name}.csv (rows {row}, columns {col})</summary>"
                 + _table(grid, name, formats={row: lambda v: fmt(v, 3)}, style=_gradient(numeric, limit or 1.0))
                 + "</details>")
    sections.append(("maps", "Maps", body))
    return f"{boundary['structure'].nunique()} AI structures, {boundary['xi'].nunique()} values of xi", sections


def _oews_sections(folder: Path, used: set) -> tuple[str, list[tuple[str, str, str]]]:
    """Sections of an OEWS folder: tables T_summary, T_regressions_<fe> (coefficient (se) by measure
    and outcome; fe = 0 without, 1 with major-group fixed effects), T_regressions_full, T_coverage,
    T_model_demonstration (when present); figures binned_*.png."""
    info = _read_json(folder / "report.json")
    reg = _read_csv(folder / "regressions.csv")
    cover = _read_csv(folder / "coverage.csv")
    years = info.get("years") or sorted(cover["year"].unique().tolist())
    harm = info.get("harmonisation") or {}
    loader = info.get("loader") or []
    items = [("years", " to ".join(map(str, years))),
             ("OEWS files", "; ".join(Path(str(v)).name for v in (info.get("files") or {}).values()))]
    if harm:
        unmatched = harm.get("unmatched") or {}
        items.append(("harmonised occupations",
                      f"{harm.get('occupations')} ({harm.get('common_codes')} identical codes, "
                      f"{len(harm.get('harmonised_groups') or [])} groups of hybrid or split codes; unmatched "
                      f"{len(unmatched.get('first') or [])} and {len(unmatched.get('second') or [])})"))
    for rep in loader:
        specials = sum(sum(v.values()) for v in (rep.get("special_cells") or {}).values())
        items.append((f"file of {rep.get('year')}", f"{_int(rep.get('rows'))} rows, {_int(rep.get('detailed_kept'))} "
                                                    f"detailed occupations kept, {specials} special cells (#, *, **)"))
    sections = [("summary", "Summary", _table(pd.DataFrame(items, columns=["item", "value"]), "summary",
                                              text=("item", "value")))]

    body = ""
    outcomes = list(dict.fromkeys(reg["outcome"]))
    measures = list(dict.fromkeys(reg["measure"]))
    for fe in sorted(reg["fixed_effects"].astype(str).str.lower().unique()):
        part = reg[reg["fixed_effects"].astype(str).str.lower() == fe]
        rows = []
        for m in measures:
            row = {"measure": m}
            for o in outcomes:
                hit = part[(part["measure"] == m) & (part["outcome"] == o)]
                if hit.empty:
                    row[_OUTCOMES.get(o, o)] = _DASH
                    continue
                h = hit.iloc[0]
                p = as_float(h["p_value"])
                stars = "**" if p < 0.01 else ("*" if p < 0.05 else "")
                row[_OUTCOMES.get(o, o)] = f"{as_float(h['coef']):+.4f}{stars} ({as_float(h['se']):.4f})"
            rows.append(row)
        with_fe = fe == "true"
        body += _table(pd.DataFrame(rows), f"regressions_{int(with_fe)}", text=("measure",),
                       caption=("With major-group fixed effects" if with_fe else "Without fixed effects")
                       + f": coefficient (HC1 se), {'-'.join(map(str, years))}")
    body += ('<p class="note">Employment-weighted least squares of the change in each outcome on standardised '
             "exposure (one SD); * p &lt; 0.05, ** p &lt; 0.01.</p>")
    body += ("<details><summary>Every regression (regressions.csv)</summary>"
             + _table(reg, "regressions_full", formats={"p_value": _p_value, "n": _int},
                      text=("measure", "outcome", "fixed_effects")) + "</details>")
    sections.append(("regressions", "Regressions on AI exposure", body))

    cov_rows = []
    for m in dict.fromkeys(cover["measure"]):
        row = {"measure": m}
        for r in cover[cover["measure"] == m].to_dict("records"):
            row[str(r["year"])] = (f"{_int(r['occupations'])}/{_int(r['of'])} "
                                   f"({100 * as_float(r['employment_share']):.1f}% of employment)")
        cov_rows.append(row)
    sections.append(("coverage", "Coverage of the exposure measures",
                     _table(pd.DataFrame(cov_rows), "coverage", text=("measure",))))

    body = "".join(_figure(folder, p.name, "binned scatter of the change against exposure, with the fitted line", used)
                   for p in sorted(folder.glob("binned_*.png")))
    sections.append(("binned", "Binned scatters", body or '<p class="note">No binned scatter in this folder.</p>'))

    demo = folder / "model_demonstration.csv"
    if demo.is_file():
        frame = _read_csv(demo)
        sections.append(("model", "The same regressions on occupations simulated from the model",
                         _table(frame, "model_demonstration", text=tuple(c for c in ("pair", "regime", "changes")
                                                                         if c in frame))))
    return f"{len(measures)} exposure measures, {len(outcomes)} outcomes", sections


_BUILDERS = {"calibrate": _calibrate_sections, "regimes": _regimes_sections, "oews": _oews_sections}


def report_html(folder: Path) -> str:
    """The text of ``report.html`` for ``folder`` (see :func:`build_report`)."""
    folder = Path(folder)
    kind = folder_kind(folder)
    used: set[str] = set()
    subtitle, sections = _BUILDERS[kind](folder, used)
    rest = [p.name for p in sorted(folder.glob("*.png")) if p.name not in used]
    if rest:
        sections.append(("figures", "Other figures", "".join(_figure(folder, name, name, used) for name in rest)))
    nav = "".join(f'<a href="#{sid}">{_esc(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_esc(title)}</h2>{content}</section>' for sid, title, content in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>levelfield {kind}: {_esc(folder.name)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<header><h1>levelfield {kind} &middot; {_esc(_TITLES[kind])}</h1>'
        f"<p>{_esc(folder.name)} &middot; {_esc(subtitle)}</p></header>\n"
        f"<nav>{nav}</nav>\n<main>\n{body}\n"
        f"<footer>Built by levelfield from the CSV, JSON and PNG files of {_esc(folder.name)} alone; "
        "rebuild with <code>levelfield report DIR</code>.</footer>\n</main>\n</body>\n</html>\n"
    )


def build_report(folder: Path) -> Path:
    """Write ``folder/report.html``: the run's tables and figures in one self-contained file.

    The kind of folder (calibrate, regimes, oews) is told from its files (:func:`folder_kind`):

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
