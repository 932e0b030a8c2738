"""The Andrews-Gentzkow-Shapiro sensitivity in standard errors: Lambda_pm se_m / se_p, computed once.

A pure NumPy function in the manner of ``estimation.inference`` (which it would join; it stands
apart so that the inference module and the results view can change independently). Every reader of
the scaled sensitivity (the terminal table, ``sensitivity.png``, ``sensitivity.tex`` and
``report.html``) gets it from here, through ``estimation.output.view``.
"""

from __future__ import annotations

import numpy as np


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
