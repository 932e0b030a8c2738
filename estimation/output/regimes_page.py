"""The tables of a regimes folder's report.html, prepared from its view (the template lays them out).

Tables ``T_summary``, ``T_boundary_<k>`` (one per AI structure, k = 0, 1, ...), ``T_map_xi_gini_K``
and ``T_map_eta1_xi`` (the maps' grids, when their CSVs are present); figures ``regime_map.png`` and
``technology_map.png``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from estimation.output import sections
from estimation.output.html_tables import DASH, fmt, fmt_int, gradient, table
from estimation.output.numbers import as_float
from estimation.output.view import Regimes

#: The PNGs the regimes sections show (any other goes to "Other figures").
FIGURES = ("regime_map.png", "technology_map.png")

#: The maps' grids: the CSV's name -> (its row variable, its column variable).
MAPS = {"map_xi_gini_K": ("xi", "gini_K"), "map_eta1_xi": ("eta1", "xi")}


def _summary(view: Regimes):
    settings, params = view.settings, view.params
    frame = pd.DataFrame([
        ("parameters", view.origin),
        ("simulated agents N", f"{fmt_int(settings.get('n_agents'))} ({fmt_int(settings.get('n_firms'))} firms, "
                               f"{fmt_int(settings.get('n_occupations'))} occupations)"),
        ("spec, precision", f"{settings.get('spec', '')}, {settings.get('precision', '')}"),
        ("seed", view.seed),
        ("AI structures", "; ".join(f"{k}: eta0={v.get('eta0')}, eta1={v.get('eta1')}"
                                    for k, v in view.structures.items())),
        ("at the parameters", ", ".join(f"{k}={fmt(params[k])}" for k in ("xi", "gini_K", "eta0", "eta1", "psi")
                                        if k in params)),
        ("wall time", f"{view.seconds:.1f} s" if view.seconds is not None else DASH),
    ], columns=["item", "value"])
    return table(frame, "summary", text=("item", "value"))


def _side(r: dict) -> str:
    status = str(r.get("status", ""))
    if status == "converged":
        return "Gini(K) > Gini(K)*" if r.get("concentrating_side") == "above" else "Gini(K) < Gini(K)*"
    return ("always" if "> 0" in status else "never") + " (no crossing)"


def _boundaries(view: Regimes) -> list:
    out = []
    for k, (name, part) in enumerate(view.boundary.groupby("structure", sort=False)):
        rows = [{"xi": as_float(r.get("xi")), "Gini(K)*": as_float(r.get("gini_K")),
                 "|Delta Gini| at Gini(K)*": abs(as_float(r.get("delta_gini_residual"))),
                 "slope dGini(K)*/dxi": as_float(r.get("slope_dginiK_dxi")),
                 "iterations": r.get("iterations"), "concentrating when": _side(r),
                 "status": str(r.get("status", ""))} for r in part.to_dict("records")]
        first = part.iloc[0]
        out.append(table(pd.DataFrame(rows), f"boundary_{k}", formats={"iterations": fmt_int},
                         text=("concentrating when",), small=("status",),
                         caption=f"{name} AI (eta0 = {as_float(first.get('eta0')):g}, "
                                 f"eta1 = {as_float(first.get('eta1')):g})"))
    return out


def _grids(view: Regimes) -> list:
    """(CSV name, row variable, column variable, table) of each map grid present."""
    out = []
    for name, (row, col) in MAPS.items():
        if name not in view.maps:
            continue
        grid = view.maps[name].pivot(index=row, columns=col, values="delta_gini")
        limit = float(np.nanmax(np.abs(grid.to_numpy()))) if grid.size else 1.0
        grid.columns = [f"{col}={fmt(c, 3)}" for c in grid.columns]
        grid.insert(0, row, grid.index)
        numeric = list(grid.columns[1:])
        out.append((name, row, col, table(grid, name, formats={row: lambda v: fmt(v, 3)},
                                          style=gradient(numeric, limit or 1.0))))
    return out


def page_context(view: Regimes, figures) -> dict:
    """What ``regimes.html.j2`` renders: ``sections``, the tables and the subtitle."""
    boundary = view.boundary
    return {"sections": list(sections.REGIMES), "summary": _summary(view), "boundaries": _boundaries(view),
            "grids": _grids(view),
            "subtitle": f"{boundary['structure'].nunique()} AI structures, {boundary['xi'].nunique()} values of xi"}
