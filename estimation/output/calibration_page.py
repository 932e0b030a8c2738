"""The tables of a calibration's report.html, prepared from its view (the template lays them out).

:func:`page_context` gives the template ``calibrate.html.j2`` its sections, tables (``T_summary``,
``T_estimates``, ``T_fit``, ``T_j_test``, ``T_singular_values``, ``T_weak_directions`` when there are
any, ``T_sensitivity``, ``T_sensitivity_raw``, ``T_regime`` (Delta Gini's SE and the regime probability, when computed), ``T_delta_gini``, ``T_delta_gini_parameters``,
``T_flip_checks`` when checked, ``T_convergence``, ``T_start_points``, ``T_fixed_point``,
``T_configuration``) and the view itself, whose numbers the template prints with its filters.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd

from estimation.output import sections
from estimation.output.html_tables import (
    DASH, flag_beyond_two, fmt, fmt_bound, fmt_fixed, fmt_int, fmt_p_value, fmt_share, gradient, table,
)
from estimation.output.view import Calibration

#: The PNGs the calibration's sections show (any other goes to "Other figures").
FIGURES = ("fit.png", "sensitivity.png")


def _summary(view: Calibration) -> dict:
    config, dec, j, ident = view.config, view.decomposition, view.j_test, view.identification
    delta = DASH if dec is None else fmt(dec.delta_gini) + (f" ({dec.regime})" if dec.regime else "")
    frame = pd.DataFrame([
        ("free parameters", ", ".join(view.free_parameters)),
        ("criterion g'Wg", fmt(view.criterion)),
        ("Delta Gini at the estimate", delta),
        ("regime uncertainty", view.regime_uncertainty.text if view.regime_uncertainty else DASH),
        ("Hansen J", f"{fmt(j.J)} ({j.df} d.f.), p-value {fmt_p_value(j.p_value)}" if j else DASH),
        ("identification", f"rank {ident.rank} of {ident.n_params}, condition number "
                           f"{fmt(ident.condition_number, 3)}" if ident and ident.rank is not None else DASH),
        ("simulated agents N", f"{fmt_int(config.get('n_agents'))} ({fmt_int(config.get('n_firms'))} firms, "
                               f"{fmt_int(config.get('n_occupations'))} occupations, "
                               f"{fmt_int(config.get('n_tasks'))} tasks)"),
        ("draw sets for the simulation noise", fmt_int(config.get("n_sim"))),
        ("weighting", config.get("weights", DASH)),
        ("starts", fmt_int(config.get("n_starts"))),
        ("seed", config.get("seed", DASH)),
        ("targets", config.get("targets") or "shipped (MODEL.md section 7)"),
    ] + ([("not targeted (weight 0)", ", ".join(view.untargeted))] if view.untargeted else []),
        columns=["item", "value"])
    return {"summary": table(frame, "summary", text=("item", "value"))}


def _estimates(view: Calibration) -> dict:
    rows = [{"parameter": e.parameter, "estimate": e.estimate, "se": e.se,
             "95% interval": DASH if math.isnan(e.ci_lower) else f"[{fmt(e.ci_lower)}, {fmt(e.ci_upper)}]",
             "interval": e.interval, "bounds": f"[{fmt_bound(e.lower_bound)}, {fmt_bound(e.upper_bound)}]",
             "at bound": e.at_bound, "note": e.note, "start": e.start} for e in view.estimates]
    frame = pd.DataFrame(rows)
    if not frame["interval"].astype(bool).any():
        frame = frame.drop(columns="interval")
    return {"estimates": table(frame, "estimates", text=("parameter", "95% interval", "interval", "bounds", "at bound"),
                               small=("note",), nowrap=("95% interval", "bounds"))}


def _fit(view: Calibration) -> dict:
    frame = pd.DataFrame([dataclasses.asdict(m) for m in view.moments])
    # A target without a source shows a dash, as any missing cell.
    frame["source"] = frame["source"].map(lambda s: s or None)
    frame = frame.rename(columns={"error_in_se": "error / se", "simulation_sd": "simulation sd"})
    columns = ["symbol", "moment", "target", "se", "model", "error", "error / se", "simulation sd", "source"]
    text = ("symbol", "moment")
    if view.untargeted:  # the estimation gave these weight 0 (--moments, or no row in the targets file)
        frame["targeted"] = frame["targeted"].map(lambda t: "yes" if t else "not targeted")
        columns.insert(2, "targeted")
        text += ("targeted",)
    frame = frame[columns]
    return {"fit": table(frame, "fit", formats={"error / se": fmt_fixed(2)}, text=text,
                         small=("source",), style=flag_beyond_two("error / se"))}


def _j_test(view: Calibration) -> dict:
    j = view.j_test
    if j is None:
        return {}
    row = {"J": j.J, "degrees of freedom": fmt_int(j.df), "p-value": fmt_p_value(j.p_value), "weighting": j.weights}
    if j.form:  # reports written before the form was recorded have none
        row["form of J"] = j.form
    return {"j_test": table(pd.DataFrame([row]), "j_test", text=("weighting", "form of J"))}


def _identification(view: Calibration) -> dict:
    ident = view.identification
    out = {}
    if ident is not None and ident.singular_values:
        sv = ident.singular_values
        out["singular_values"] = table(pd.DataFrame({
            "#": [f"s{i + 1}" for i in range(len(sv))], "singular value of W^1/2 G": list(sv),
            "relative to the largest": list(ident.relative_singular_values)}), "singular_values", text=("#",))
    if ident is not None and ident.weak_directions:
        out["weak_directions"] = table(pd.DataFrame([{"singular value": w.singular_value,
                                                      "weakly identified combination": w.text}
                                                     for w in ident.weak_directions]),
                                       "weak_directions", text=("weakly identified combination",))
    return out


def _sensitivity(view: Calibration) -> dict:
    sens = view.sensitivity
    if sens is None:
        return {}
    symbols = view.symbols
    scaled = sens.scaled_frame()
    scaled.columns = [(symbols.get(c) or c) + (" (not targeted)" if c in sens.untargeted else "")
                      for c in scaled.columns]
    scaled.insert(0, "parameter", scaled.index)
    numeric = [c for c in scaled.columns if c != "parameter"]
    raw = pd.DataFrame(sens.raw, columns=list(sens.moments))
    raw.insert(0, "parameter", list(sens.parameters))
    return {"sensitivity": table(scaled, "sensitivity", formats={c: fmt_fixed(2) for c in numeric},
                                 text=("parameter",), style=gradient(numeric)),
            "sensitivity_raw": table(raw, "sensitivity_raw", text=("parameter",))}


def _delta_gini(view: Calibration) -> dict:
    dec, out = view.decomposition, {}
    if dec is not None and dec.targets:
        frame = pd.DataFrame([dataclasses.asdict(t) for t in dec.targets]).rename(columns={
            "d_delta_gini_d_target": "dDeltaGini/dtarget", "effect_of_one_se": "effect of +1 se",
            "share_of_total_effect": "share", "se_to_flip_sign": "se to flip sign",
            "shift_to_flip_sign": "shift to flip sign"})
        text = ("moment",)
        if frame["targeted"].all():
            frame = frame.drop(columns="targeted")
        else:
            frame["targeted"] = frame["targeted"].map(lambda t: "yes" if t else "not targeted")
            text += ("targeted",)
        out["delta_gini"] = table(frame, "delta_gini", formats={"share": fmt_share, "se to flip sign": fmt_fixed(2)},
                                  text=text, caption="By target: what moves Delta Gini (first order)")
    u = view.regime_uncertainty
    if u is not None:
        frame = pd.DataFrame([{"Delta Gini": u.delta_gini, "se (delta method)": u.se,
                               "P(concentrating), first order": u.probability_normal,
                               "P(concentrating), draws": u.probability_concentrating,
                               "Monte Carlo se": u.monte_carlo_se, "draws": fmt_int(u.draws),
                               "share of draws in the box": u.acceptance}])
        out["regime"] = table(frame, "regime", formats={c: fmt_fixed(3, signed=False) for c in (
            "P(concentrating), first order", "P(concentrating), draws", "Monte Carlo se", "share of draws in the box")},
            caption="The regime with its uncertainty")
    if dec is not None and dec.parameters:
        frame = pd.DataFrame([dataclasses.asdict(p) for p in dec.parameters]).rename(columns={
            "d_delta_gini_d_parameter": "dDeltaGini/dtheta", "effect_of_one_se": "effect of +1 se"})
        out["delta_gini_parameters"] = table(frame, "delta_gini_parameters", text=("parameter",),
                                             caption="By parameter")
    if view.flip_checks:
        frame = pd.DataFrame([{"moment": f.moment, "se moved": f.se_moved, "Delta Gini before": f.delta_gini_before,
                               "after re-estimation": f.delta_gini_after_reestimation,
                               "sign flipped": "yes" if f.sign_flipped else "no",
                               "secant: se to flip": f.se_to_flip_sign_secant} for f in view.flip_checks])
        out["flip_checks"] = table(frame, "flip_checks", formats={"se moved": fmt_fixed(2),
                                                                  "secant: se to flip": fmt_fixed(2)},
                                   text=("moment", "sign flipped"), caption="Checked by re-estimation")
    return out


def _convergence(view: Calibration) -> dict:
    conv = view.convergence
    if not conv.starts:
        return {}
    frame = pd.DataFrame([{"start": f"{i} (best)" if i == conv.best_start else str(i), "status": s.status,
                           "iterations": s.iterations, "criterion": s.criterion, "max|grad|": s.grad_norm,
                           "method": s.method} for i, s in enumerate(conv.starts)])
    out = {"convergence": table(frame, "convergence", formats={"iterations": fmt_int},
                                text=("start", "status", "method"))}
    names = list(conv.starts[0].start)
    points = pd.DataFrame({"parameter": names})
    for i, s in enumerate(conv.starts):
        points[f"start {i}"] = [s.start.get(n, math.nan) for n in names]
        points[f"end {i}"] = [s.end.get(n, math.nan) for n in names]
    out["start_points"] = table(points, "start_points", text=("parameter",), caption="Starting and end points")
    if conv.fixed_point:
        frame = pd.DataFrame([{"AI state": s.state, "residual": s.residual, "iterations": s.iterations,
                               "converged": "yes" if s.converged else "NO"} for s in conv.fixed_point])
        out["fixed_point"] = table(frame, "fixed_point", formats={"iterations": fmt_int},
                                   text=("AI state", "converged"),
                                   caption=f"Education fixed point at the estimate ({conv.fixed_point_solver}, "
                                           f"tolerance {conv.fixed_point_tol:g})")
    return out


def _configuration(view: Calibration) -> dict:
    items = [(f"config.{k}", v) for k, v in view.config.items()]
    items += [(f"versions.{k}", v) for k, v in view.versions.items()]
    frame = pd.DataFrame([(k, json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else str(v)))
                          for k, v in items], columns=["setting", "value"])
    return {"configuration": table(frame, "configuration", text=("setting", "value"))}


_TABLES = (_summary, _estimates, _fit, _j_test, _identification, _sensitivity, _delta_gini, _convergence,
           _configuration)


def subtitle(view: Calibration) -> str:
    """The page's subtitle: the numbers of parameters and targets, and the regime at the estimate."""
    regime = (view.decomposition.regime if view.decomposition else "") or view.regime
    text = f"{len(view.estimates)} free parameters, {len(view.moments) - len(view.untargeted)} targets"
    if view.untargeted:
        text += f" ({', '.join(view.untargeted)} not targeted)"
    return text + (f"; {regime} regime at the estimate" if regime else "")


def page_context(view: Calibration, figures) -> dict:
    """What ``calibrate.html.j2`` renders: ``sections``, ``tables`` (name -> HTML), ``view`` and texts."""
    tables = {}
    for part in _TABLES:
        tables.update(part(view))
    return {"sections": sections.calibration_sections(view, figures), "tables": tables, "view": view,
            "subtitle": subtitle(view),
            "estimate_notes": [f"{e.parameter}: {e.note}" for e in view.estimates if e.note]}
