"""The tables of an OEWS folder's report.html, prepared from its view (the template lays them out).

Tables ``T_summary``, ``T_regressions_<fe>`` (coefficient (se) by measure and outcome; fe = 0
without, 1 with major-group fixed effects), ``T_regressions_full``, ``T_coverage``,
``T_model_demonstration`` (when present); figures ``binned_*.png``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from estimation.output import sections
from estimation.output.html_tables import DASH, fmt_int, fmt_p_value, table
from estimation.output.numbers import as_float
from estimation.output.view import Oews

OUTCOMES = {"d_log_median_wage": "Δ log median wage", "d_log_mean_wage": "Δ log mean wage",
            "d_log_p90_p10": "Δ log(p90/p10)", "d_employment_share_pp": "Δ employment share (pp)"}


def binned_figures(figures) -> list[str]:
    """The binned scatters among the folder's PNGs."""
    return [name for name in figures if name.startswith("binned_")]


def _summary(view: Oews):
    items = [("years", " to ".join(map(str, view.years))),
             ("OEWS files", "; ".join(Path(str(v)).name for v in view.files.values()))]
    harm = view.harmonisation
    if harm:
        unmatched = harm.get("unmatched") or {}
        items.append(("harmonised occupations",
                      f"{harm.get('occupations')} ({harm.get('common_codes')} identical codes, "
                      f"{len(harm.get('harmonised_groups') or [])} groups of hybrid or split codes; unmatched "
                      f"{len(unmatched.get('first') or [])} and {len(unmatched.get('second') or [])})"))
    for rep in view.loader:
        specials = sum(sum(v.values()) for v in (rep.get("special_cells") or {}).values())
        items.append((f"file of {rep.get('year')}", f"{fmt_int(rep.get('rows'))} rows, "
                                                    f"{fmt_int(rep.get('detailed_kept'))} detailed occupations "
                                                    f"kept, {specials} special cells (#, *, **)"))
    return table(pd.DataFrame(items, columns=["item", "value"]), "summary", text=("item", "value"))


def _cell(hit: pd.DataFrame) -> str:
    """Coefficient with stars and (se) of one regression; a dash where there is none."""
    if hit.empty:
        return DASH
    h = hit.iloc[0]
    p = as_float(h["p_value"])
    stars = "**" if p < 0.01 else ("*" if p < 0.05 else "")
    return f"{as_float(h['coef']):+.4f}{stars} ({as_float(h['se']):.4f})"


def _regressions(view: Oews) -> list:
    reg, years, out = view.regressions, view.years, []
    outcomes = list(dict.fromkeys(reg["outcome"]))
    measures = list(dict.fromkeys(reg["measure"]))
    effects = reg["fixed_effects"].astype(str).str.lower()
    for fe in sorted(effects.unique()):
        part = reg[effects == fe]
        rows = [{"measure": m, **{OUTCOMES.get(o, o): _cell(part[(part["measure"] == m) & (part["outcome"] == o)])
                                  for o in outcomes}} for m in measures]
        with_fe = fe == "true"
        out.append(table(pd.DataFrame(rows), f"regressions_{int(with_fe)}", text=("measure",),
                         caption=("With major-group fixed effects" if with_fe else "Without fixed effects")
                         + f": coefficient (HC1 se), {'-'.join(map(str, years))}"))
    return out


def _coverage(view: Oews):
    cover, rows = view.coverage, []
    for m in dict.fromkeys(cover["measure"]):
        row = {"measure": m}
        for r in cover[cover["measure"] == m].to_dict("records"):
            row[str(r["year"])] = (f"{fmt_int(r['occupations'])}/{fmt_int(r['of'])} "
                                   f"({100 * as_float(r['employment_share']):.1f}% of employment)")
        rows.append(row)
    return table(pd.DataFrame(rows), "coverage", text=("measure",))


def page_context(view: Oews, figures) -> dict:
    """What ``oews.html.j2`` renders: ``sections``, the tables, the binned scatters and the subtitle."""
    reg, demo = view.regressions, view.demonstration
    context = {"sections": sections.oews_sections(demo is not None), "summary": _summary(view),
               "regressions": _regressions(view), "coverage": _coverage(view), "binned": binned_figures(figures),
               "regressions_full": table(reg, "regressions_full", formats={"p_value": fmt_p_value, "n": fmt_int},
                                         text=("measure", "outcome", "fixed_effects")),
               "subtitle": f"{len(dict.fromkeys(reg['measure']))} exposure measures, "
                           f"{len(dict.fromkeys(reg['outcome']))} outcomes"}
    if demo is not None:
        context["model_demonstration"] = table(demo, "model_demonstration",
                                               text=tuple(c for c in ("pair", "regime", "changes") if c in demo))
    return context
