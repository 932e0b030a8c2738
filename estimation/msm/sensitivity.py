"""The sensitivity of the estimate to the targets, in their standard errors (MODEL.md section 7).

:func:`scaled_sensitivity` is Andrews-Gentzkow-Shapiro's Lambda scaled by the standard errors,
computed once: every reader of it (the terminal table, ``sensitivity.png``, ``sensitivity.tex`` and
``report.html``) gets it from here, through ``estimation.output.view``.

:func:`delta_gini_decomposition` says what pins the sign of Delta Gini. At the estimate
theta_hat the model implies Delta Gini = m6(theta_hat). Its gradient in the parameters is the last
row of G. The targets move the estimate by d theta_hat / d m_data = (G'WG)^{-1} G'W = -Lambda, so a
shift delta_i of target i moves the implied Delta Gini by s_i delta_i with
s = grad_theta m6 (-Lambda). The sign flips at first order when target i moves by -m6 / s_i, that
is by n_i = -m6 / (s_i se_i) of its standard errors.
"""

from __future__ import annotations

import math

import numpy as np

from jaxmodel import MOMENT_NAMES

GINI = MOMENT_NAMES.index("gini_change")


def scaled_sensitivity(lam: np.ndarray, target_se: np.ndarray, param_se: np.ndarray) -> np.ndarray:
    """Lambda scaled by the SEs: S_pm = Lambda_pm se_m / se_p, NaN where not finite: (k, m).

    .. math:: S_{pm} = \\Lambda_{pm} \\, \\mathrm{se}_m / \\mathrm{se}_p

    The first-order change in the estimate of parameter p, in its own standard errors, when target m
    moves by one of its standard errors. A parameter without a standard error (NaN or 0) has a row
    of NaN.

    Args:
        lam: (k, m) Lambda = -(G'WG)^-1 G'W (``inference.sensitivity_to_bias``).
        target_se: (m,) the targets' standard errors.
        param_se: (k,) the parameters' standard errors (NaN where withheld).

    Returns:
        (k, m) float64 array.
    """
    lam = np.asarray(lam, dtype=float)
    se_m = np.asarray(target_se, dtype=float)
    se_p = np.asarray(param_se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = lam * se_m[None, :] / se_p[:, None]
    values[~np.isfinite(values)] = np.nan
    return values


def delta_gini_decomposition(
    model_moments: np.ndarray,
    jac: np.ndarray,
    sensitivity: np.ndarray,
    target_se: np.ndarray,
    param_names: list[str],
    param_se: np.ndarray,
    targeted: np.ndarray | None = None,
) -> dict:
    """First-order decomposition of the model-implied Delta Gini.

    Args:
        model_moments: (6,) m(theta_hat).
        jac: (6, k) G.
        sensitivity: (k, 6) Lambda = -(G'WG)^{-1} G'W.
        target_se: (6,) standard errors of the targets.
        param_names: k names; param_se: (k,) standard errors of the estimates.
        targeted: (6,) bool, the targeted moments (default all). An untargeted moment has weight 0,
            so it does not move the estimate: its effect and share are 0 and it never flips the
            sign (se_to_flip_sign inf), whatever its SE (NaN where the targets file gives none).

    Returns:
        A dict: delta_gini, regime, gradient (per parameter, with the effect of a one-SE move),
        targets (per moment: d DeltaGini / d target, the effect of a one-SE move of the target,
        its share of the total, the SEs it would have to move to flip the sign, and whether it is
        targeted).
    """
    delta = float(model_moments[GINI])
    grad = jac[GINI]
    mask = np.ones(len(MOMENT_NAMES), bool) if targeted is None else np.asarray(targeted, bool)
    by_target = grad @ (-sensitivity)  # (6,)
    per_se = np.where(mask, by_target * target_se, 0.0)
    total = float(np.sum(np.abs(per_se))) or 1.0
    targets = []
    for i, name in enumerate(MOMENT_NAMES):
        s = float(by_target[i])
        flip = -delta / (s * target_se[i]) if mask[i] and abs(s) > 1e-12 else math.inf
        targets.append({
            "moment": name,
            "d_delta_gini_d_target": s,
            "effect_of_one_se": float(per_se[i]),
            "share_of_total_effect": float(abs(per_se[i]) / total),
            "se_to_flip_sign": float(flip),
            "shift_to_flip_sign": float(flip * target_se[i]) if math.isfinite(flip) else math.inf,
            "targeted": bool(mask[i]),
        })
    params = [
        {"parameter": n, "d_delta_gini_d_parameter": float(grad[j]),
         "effect_of_one_se": float(grad[j] * param_se[j])}
        for j, n in enumerate(param_names)
    ]
    return {
        "delta_gini": delta,
        "regime": "concentrating" if delta > 0 else "equalizing",
        "parameters": params,
        "targets": targets,
    }


def closest_flips(decomposition: dict, count: int = 2) -> list[dict]:
    """The ``count`` targeted moments whose smallest move (in SEs) flips the sign at first order."""
    # An untargeted moment never flips the sign (se_to_flip_sign inf: delta_gini_decomposition).
    finite = [t for t in decomposition["targets"] if math.isfinite(t["se_to_flip_sign"])]
    return sorted(finite, key=lambda t: abs(t["se_to_flip_sign"]))[:count]
