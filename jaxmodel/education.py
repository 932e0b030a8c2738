"""Education (MODEL.md section 4): the college choice and its fixed point.

The agent compares the incomes it can foresee with and without college,
P_i = L((log W~_i1 - log W~_i0 - c_i) / tau), and the market that sets W~ depends on everybody's
P. The fixed point P = Gamma(P) is found by damped iteration P <- (1 - d) P + d Gamma(P) from
P = 0.4 until max |Gamma(P) - P| < tol (at most ``fp_max_iter`` iterations).

Derivatives (forward and reverse mode) come from the implicit function theorem through
``jax.lax.custom_root``: dP*/dtheta = (I - Gamma_P)^{-1} Gamma_theta. The (N, N) Jacobian Gamma_P
is never formed: its linear systems, and their transposes for reverse mode, are solved by the same
damped iteration, x <- x + d (J x - b) with J = Gamma_P - I, whose iteration matrix
(1 - d) I + d Gamma_P is that of the primal iteration, so it converges whenever the primal does.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmodel.market import Economy, clear_market, foreseen_incomes
from jaxmodel.settings import Settings

#: Starting value of every P_i (MODEL.md section 4).
P_START = 0.4


class FixedPointInfo(NamedTuple):
    """Diagnostics of the education fixed point."""

    iterations: jax.Array  # shape=(), float: iterations taken (a float: custom_root's aux must be)
    residual: jax.Array  # shape=(), float: max |Gamma(P) - P| at the returned P


def college_choice(params, econ: Economy, P: jax.Array, settings: Settings) -> jax.Array:
    """Gamma(P): the college probabilities implied by the market at probabilities P, (O, M)."""
    market = clear_market(params, econ, P, settings)
    income = foreseen_incomes(econ, market)
    gain = jnp.log(income[1] / income[0])  # one log per agent instead of two
    return jax.nn.sigmoid((gain - econ.cost) / params.tau)


def _damped_iteration(residual_fn, x0, b, damping: float, tol, max_iter: int):
    """Iterate x <- x + d (r(x) - b) until max |r(x) - b| <= tol; returns (x, iterations, residual)."""

    def cond(carry):
        _, it, res, _ = carry
        return (it < max_iter) & (res > tol)

    def body(carry):
        x, it, _, r = carry
        x = x + damping * r
        r = residual_fn(x) - b
        return x, it + 1, jnp.max(jnp.abs(r)), r

    r0 = residual_fn(x0) - b
    x, it, res, _ = jax.lax.while_loop(cond, body, (x0, jnp.int32(0), jnp.max(jnp.abs(r0)), r0))
    return x, it, res


def solve_education(params, econ: Economy, settings: Settings) -> tuple[jax.Array, FixedPointInfo]:
    """The fixed point P* = Gamma(P*), differentiable in every parameter ``Gamma`` closes over.

    Returns:
        P*: (O, M) college probabilities, and the iteration count and residual.
    """
    tol, damping, max_iter = settings.tol, settings.fp_damping, settings.fp_max_iter

    def excess(P):
        return college_choice(params, econ, P, settings) - P

    def solve(f, P0):
        zero = jnp.zeros_like(P0)
        P, it, res = _damped_iteration(f, P0, zero, damping, tol, max_iter)
        return P, FixedPointInfo(it.astype(P.dtype), res)

    def linear_solve(matvec, b):
        # Relative tolerance: the tangent system inherits the scale of its right-hand side.
        scale = jnp.maximum(jnp.max(jnp.abs(b)), jnp.finfo(b.dtype).tiny)
        x, _, _ = _damped_iteration(matvec, -b, b, damping, tol * scale, max_iter)
        return x

    def tangent_solve(g, y):
        return jax.lax.custom_linear_solve(g, y, solve=linear_solve, transpose_solve=linear_solve)

    P0 = jnp.full_like(econ.cost, P_START)
    return jax.lax.custom_root(excess, P0, solve, tangent_solve, has_aux=True)
