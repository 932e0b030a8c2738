"""The results folder of ``levelfield identify`` (every file written atomically, then published).

- ``point.csv``: per free parameter at the point: identified, zero column, null weight,
  collinearity with all others, most collinear partner and pair of partners, se, strength
  |theta|/se and se / box width.
- ``singular.csv``: singular values of W^1/2 G and its right singular vectors (natural units), and
  those of the column-normalised matrix the null space is taken from (column ``scaling``).
- ``null_space.csv``: the null directions (natural units and column-normalised) and their text.
- ``jacobian.csv`` (G, moments x parameters), ``weights.csv`` (W), ``moments_cov.csv`` (Omega, the
  sandwich's), ``moments.csv`` (the model at the point, the targets and their SEs).
- ``elasticities.csv``: per moment and parameter, dm/dtheta, d log m / d log theta, the SE-scaled
  derivative dm/dtheta * width / se_m and which one the heatmap shows; ``elasticities.png``.
- ``sample.csv``: every Sobol point (overflowed ones too, status "overflow"); ``sample_jacobians.csv``
  (long: point, moment, parameter, value); ``worst_points.csv`` (largest condition numbers);
  ``overflow.csv`` (the points where the moments or the Jacobian are not finite; header only when
  none); ``identified_share.csv``; ``condition_map.png``.
- ``slices.csv`` and ``slices.png`` (Q along each parameter), ``contour.csv`` and ``contour.png``
  (Q over the most collinear pair).
- ``identification.json``: everything above that is not a big table, with the definitions and
  tolerances, the settings, seed and origin, the share of the Sobol sample in the concentrating
  regime and, ``--from`` a calibration, Delta Gini's delta-method SE and the probability of the
  concentrating regime from draws of theta ~ N(estimate, V) in the search box; ``timing.json``:
  compile and run times.
- ``report.html``: one self-contained page (template ``templates/identify.html.j2``, autoescaped).
"""

from __future__ import annotations

import base64
import dataclasses
import math
from importlib import resources

import numpy as np
import pandas as pd

from estimation import identification as ident
from estimation.output.figures import pyplot, to_png
from estimation.output.runfiles import (
    RunFolder,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    to_jsonable,
    write_csv,
)
from jaxmodel import MOMENT_NAMES

#: The PNG files, in the order the page shows them.
FIGURES = ("elasticities.png", "condition_map.png", "slices.png", "contour.png")

DEFINITIONS = {
    "scaled_jacobian": "J = W^1/2 G, G = dm/dtheta by jax.jacfwd through the fixed point (exact)",
    "zero_column": f"||J_j|| * box width_j <= {ident.ZERO_COLUMN_TOL:g}: the parameter has no effect",
    "null_space": (f"right singular vectors of J with unit-length columns (zero columns 0) whose singular value is "
                   f"<= {ident.NULL_REL_TOL:g} times the largest; directions shown in natural units D^-1 v"),
    "null_weight": "length of the projection of e_j on the null space",
    "collinearity": "uncentred multiple correlation of J_j with the other columns (Iskrev 2010; Dynare's cosn)",
    "identified": (f"not a zero column, null weight <= {ident.NULL_WEIGHT_TOL:g} and collinearity < "
                   f"{ident.COLLINEARITY_TOL:g}"),
    "condition_number": "s_max / s_min of J with unit-length columns (scale-free); condition_number_natural: of J",
    "strength": "|theta| / se, and se / box width (read this one where |theta| < "
                f"{ident.NEAR_ZERO_SHARE:g} box width)",
    "se": ("sandwich (G'WG)^-1 G'W Omega W G (G'WG)^-1; parameters with null weight above the tolerance get inf "
           "and are held fixed for the others"),
    "heatmap": ("elasticity d log m / d log theta, or where the moment is within one target SE of 0 or the "
                f"parameter within {ident.NEAR_ZERO_SHARE:g} box width of 0, the SE-scaled derivative "
                "dm/dtheta * box width / se_m (target SEs the moment moves when theta crosses its box)"),
    "condition_map": ("log10 condition number over the two parameters whose cubic main effect explains the most "
                      "of its variance over the sample"),
    "sample": ident.SAMPLE_DESIGN,
}


def _labels(names) -> list[str]:
    return [f"m{i + 1} {n}" for i, n in enumerate(names)]


# --- Figures ---------------------------------------------------------------------------------------


def elasticity_figure(result: ident.Study) -> bytes:
    """Moment-by-parameter heatmap: elasticities, and SE-scaled derivatives (marked *) where a
    moment or a parameter is near 0."""
    plt = pyplot()
    heat = result.heatmap
    shown, scaled = heat["shown"], heat["scaled"]
    names = list(result.free.names)
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 3.5, 4.4))
    finite = np.isfinite(shown)
    limit = float(np.max(np.abs(shown[finite]))) if finite.any() else 1.0
    image = ax.imshow(np.where(finite, shown, 0.0), cmap="RdBu_r", vmin=-(limit or 1.0), vmax=limit or 1.0,
                      aspect="auto")
    ax.set_xticks(range(len(names)), names, fontsize=8, rotation=30)
    ax.set_yticks(range(len(MOMENT_NAMES)), _labels(MOMENT_NAMES), fontsize=8)
    for i in range(len(MOMENT_NAMES)):
        for j in range(len(names)):
            text = (f"{shown[i, j]:.2f}" + ("*" if scaled[i, j] else "")) if finite[i, j] else "n/a"
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax)
    ax.set_title("Elasticities d log m / d log theta;\n* = SE-scaled derivative dm/dtheta x box width / se_m "
                 "(moment or parameter near 0)", fontsize=8.5)
    fig.tight_layout()
    return to_png(fig)


def condition_figure(result: ident.Study) -> bytes:
    """log10 condition number over the two parameters it depends on most (points that overflowed
    as black crosses), and its distribution."""
    plt = pyplot()
    sample = result.sample
    names = list(result.free.names)
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [1.4, 1]})
    cond = np.log10(np.minimum(sample.condition_number, ident.CONDITION_CAP))
    pair = sample.driver_pair()
    ok, bad = sample.finite, ~sample.finite
    x = sample.thetas[:, pair[0]]
    y = sample.thetas[:, pair[1]] if len(pair) > 1 else cond
    points = ax.scatter(x[ok], y[ok], c=cond[ok], cmap="viridis", s=18)
    if bad.any():
        ax.scatter(x[bad], y[bad] if len(pair) > 1 else np.zeros(bad.sum()), marker="x", color="black", s=24,
                   label=f"model overflows ({int(bad.sum())})")
        ax.legend(fontsize=7, loc="best")
    ax.plot([result.theta[pair[0]]], [result.theta[pair[1]]] if len(pair) > 1 else [result.point.condition_number],
            "r*", ms=13)
    fig.colorbar(points, ax=ax, label="log10 condition number (capped at 1e16)")
    share = sample.drivers
    ax.set_xlabel(f"{names[pair[0]]} (main effect {share[pair[0]]:.0%})")
    ax.set_ylabel(f"{names[pair[1]]} (main effect {share[pair[1]]:.0%})" if len(pair) > 1 else "log10 condition")
    ax.set_title("Condition number over the two parameters it depends on most (red star: the point)", fontsize=8.5)
    hist.hist(cond[ok & np.isfinite(cond)], bins=30, color="tab:blue")
    hist.set_xlabel("log10 condition number")
    hist.set_ylabel("points")
    hist.set_title(f"{int(ok.sum())} of {sample.n_points} points finite", fontsize=8.5)
    fig.tight_layout()
    return to_png(fig)


def slices_figure(result: ident.Study) -> bytes:
    """Q = g'Wg along each free parameter across its box, the others at the point (optimagic's
    slice_plot): one panel per parameter, the point marked."""
    plt = pyplot()
    sl = result.slices
    names = list(result.free.names)
    cols = min(3, len(names))
    rows = int(math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 2.9 * rows), squeeze=False)
    q_point = float(ident.criterion(result.moments[None], result.targets, result.weights)[0])
    for j, ax in enumerate(axes.ravel()):
        if j >= len(names):
            ax.set_visible(False)
            continue
        mask = sl["which"] == j
        xs, qs = sl["thetas"][mask, j], sl["Q"][mask]
        good = np.isfinite(qs)
        ax.plot(xs[good], qs[good], "-o", ms=2.5, color="tab:blue")
        if (~good).any():
            ax.plot(xs[~good], np.full((~good).sum(), np.nanmax(qs[good]) if good.any() else 0.0), "kx",
                    label="not finite")
            ax.legend(fontsize=6)
        ax.plot([result.theta[j]], [q_point], "r*", ms=10)
        ax.set_yscale("log" if good.any() and (qs[good] > 0).all() else "linear")
        ax.set_title(names[j], fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle("Criterion slices Q(theta) = g'Wg along each free parameter, the others at the point (red star)",
                 fontsize=9)
    fig.tight_layout()
    return to_png(fig)


def contour_figure(result: ident.Study) -> bytes:
    """log10 Q over the most collinear pair's boxes, the point marked."""
    plt = pyplot()
    c = result.contour
    a, b = c["pair"]
    n = c["n"]
    names = list(result.free.names)
    xa = c["thetas"][:, a].reshape(n, n)
    xb = c["thetas"][:, b].reshape(n, n)
    q = c["Q"].reshape(n, n)
    finite = np.isfinite(q) & (q > 0)
    z = np.where(finite, np.log10(np.where(finite, q, 1.0)), np.nan)
    fig, ax = plt.subplots(figsize=(6.2, 5.0))
    if np.isfinite(z).sum() >= 4 and np.nanmax(z) > np.nanmin(z):
        mesh = ax.contourf(xa, xb, z, levels=20, cmap="viridis")
        fig.colorbar(mesh, ax=ax, label="log10 Q")
    if (~finite).any():
        ax.plot(xa[~finite], xb[~finite], "kx", ms=4, label="Q not finite")
        ax.legend(fontsize=7)
    ax.plot([result.theta[a]], [result.theta[b]], "r*", ms=13)
    ax.set_xlabel(names[a])
    ax.set_ylabel(names[b])
    pair = result.point.most_pair
    ax.set_title(f"Criterion over the most collinear pair (|cos| = {pair[1]:.3f} at the point)", fontsize=9)
    fig.tight_layout()
    return to_png(fig)


# --- Files -----------------------------------------------------------------------------------------


def _square(matrix, names, axis: str) -> pd.DataFrame:
    return pd.DataFrame(matrix, index=list(names), columns=list(names)).rename_axis(axis)


def write_identify(folder: RunFolder, result: ident.Study, inputs, seed: int, seconds: float) -> None:
    """Every file of the module docstring into the folder's staging area, then publish it."""
    stage = folder.staging
    stage.mkdir(parents=True, exist_ok=True)
    _point_files(stage, result)
    sample = _sample_files(stage, result)
    slices, contour = _slice_files(stage, result)
    report = _report(result, inputs, seed, sample, slices, contour)
    atomic_write_json(stage / "identification.json", to_jsonable(report))
    atomic_write_text(stage / "report.html", render_page(stage, report))
    atomic_write_json(stage / "timing.json", to_jsonable({"seconds": seconds, **result.timing}))
    folder.publish()


def _point_files(stage, result: ident.Study) -> None:
    """point.csv, singular.csv, null_space.csv, jacobian.csv, weights.csv, moments_cov.csv,
    moments.csv, elasticities.csv and elasticities.png."""
    names = list(result.free.names)
    point = result.point
    write_csv(pd.DataFrame(point.parameter_records()), stage / "point.csv")
    rows = []
    for scaling, s, vt in (("natural", point.singular_values, point.right_vectors),
                           ("normalised", point.normalised_singular_values, None)):
        for i, value in enumerate(s):
            row = {"scaling": scaling, "index": i, "singular_value": float(value)}
            if vt is not None:
                row.update({n: float(v) for n, v in zip(names, vt[i])})
            rows.append(row)
    write_csv(pd.DataFrame(rows), stage / "singular.csv")
    nulls = [{"direction": r, "text": t, "kind": kind, **dict(zip(names, map(float, v)))}
             for r, (d, w, t) in enumerate(zip(point.null_directions, point.null_normalised, point.null_space_text))
             for kind, v in (("natural", d), ("normalised", w))]
    write_csv(pd.DataFrame(nulls, columns=["direction", "text", "kind", *names]), stage / "null_space.csv")
    write_csv(pd.DataFrame(result.jacobian, index=list(MOMENT_NAMES), columns=names).rename_axis("moment"),
              stage / "jacobian.csv", index=True)
    write_csv(_square(result.weights, MOMENT_NAMES, "moment"), stage / "weights.csv", index=True)
    write_csv(_square(result.moments_cov, MOMENT_NAMES, "moment"), stage / "moments_cov.csv", index=True)
    write_csv(pd.DataFrame({"moment": MOMENT_NAMES, "model": result.moments, "target": result.targets,
                            "se": result.target_se}), stage / "moments.csv")
    heat = result.heatmap
    write_csv(pd.DataFrame([{"moment": mn, "parameter": pn, "derivative": float(result.jacobian[i, j]),
                             "elasticity": float(heat["elasticity"][i, j]), "se_scaled": float(heat["se_scaled"][i, j]),
                             "shown": "se_scaled" if heat["scaled"][i, j] else "elasticity"}
                            for i, mn in enumerate(MOMENT_NAMES) for j, pn in enumerate(names)]),
              stage / "elasticities.csv")
    atomic_write_bytes(stage / "elasticities.png", elasticity_figure(result))


def _sample_files(stage, result: ident.Study) -> dict:
    """sample.csv, sample_jacobians.csv, worst_points.csv, overflow.csv, identified_share.csv and
    condition_map.png; returns the sample's summary for identification.json ({} without a sample)."""
    sample = result.sample
    if sample is None:
        return {}
    names = list(result.free.names)
    records = sample.point_records()
    frame = pd.DataFrame(records)
    write_csv(frame, stage / "sample.csv")
    write_csv(pd.DataFrame([{"point": s, "moment": mn, "parameter": pn, "value": float(sample.jacobians[s, i, j])}
                            for s in range(sample.n_points) for i, mn in enumerate(MOMENT_NAMES)
                            for j, pn in enumerate(names)]), stage / "sample_jacobians.csv")
    write_csv(frame.iloc[sample.worst()], stage / "worst_points.csv")
    write_csv(frame[~sample.finite] if (~sample.finite).any() else frame.iloc[:0], stage / "overflow.csv")
    share = sample.share_identified()
    write_csv(pd.DataFrame([{"parameter": n, **v} for n, v in share.items()]), stage / "identified_share.csv")
    atomic_write_bytes(stage / "condition_map.png", condition_figure(result))
    pair = sample.driver_pair()
    return {
        "points": sample.n_points, "finite_points": int(sample.finite.sum()),
        "overflow_points": int((~sample.finite).sum()),
        "overflow": [r for r, ok in zip(records, sample.finite) if not ok],
        "identified_share": share, "condition_number_quantiles": sample.condition_quantiles(),
        "rank_deficient_points": int((sample.rank[sample.finite] < len(names)).sum()),
        "condition_drivers": {"parameters": [names[i] for i in pair],
                              "main_effect_shares": dict(zip(names, map(float, sample.drivers)))},
        "max_fp_residual": float(np.max(sample.fp_residual)) if sample.n_points else math.nan,
        "share_concentrating": result.share_concentrating(),
    }


def _slice_files(stage, result: ident.Study) -> tuple[dict | None, dict | None]:
    """slices.csv, slices.png, contour.csv and contour.png; returns their summaries."""
    names = list(result.free.names)
    slices_summary = contour_summary = None
    if result.slices is not None:
        sl = result.slices
        write_csv(pd.DataFrame({"parameter": [names[j] for j in sl["which"]],
                                "value": sl["thetas"][np.arange(len(sl["which"])), sl["which"]], "Q": sl["Q"]}),
                  stage / "slices.csv")
        atomic_write_bytes(stage / "slices.png", slices_figure(result))
        slices_summary = {"points_per_parameter": sl["n"], "argmin": {
            names[j]: float(sl["thetas"][sl["which"] == j][int(np.argmin(sl["Q"][sl["which"] == j])), j])
            for j in range(len(names))}}
    if result.contour is not None:
        c = result.contour
        a, b = c["pair"]
        write_csv(pd.DataFrame({names[a]: c["thetas"][:, a], names[b]: c["thetas"][:, b], "Q": c["Q"]}),
                  stage / "contour.csv")
        atomic_write_bytes(stage / "contour.png", contour_figure(result))
        contour_summary = {"pair": [names[a], names[b]], "points_per_axis": c["n"]}
    return slices_summary, contour_summary


def _report(result: ident.Study, inputs, seed: int, sample: dict, slices: dict | None, contour: dict | None) -> dict:
    """identification.json: everything that is not a big table, with the definitions and tolerances."""
    names = list(result.free.names)
    regime = None if result.regime is None else {**result.regime, "method": getattr(inputs, "regime_note", "")}
    return {
        "levelfield_identify": 1,
        "origin": inputs.origin, "seed": seed, "draws_seed": inputs.seed,
        "settings": dataclasses.asdict(inputs.settings),
        "params": {k: float(v) for k, v in inputs.params.to_dict().items()},
        "free_parameters": names,
        "moments_used": list(getattr(inputs, "moments", ()) or MOMENT_NAMES),
        "search_box": {n: [lo, hi] for n, lo, hi in zip(names, result.free.lower, result.free.upper)},
        "point": dict(zip(names, map(float, result.theta))),
        "targets": {"values": result.targets, "se": result.target_se},
        "weights": inputs.weights_origin, "moments_cov": inputs.omega_note,
        "model_moments": dict(zip(MOMENT_NAMES, map(float, result.moments))),
        "criterion": float(ident.criterion(result.moments[None], result.targets, result.weights)[0]),
        "fp_residual": result.fp_residual,
        "at_point": result.point.to_dict(),
        "sample": sample or None,
        "regime": regime,
        "regime_note": getattr(inputs, "regime_note", ""),
        "slices": slices, "contour": contour,
        "tolerances": {"null_rel_tol": ident.NULL_REL_TOL, "null_weight_tol": ident.NULL_WEIGHT_TOL,
                       "collinearity_tol": ident.COLLINEARITY_TOL, "zero_column_tol": ident.ZERO_COLUMN_TOL,
                       "near_zero_share": ident.NEAR_ZERO_SHARE},
        "definitions": DEFINITIONS,
    }


# --- The page --------------------------------------------------------------------------------------


def _fmt(x) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        if math.isnan(x):
            return "\u2014"
        if math.isinf(x):
            return "\u221e" if x > 0 else "-\u221e"
        return f"{x:.4g}"
    return "" if x is None else str(x)


def _table(frame: pd.DataFrame) -> dict:
    return {"columns": [str(c) for c in frame.columns],
            "rows": [[_fmt(v) for v in row] for row in frame.itertuples(index=False, name=None)]}


def render_page(stage, report: dict) -> str:
    """report.html from the files in ``stage`` and the JSON report (jinja2, autoescaped; PNGs
    embedded as data: URIs, so the page is one self-contained file)."""
    import jinja2

    text = resources.files("estimation.output").joinpath("templates/identify.html.j2").read_text("utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(text)
    tables = {}
    for name in ("point", "moments", "identified_share", "worst_points", "overflow"):
        path = stage / f"{name}.csv"
        if path.is_file():
            frame = pd.read_csv(path)
            if name in ("worst_points", "overflow"):
                keep = ["point", *report["free_parameters"], "status", "condition_number", "rank", "not_identified",
                        "null_space"]
                frame = frame[[c for c in keep if c in frame.columns]]
            tables[name] = _table(frame)
    figures = {}
    for name in FIGURES:
        path = stage / name
        if path.is_file():
            figures[name] = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    at = report["at_point"]
    return template.render(
        report=report, at=at, tables=tables, figures=figures,
        singular=[_fmt(x) for x in at["singular_values"]],
        quantiles={k: _fmt(v) for k, v in ((report["sample"] or {}).get("condition_number_quantiles") or {}).items()},
        fmt=_fmt,
    )


def print_summary(result: ident.Study) -> None:
    """The terminal report: the point's table and, over the sample, the share identified."""
    from rich.table import Table

    from estimation.output.tables import console

    point = result.point
    table = Table(title="Identification at the point", title_justify="left")
    for col in ("parameter", "value", "identified", "null weight", "collinearity", "most collinear with",
                "se", "|theta|/se", "se/box"):
        table.add_column(col, justify="left" if col in ("parameter", "most collinear with") else "right")
    share = result.sample.share_identified() if result.sample is not None else {}
    for r in point.parameter_records():
        table.add_row(r["parameter"], _fmt(r["value"]), _fmt(r["identified"]), _fmt(r["null_weight"]),
                      _fmt(r["collinearity"]), f"{r['pair_partner']} ({_fmt(r['pair_collinearity'])})",
                      _fmt(r["se"]), _fmt(r["strength"]), _fmt(r["se_box_share"]))
    console.print(table)
    console.print(f"Singular values of W^1/2 G: {', '.join(_fmt(s) for s in point.singular_values)}; "
                  f"condition number {_fmt(point.condition_number)} (unit-length columns), rank {point.rank} "
                  f"of {len(point.names)}.")
    for text in point.null_space_text:
        console.print(f"Null direction: {text}")
    if result.sample is not None:
        s = result.sample
        q = s.condition_quantiles()
        console.print(f"Over {s.n_points} Sobol points ({int((~s.finite).sum())} overflowed): identified share "
                      + ", ".join(f"{n} {v['finite_points']:.0%}" for n, v in share.items())
                      + f"; condition number median {_fmt(q['q50'])}, 95% {_fmt(q['q95'])}; "
                      f"concentrating at {_fmt(result.share_concentrating())} of them.")
    if result.regime is not None:
        r = result.regime
        console.print(f"Delta Gini {r['delta_gini']:+.5f} (se {r['se']:.5f}); P(concentrating) "
                      f"{_fmt(r['probability_concentrating'])} (Monte Carlo se {_fmt(r['monte_carlo_se'])}, "
                      f"{r['finite_draws']} draws of theta ~ N(estimate, V) in the box; first order "
                      f"{_fmt(r['probability_normal'])}).")
