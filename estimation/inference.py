"""MSM inference as small pure functions of (G, W, Omega), in the manner of estimagic's msm_covs.

Shapes: m moments, k parameters. ``jac`` G = dm/dtheta is (m, k); ``weights`` W is (m, m),
symmetric positive definite; ``moments_cov`` Omega is (m, m), the covariance of the moment errors
(targets' sampling variance plus simulation noise). All arrays are NumPy float64.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from jax.scipy.special import gammaincc


def _bread(jac: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(G'WG)^{-1}: (k, k)."""
    return np.linalg.inv(jac.T @ weights @ jac)


def cov_robust(jac: np.ndarray, weights: np.ndarray, moments_cov: np.ndarray) -> np.ndarray:
    """Sandwich covariance V = (G'WG)^{-1} G'W Omega W G (G'WG)^{-1} of the estimates: (k, k)."""
    bread = _bread(jac, weights)
    meat = jac.T @ weights @ moments_cov @ weights @ jac
    return bread @ meat @ bread


def cov_optimal(jac: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(G'WG)^{-1}: the covariance when W = Omega^{-1} (optimal weights): (k, k)."""
    return _bread(jac, weights)


def sensitivity_to_bias(jac: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Andrews, Gentzkow & Shapiro (2017) Lambda = -(G'WG)^{-1} G'W: (k, m).

    A bias b in the moment conditions m(theta) - m_data moves the estimate by Lambda b; a shift
    delta of the targets m_data therefore moves it by -Lambda delta.
    """
    return -_bread(jac, weights) @ jac.T @ weights


def sensitivity_to_noise(lam: np.ndarray, moments_cov: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """AGS sensitivity to noise: Lambda_jk^2 Omega_kk / V_jj, the share of the variance of theta_j
    that noise in moment k would add (estimagic's calculate_actual_sensitivity_to_noise): (k, m)."""
    return lam**2 * np.diag(moments_cov)[None, :] / np.diag(cov)[:, None]


def sensitivity_to_removal(jac: np.ndarray, weights: np.ndarray, moments_cov: np.ndarray,
                           cov: np.ndarray) -> np.ndarray:
    """Relative rise of each parameter's variance when moment k is dropped (its row and column of
    W set to 0), as estimagic's calculate_actual_sensitivity_to_removal: (k, m)."""
    out = []
    for k in range(weights.shape[0]):
        dropped = weights.copy()
        dropped[k, :] = 0.0
        dropped[:, k] = 0.0
        gwg = jac.T @ dropped @ jac
        try:
            bread = np.linalg.inv(gwg)
        except np.linalg.LinAlgError:
            bread = np.linalg.pinv(gwg)
        v_k = bread @ (jac.T @ dropped @ moments_cov @ dropped @ jac) @ bread
        out.append((np.diag(v_k) - np.diag(cov)) / np.diag(cov))
    return np.array(out).T


def restricted_inverse(matrix: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The inverse of ``matrix`` restricted to the rows and columns where ``mask`` is True, with 0
    in the others (two-step optimal weights over the targeted moments): (m, m). With every entry
    of ``mask`` True it is ``np.linalg.inv(matrix)``."""
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros_like(np.asarray(matrix, dtype=np.float64))
    out[np.ix_(mask, mask)] = np.linalg.inv(np.asarray(matrix)[np.ix_(mask, mask)])
    return out


def standard_errors(cov: np.ndarray) -> np.ndarray:
    """sqrt(diag(V)): (k,)."""
    return np.sqrt(np.clip(np.diag(cov), 0.0, None))


def confidence_intervals(estimates: np.ndarray, se: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Normal (Wald) intervals theta +- z_{(1+level)/2} se: two (k,) arrays."""
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    return estimates - z * se, estimates + z * se


def bounded_intervals(estimates: np.ndarray, cov: np.ndarray, lower, upper, binding, level: float = 0.95) -> dict:
    """Intervals that respect the parameters' bounds (the delta method on unconstrained coordinates).

    Each parameter is mapped to an unconstrained coordinate u = g(theta): logit((theta - lo) /
    (hi - lo)) with both bounds, log(theta - lo) with a lower bound only, -log(hi - theta) with an
    upper bound only, theta itself with none. The delta method gives se_u = se / |dtheta/du|, and
    the interval u +- z se_u maps back through g^-1 into the bounds: asymmetric, never outside them.

    At a binding bound (``binding[j]`` "lower" or "upper") the estimator is not asymptotically
    normal (Andrews 1999: its limit is a normal projected on the cone of the parameter space), so
    no symmetric SE is given. The interval is one-sided: [lo, lo + z_{level} sigma] at a lower bound
    ([hi - z_{level} sigma, hi] at an upper one), with sigma the sandwich SE, which has asymptotic
    coverage ``level`` when the true value is on the bound.

    Args:
        estimates: (k,) theta_hat; cov: (k, k) sandwich covariance on the natural scale;
        lower, upper: (k,) bounds (+-inf where none); binding: k of None or a side as
            ``FreeParameters.binding`` gives it ("lower", "upper", "lower (search box)", ...).

    Returns:
        dict of (k,) arrays ``lower``, ``upper`` (the interval) and ``se`` (the natural-scale SE,
        NaN at a binding bound), and k strings ``method`` and ``note`` (why an SE is withheld).
    """
    theta = np.asarray(estimates, dtype=np.float64)
    sigma = standard_errors(np.asarray(cov, dtype=np.float64))
    z2 = NormalDist().inv_cdf(0.5 + level / 2.0)
    z1 = NormalDist().inv_cdf(level)
    k = theta.size
    out_lo, out_hi, se = np.full(k, np.nan), np.full(k, np.nan), sigma.copy()
    method, note = [""] * k, [""] * k
    for j in range(k):
        t, s, lo, hi = theta[j], sigma[j], float(lower[j]), float(upper[j])
        if not np.isfinite(s):
            method[j] = "none"
            continue
        side = (binding[j] or "").split(" ")[0]  # "lower", "upper" or "" ("lower (search box)" too)
        box = " of the search box (widen it with --bound)" if binding[j] and "search box" in binding[j] else ""
        if side in ("lower", "upper"):
            reach = f"bound + {z1:.3f} sigma]" if side == "lower" else f"bound - {z1:.3f} sigma, bound]"
            out_lo[j], out_hi[j] = (lo, min(lo + z1 * s, hi)) if side == "lower" else (max(hi - z1 * s, lo), hi)
            se[j], method[j] = np.nan, f"one-sided (at {side} bound)"
            note[j] = (f"at its {side} bound{box}: the estimator is not asymptotically normal there (Andrews 1999), "
                       f"so no SE; one-sided {level:.0%} interval [" + ("bound, " if side == "lower" else "") + reach)
            continue
        if np.isfinite(lo) and np.isfinite(hi):
            p = (t - lo) / (hi - lo)
            u, du = math.log(p / (1.0 - p)), s / ((t - lo) * (hi - t) / (hi - lo))
            back = [lo + (hi - lo) / (1.0 + math.exp(-x)) if x > -700 else lo for x in (u - z2 * du, u + z2 * du)]
            method[j] = "logit-scale delta method"
        elif np.isfinite(lo):
            u, du = math.log(t - lo), s / (t - lo)
            back = [lo + math.exp(min(x, 700.0)) for x in (u - z2 * du, u + z2 * du)]
            method[j] = "log-scale delta method"
        elif np.isfinite(hi):
            u, du = math.log(hi - t), s / (hi - t)
            back = sorted(hi - math.exp(min(x, 700.0)) for x in (u - z2 * du, u + z2 * du))
            method[j] = "log-scale delta method"
        else:
            back = [t - z2 * s, t + z2 * s]
            method[j] = "Wald"
        # The maps back lie inside the bounds; clipping only removes rounding (lo + (hi - lo) * 1
        # can exceed hi by an ulp).
        out_lo[j], out_hi[j] = min(max(back[0], lo), t), max(min(back[1], hi), t)
    return {"lower": out_lo, "upper": out_hi, "se": se, "method": method, "note": note}


#: The two forms of J (``j_test``'s "form"): under optimal weights, and under any weights.
J_HANSEN = "g' Sigma^-1 g"
J_GENERALISED = "g' S^+ g"


def j_statistic(errors: np.ndarray, moments_cov: np.ndarray, n_params: int) -> dict:
    """Hansen's J = g' Sigma^-1 g at the estimate, under optimal weights W = Sigma^-1 (:func:`j_test`
    without a Jacobian and weights): {"J", "df", "p_value"}."""
    out = j_test(errors, moments_cov, n_params)
    del out["form"]
    return out


def j_test(errors: np.ndarray, moments_cov: np.ndarray, n_params: int, jacobian: np.ndarray | None = None,
           weights: np.ndarray | None = None) -> dict:
    """Hansen's J at the estimate, valid under any weights (MODEL.md section 7).

    Without ``jacobian`` and ``weights`` (optimal weights W = Sigma^-1): J = g' Sigma^-1 g. Under
    other weights the errors at the estimate have asymptotic covariance
    S = (I - H) Sigma (I - H)' with H = G (G'WG)^+ G'W, of rank m - rank(G), and J = g' S^+ g is
    chi-squared with rank(S) degrees of freedom. S^+ is the Moore-Penrose inverse from the
    eigenvalues of S above 1e-10 times the largest eigenvalue of Sigma: S's nonzero eigenvalues are
    of the order of Sigma's, its null ones are rounding (about 1e-16 of Sigma's), so the cut is
    scale-free and never keeps rounding as a direction (which a cut relative to S's own largest
    eigenvalue would do when k = m and S is all rounding). Where the first-order condition
    G'Wg = 0 holds with W = Sigma^-1 the two forms agree. With no over-identifying restriction
    there is no test and the p-value is None.

    Args:
        errors: (m,) g = m(theta_hat) - m_data.
        moments_cov: (m, m) Sigma = Omega + Omega_sim.
        jacobian: (m, k) G = dm/dtheta at the estimate; weights: (m, m) W the estimate used.

    Returns:
        {"J", "df", "p_value", "form"}: form :data:`J_HANSEN` or :data:`J_GENERALISED`.
    """
    errors = np.asarray(errors, dtype=np.float64)
    if jacobian is None or weights is None:
        j = float(errors @ np.linalg.solve(moments_cov, errors))
        df, form = errors.size - n_params, J_HANSEN
    else:
        G, W = np.asarray(jacobian, float), np.asarray(weights, float)
        H = G @ np.linalg.pinv(G.T @ W @ G, hermitian=True) @ (G.T @ W)
        residual = np.eye(errors.size) - H
        S = residual @ moments_cov @ residual.T
        values, vectors = np.linalg.eigh((S + S.T) / 2.0)
        scale = float(np.linalg.eigvalsh((moments_cov + moments_cov.T) / 2.0).max())
        keep = values > 1e-10 * max(scale, 0.0)
        projected = vectors[:, keep].T @ errors
        j = float(np.sum(projected**2 / values[keep]))
        df, form = int(np.sum(keep)), J_GENERALISED
    p_value = float(gammaincc(df / 2.0, j / 2.0)) if df > 0 else None
    return {"J": j, "df": df, "p_value": p_value, "form": form}


def symmetric_sqrt(weights: np.ndarray) -> np.ndarray:
    """W^{1/2}, the symmetric square root of a positive semi-definite matrix: (m, m)."""
    values, vectors = np.linalg.eigh((weights + weights.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def identification(jac: np.ndarray, weights: np.ndarray, names: list[str], rel_tol: float = 1e-6,
                   weak_ratio: float = 1e-2) -> dict:
    """Local identification from the singular values of W^{1/2} G.

    The rank counts singular values above ``rel_tol`` times the largest; a direction whose singular
    value is below ``weak_ratio`` times the largest is weakly identified. Each weak direction is
    named as the parameter combination (right singular vector) that barely moves the criterion.

    Returns:
        dict with singular_values, condition_number, rank, n_params, identified (rank == k) and
        weak_directions: [{singular_value, combination: {name: loading}, text}].
    """
    scaled = symmetric_sqrt(weights) @ jac
    _, s, vt = np.linalg.svd(scaled, full_matrices=True)
    k = jac.shape[1]
    s_full = np.concatenate([s, np.zeros(max(0, k - s.size))])
    top = float(s_full.max()) if s_full.size else 0.0
    rank = int(np.sum(s_full > rel_tol * top)) if top > 0 else 0
    weak = []
    for idx in range(k):
        if s_full[idx] <= weak_ratio * top:
            vec = vt[idx]
            vec = vec * np.sign(vec[np.argmax(np.abs(vec))])
            loadings = {n: float(v) for n, v in zip(names, vec) if abs(v) >= 0.05}
            text = " ".join(f"{'+' if v >= 0 else '-'} {abs(v):.2f} {n}" for n, v in loadings.items()).lstrip("+ ")
            weak.append({"singular_value": float(s_full[idx]), "combination": loadings, "text": text})
    condition = math.inf if s_full.size == 0 or s_full.min() <= 0 else float(top / s_full.min())
    return {
        "singular_values": [float(x) for x in s_full],
        "condition_number": condition,
        "rank": rank,
        "n_params": k,
        "identified": rank == k,
        "weak_directions": weak,
    }
