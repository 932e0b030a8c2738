"""Employer screening (MODEL.md section 4): projections on the work-sample signal and the credential.

Arrays of worker-branches have shape (2, O, M): branch e in {0, 1} first, then occupation o and
the M = N/O agents of that occupation. Weights are the branch probabilities w_i0 = 1 - P_i and
w_i1 = P_i. Regressions run within each occupation on the regressors [1, s - s_ref_o, e]; the
fixed centre s_ref_o only improves conditioning and leaves fitted values unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmodel.aggregation import occupation_sums

# Ridge on the credential column, relative to the occupation's weight: 1e-12 moves a coefficient
# by about 1e-12 of its size when the credential varies in the occupation, and keeps the normal
# equations solvable when nobody (or everybody) in it is predicted to go to college. There the
# credential coefficient is shrunk to 0 instead of being undefined: an employer who never sees
# both values of the credential in an occupation pays nothing for it (the wage projection), and
# the occupation is left out of credential reliance (see :func:`credential_support`).
_RIDGE = 1e-12

#: Credential reliance needs both values of the credential in an occupation. An occupation enters
#: R in full when at least 2 x CREDENTIAL_MIN_COUNT of its agents are expected to hold each value
#: (sum_i P_i and sum_i (1 - P_i) over its agents), not at all below CREDENTIAL_MIN_COUNT, and
#: linearly in between, so that R stays continuous in the parameters.
CREDENTIAL_MIN_COUNT = 5.0


def credential(dtype) -> jax.Array:
    """e = 0, 1 on the branch axis: (2, 1, 1)."""
    return jnp.array([0.0, 1.0], dtype=dtype)[:, None, None]


def projection_terms(y: jax.Array, s: jax.Array, w: jax.Array) -> tuple[jax.Array, ...]:
    """The eight (2, O, M) terms whose occupation sums are the normal equations of y on [1, s, e]:
    w, w s, w e, w s^2, w s e, w y, w y s, w y e (e^2 = e)."""
    e = credential(w.dtype)
    we, ws, wy = w * e, w * s, w * y
    return w, ws, we, ws * s, ws * e, wy, wy * s, wy * e


def projection_coef(sums) -> jax.Array:
    """b_o = (X_o' W_o X_o)^{-1} X_o' W_o y_o from the occupation sums of :func:`projection_terms`.

    Args:
        sums: eight (O,) arrays (or one (8, O) array) in the order of :func:`projection_terms`.

    Returns:
        (O, 3) coefficients on [1, s, e].
    """
    sw, s_s, s_e, s_ss, s_se, s_y, s_sy, s_ey = sums
    xtx = jnp.stack(
        [
            jnp.stack([sw, s_s, s_e], -1),
            jnp.stack([s_s, s_ss, s_se], -1),
            jnp.stack([s_e, s_se, s_e + _RIDGE * sw], -1),
        ],
        -2,
    )
    xty = jnp.stack([s_y, s_sy, s_ey], -1)
    return jnp.linalg.solve(xtx, xty[..., None])[..., 0]


def weighted_projection(y: jax.Array, s: jax.Array, w: jax.Array) -> jax.Array:
    """Weighted least squares of y on [1, s, e] within each occupation.

    b_o = (X_o' W_o X_o)^{-1} X_o' W_o y_o over the occupation's worker-branches.

    Args:
        y: (2, O, M) outcome; s: (2, O, M) centred signal; w: (2, O, M) weights.

    Returns:
        (O, 3) coefficients on [1, s, e].
    """
    return projection_coef(occupation_sums(*projection_terms(y, s, w)))


def fitted(b: jax.Array, s: jax.Array) -> jax.Array:
    """b_o0 + b_o1 s + b_o2 e: (2, O, M) from (O, 3) coefficients and (2, O, M) regressor s."""
    e = credential(s.dtype)
    return b[None, :, 0:1] + b[None, :, 1:2] * s + b[None, :, 2:3] * e


def credential_support(w: jax.Array) -> jax.Array:
    """How far each occupation's credential coefficient is identified: g_o in [0, 1].

    With n1_o = sum_i P_i (expected college graduates in occupation o) and n0_o = sum_i (1 - P_i),
    g_o = clip(min(n0_o, n1_o) / CREDENTIAL_MIN_COUNT - 1, 0, 1). Where (almost) nobody or
    (almost) everybody in an occupation is predicted to go to college, the credential is (nearly)
    collinear with the intercept and b^D_o says nothing about the credential; its value there is
    set by the ridge, not by the data, so the occupation gets g_o = 0.

    Args:
        w: (2, O, M) branch weights (w[0] = 1 - P, w[1] = P).

    Returns:
        (O,) weights in [0, 1].
    """
    n0, n1 = occupation_sums(w[0:1], w[1:2])
    return jnp.clip(jnp.minimum(n0, n1) / CREDENTIAL_MIN_COUNT - 1.0, 0.0, 1.0)


def credential_reliance(abar: jax.Array, support: jax.Array, coef: jax.Array) -> jax.Array:
    """R = sum_o abar_o g_o b^D_o / sum_o abar_o g_o (MODEL.md section 5, over identified occupations).

    MODEL.md's R = sum_o abar_o b^D_o / sum_o abar_o, with each occupation's weight abar_o
    multiplied by its support g_o (:func:`credential_support`); equal to MODEL.md's R whenever every
    occupation has both credential values (g_o = 1). R = 0 when no occupation has both.

    Args:
        abar: (O,) exposure weights; support: (O,) g_o; coef: (O,) b^D_o.
    """
    weight = abar * support
    total = jnp.sum(weight)
    safe = jnp.where(total > 0, total, 1.0)
    return jnp.where(total > 0, jnp.sum(weight * coef) / safe, 0.0)


def diagnostic_variance(s: jax.Array, log_h: jax.Array, w: jax.Array) -> jax.Array:
    """V_D per occupation: the share of Var(s) due to log h, Corr_w(s, log h)^2.

    This is the R^2 of the weighted projection of the signal on log human capital within the
    occupation: the part of the signal's variance that is diagnostic of ability.

    Args:
        s, log_h, w: (2, O, M).

    Returns:
        (O,) values in [0, 1].
    """
    sw, s_s, s_h, s_ss, s_sh, s_hh = occupation_sums(w, w * s, w * log_h, w * s * s, w * s * log_h, w * log_h * log_h)
    cov = s_sh / sw - (s_s / sw) * (s_h / sw)
    var_s = s_ss / sw - (s_s / sw) ** 2
    var_h = s_hh / sw - (s_h / sw) ** 2
    return cov**2 / (var_s * var_h)
