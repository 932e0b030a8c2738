"""The results folders of ``regimes``, ``oews`` and ``panel-power`` (CSV, PNG, JSON; atomic)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from estimation.output import figures
from estimation.output.html import build_report
from estimation.output.runfiles import RunFolder, atomic_write_bytes, atomic_write_json, to_jsonable, write_csv


def write_regimes(folder: RunFolder, study, params, settings, seed: int, origin: str, seconds: float) -> None:
    """boundary.csv, map_xi_gini_K.csv, map_eta1_xi.csv, regime_map.png, technology_map.png and
    regimes.json (the origin of the parameters, settings, seed and the boundary records)."""
    from estimation import regimes

    stage = folder.staging
    stage.mkdir(parents=True, exist_ok=True)
    xi, gini_K, eta1 = study.xi, study.gini_K, study.eta1
    records = [r for b in study.boundaries for r in b.records()]
    write_csv(pd.DataFrame(records), stage / "boundary.csv")
    g1, g2 = np.meshgrid(xi, gini_K, indexing="ij")
    write_csv(pd.DataFrame({"xi": g1.ravel(), "gini_K": g2.ravel(), "delta_gini": study.plane.ravel()}),
              stage / "map_xi_gini_K.csv")
    e1, x2 = np.meshgrid(eta1, xi, indexing="ij")
    write_csv(pd.DataFrame({"eta1": e1.ravel(), "xi": x2.ravel(), "delta_gini": study.technology.ravel()}),
              stage / "map_eta1_xi.csv")
    atomic_write_bytes(stage / "regime_map.png", figures.regime_map_figure(
        xi, gini_K, study.plane, study.boundaries, (float(params.xi), float(params.gini_K))))
    atomic_write_bytes(stage / "technology_map.png", figures.technology_map_figure(eta1, xi, study.technology))
    atomic_write_json(stage / "regimes.json", to_jsonable({
        "origin": origin, "seed": seed, "settings": dataclasses.asdict(settings),
        "params": {k: float(v) for k, v in params.to_dict().items()}, "structures": regimes.STRUCTURES,
        "boundary": records, "f_tol": regimes.F_TOL, "seconds": seconds,
    }))
    build_report(stage)
    folder.publish()


def write_oews(folder: RunFolder, study, years: tuple[int, int]) -> None:
    """regressions.csv, coverage.csv, occupations.csv, binned_*.png, model_demonstration.csv and
    report.json (files read, loader reports, harmonisation, coverage and regressions)."""
    from estimation.empirics import occupations

    first_year, second_year = years
    stage = folder.staging
    stage.mkdir(parents=True, exist_ok=True)
    write_csv(study.table, stage / "regressions.csv")
    write_csv(study.coverage, stage / "coverage.csv")
    write_csv(study.panel.join(study.grouped).join(study.changes.drop(columns=["weight", "major"])),
              stage / "occupations.csv", index=True)
    for outcome in ("d_log_median_wage", "d_log_p90_p10"):
        atomic_write_bytes(stage / f"binned_{outcome}.png", figures.binned_scatter_figure(
            study.changes, study.grouped, study.table, outcome,
            f"{occupations.OUTCOMES[outcome]}, {first_year}-{second_year}"))
    if study.demonstration is not None:
        rows = [{"pair": r["pair"], "regime": r["side"], "changes": str(r["changes"]),
                 **{f"model_{k}": r["moments"][k] for k in ("gini_change", "cv_change", "between_firm_share_change")},
                 **{f"{o}_coef": t["coef"] for o, t in r["regressions"].items()},
                 **{f"{o}_se": t["se"] for o, t in r["regressions"].items()}} for r in study.demonstration]
        write_csv(pd.DataFrame(rows), stage / "model_demonstration.csv")
    atomic_write_json(stage / "report.json", to_jsonable({
        "years": [first_year, second_year], "files": {str(y): str(study.files[y]) for y in years},
        "loader": [study.first.report, study.second.report], "harmonisation": study.grouping,
        "coverage": study.coverage.to_dict("records"), "regressions": study.table.to_dict("records"),
    }))
    build_report(stage)
    folder.publish()


def write_panel_power(folder: RunFolder, study, origin: str, reps: int) -> None:
    """power.csv, power.png and panel_power.json (design, power by size, n for 80% power and the
    rejection rate with no effect)."""
    from estimation.empirics import panel

    stage = folder.staging
    stage.mkdir(parents=True, exist_ok=True)
    sizes, curves = study.sizes, study.curves
    rows = [{"hypothesis": h, "n": n, "power": p} for h in panel.HYPOTHESES for n, p in zip(sizes, curves[h])]
    write_csv(pd.DataFrame(rows), stage / "power.csv")
    atomic_write_bytes(stage / "power.png", figures.power_figure(sizes, curves, study.needed))
    atomic_write_json(stage / "panel_power.json", to_jsonable({
        "origin": origin, "design": dataclasses.asdict(study.design), "reps": reps, "sizes": sizes,
        "power": {h: curves[h] for h in curves}, "n_for_80_percent": study.needed,
        "rejections_without_effect": {h: dict(zip(map(str, study.sizes_check), study.size[h])) for h in study.size},
    }))
    folder.publish()
