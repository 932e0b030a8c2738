"""Occupation-level regressions of wage and dispersion changes on AI exposure (MODEL.md section 9).

For harmonised occupations o observed in two years, each outcome change y_o is regressed on a
standardised exposure x_o (mean 0 and standard deviation 1 under the employment weights):

    y_o = a + b x_o (+ major-group fixed effects) + e_o,

by weighted least squares with first-year employment as weights and heteroskedasticity-robust
(HC1) standard errors (statsmodels). Outcomes: the change in log median and log mean annual wage,
in the within-occupation log(p90/p10), and in the employment share (percentage points).
Occupations whose outcome is not defined (a top-coded or unavailable wage) or whose exposure is
missing are dropped, and the counts are reported.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

OUTCOMES: dict[str, str] = {
    "d_log_median_wage": "change in log median annual wage",
    "d_log_mean_wage": "change in log mean annual wage",
    "d_log_p90_p10": "change in within-occupation log(p90/p10)",
    "d_employment_share_pp": "change in employment share (percentage points)",
}


def outcome_changes(panel: pd.DataFrame, first: int, second: int) -> pd.DataFrame:
    """The four outcome changes from ``first`` to ``second`` for every occupation of the panel."""
    def col(name, year):
        return panel[f"{name}_{year}"].astype(float)

    with np.errstate(divide="ignore", invalid="ignore"):
        out = pd.DataFrame(index=panel.index)
        out["d_log_median_wage"] = np.log(col("a_median", second)) - np.log(col("a_median", first))
        out["d_log_mean_wage"] = np.log(col("a_mean", second)) - np.log(col("a_mean", first))
        out["d_log_p90_p10"] = (np.log(col("a_pct90", second) / col("a_pct10", second))
                                - np.log(col("a_pct90", first) / col("a_pct10", first)))
        share_a = col("tot_emp", first) / col("tot_emp", first).sum()
        share_b = col("tot_emp", second) / col("tot_emp", second).sum()
        out["d_employment_share_pp"] = 100.0 * (share_b - share_a)
    out["weight"] = col("tot_emp", first)
    out["major"] = panel["major"]
    return out.replace([np.inf, -np.inf], np.nan)


def standardise(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(x - mean_w(x)) / sd_w(x) with weights w."""
    mean = np.sum(w * x) / np.sum(w)
    sd = np.sqrt(np.sum(w * (x - mean) ** 2) / np.sum(w))
    return (x - mean) / sd


def weighted_least_squares(y: np.ndarray, X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WLS coefficients and their HC1 covariance, written out directly (the tests' reference).

    b = (X'WX)^{-1} X'Wy; V = n/(n-k) (X'WX)^{-1} X'W diag(e^2) W X (X'WX)^{-1} with e = y - Xb.
    """
    xtwx = X.T @ (w[:, None] * X)
    b = np.linalg.solve(xtwx, X.T @ (w * y))
    e = y - X @ b
    n, k = X.shape
    meat = (X * ((w * e) ** 2)[:, None]).T @ X
    bread = np.linalg.inv(xtwx)
    return b, n / (n - k) * bread @ meat @ bread


def regress(changes: pd.DataFrame, exposure: pd.Series, outcome: str, fixed_effects: bool = False) -> dict:
    """One regression of ``outcome`` on standardised ``exposure`` (statsmodels WLS, HC1)."""
    import statsmodels.api as sm

    data = changes[[outcome, "weight", "major"]].join(exposure.rename("x"))
    n_all = len(data)
    missing_x = int(data["x"].isna().sum())
    missing_y = int(data[outcome].isna().sum())
    data = data.dropna(subset=["x", outcome])
    data = data[data["weight"] > 0]
    w = data["weight"].to_numpy(float)
    x = standardise(data["x"].to_numpy(float), w)
    X = pd.DataFrame({"const": 1.0, "exposure": x}, index=data.index)
    if fixed_effects:
        dummies = pd.get_dummies(data["major"], prefix="major", drop_first=True, dtype=float)
        X = pd.concat([X, dummies], axis=1)
    fit = sm.WLS(data[outcome].to_numpy(float), X.to_numpy(float), weights=w).fit(cov_type="HC1")
    j = list(X.columns).index("exposure")
    return {
        "measure": exposure.name, "outcome": outcome, "fixed_effects": fixed_effects,
        "coef": float(fit.params[j]), "se": float(fit.bse[j]), "t": float(fit.tvalues[j]),
        "p_value": float(fit.pvalues[j]), "n": int(len(data)), "r2": float(fit.rsquared),
        "dropped_missing_exposure": missing_x, "dropped_missing_outcome": missing_y, "occupations": n_all,
    }


def regression_table(changes: pd.DataFrame, grouped: pd.DataFrame, fixed_effects: bool = False) -> pd.DataFrame:
    """Every measure x outcome regression."""
    rows = [regress(changes, grouped[m], o, fixed_effects) for m in grouped.columns for o in OUTCOMES]
    return pd.DataFrame(rows)


def binned(changes: pd.DataFrame, exposure: pd.Series, outcome: str, bins: int = 20) -> pd.DataFrame:
    """Employment-weighted means of standardised exposure and the outcome in ``bins`` quantile bins."""
    data = changes[[outcome, "weight"]].join(exposure.rename("x")).dropna()
    data = data[data["weight"] > 0]
    w = data["weight"].to_numpy(float)
    data = data.assign(x=standardise(data["x"].to_numpy(float), w)).sort_values("x")
    cum = np.cumsum(data["weight"].to_numpy(float))
    data["bin"] = np.minimum((cum / cum[-1] * bins).astype(int), bins - 1)
    g = data.groupby("bin")
    return pd.DataFrame({
        "x": g.apply(lambda d: np.average(d["x"], weights=d["weight"])),
        "y": g.apply(lambda d: np.average(d[outcome], weights=d["weight"])),
        "employment": g["weight"].sum(),
    })


# ---------------------------------------------------------------------------------------------
# The demonstration: the same regressions on occupations simulated from the model

#: Pairs of configurations on either side of the boundary that share the technology of the tasks
#: and the exposure pattern: the regime is set by rent sharing (xi) or by the proprietary share of AI.
CONFIGURATIONS: dict[str, dict[str, dict[str, float]]] = {
    "rent sharing": {"equalizing": {"xi": 0.4}, "concentrating": {"xi": 0.0}},
    "technology structure": {"equalizing": {"eta1": 0.0}, "concentrating": {"eta1": 1.5}},
}


def _weighted_quantiles(x: np.ndarray, w: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    order = np.argsort(x)
    x, w = x[order], w[order]
    cum = (np.cumsum(w) - 0.5 * w) / np.sum(w)
    return np.interp(qs, cum, x)


def simulate_occupations(params, settings, key) -> pd.DataFrame:
    """Occupation aggregates of the model before and after AI, as OEWS would publish them.

    For each occupation: employment, the mean and the 10th, 50th and 90th percentiles of worker income
    over its worker-branches (weights w_ie), and its exposure abar_o = sum_k omega_ok a_k.
    """
    import jaxmodel
    from jaxmodel import tasks

    draws = jaxmodel.make_draws(key, settings)
    states = {year: jaxmodel.solve(params, draws, settings, A) for year, A in ((0, 0.0), (1, float(params.A1)))}
    _, a, omega = map(np.asarray, tasks.task_structure(params, settings.n_tasks, settings.n_occupations))
    rows = []
    for o in range(settings.n_occupations):
        row = {"occupation": f"model-{o + 1:02d}", "exposure": float(omega[o] @ a), "major": "model"}
        for year, state in states.items():
            P = np.asarray(state.P[o])
            income = np.asarray(state.income[:, o, :]).ravel()
            w = np.concatenate([1.0 - P, P])
            p10, p50, p90 = _weighted_quantiles(income, w, (0.1, 0.5, 0.9))
            row.update({f"tot_emp_{year}": float(P.size), f"a_mean_{year}": float(np.average(income, weights=w)),
                        f"a_pct10_{year}": p10, f"a_median_{year}": p50, f"a_pct90_{year}": p90})
        rows.append(row)
    return pd.DataFrame(rows).set_index("occupation")


def demonstration(base, settings, key, pairs: list[str] | None = None) -> list[dict]:
    """Occupation-level regressions on model occupations in configurations of opposite regimes,
    beside the task-level moments that tell the regimes apart.

    Returns:
        one record per (pair, side): changes, moments (dict), regressions (outcome -> dict), occupations.
    """
    import jaxmodel

    records = []
    draws = jaxmodel.make_draws(key, settings)
    for pair in pairs or list(CONFIGURATIONS):
        for side, changes in CONFIGURATIONS[pair].items():
            params = base.replace(**changes)
            occ = simulate_occupations(params, settings, key)
            deltas = outcome_changes(occ, 0, 1)
            table = {o: regress(deltas, occ["exposure"].rename("model exposure"), o)
                     for o in OUTCOMES if o != "d_employment_share_pp"}
            moments = jaxmodel.moments(params, draws, settings).to_dict()
            records.append({"pair": pair, "side": side, "changes": changes, "moments": moments,
                            "regressions": table, "occupations": occ})
    return records


@dataclasses.dataclass(frozen=True)
class OccupationStudy:
    """What ``levelfield oews`` computes from two OEWS years and the exposure measures.

    Attributes:
        files: {year: path}; first, second: the years read (``oews.OewsYear``, with loader reports);
        panel: harmonised occupations; grouping: the harmonisation report; grouped: exposure by
        harmonised occupation; changes: outcome changes; table: the regressions; coverage: the
        measures' coverage; demonstration: the same regressions on simulated occupations, or None.
    """

    files: dict
    first: object
    second: object
    panel: pd.DataFrame
    grouping: dict
    grouped: pd.DataFrame
    changes: pd.DataFrame
    table: pd.DataFrame
    coverage: pd.DataFrame
    demonstration: list | None


def study(files: dict, first, second, panel: pd.DataFrame, grouping: dict, measures: pd.DataFrame,
          years: tuple[int, int], fixed_effects: bool) -> OccupationStudy:
    """Employment-weighted regressions of each outcome change on each standardised exposure measure
    (and with major-group fixed effects when asked), with the measures' coverage."""
    from estimation.empirics import exposure

    grouped = exposure.to_groups(measures, panel, second)
    changes = outcome_changes(panel, *years)
    table = regression_table(changes, grouped, fixed_effects=False)
    if fixed_effects:
        table = pd.concat([table, regression_table(changes, grouped, fixed_effects=True)])
    cover = exposure.coverage(grouped, panel, list(years))
    return OccupationStudy(files, first, second, panel, grouping, grouped, changes, table, cover, None)
