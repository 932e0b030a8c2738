"""The feedback Jacobian D = d market(choice(x))/dx, assembled in one pass (``jaxmodel.feedback``),
and the Newton solver that uses it.

D is checked against ``jax.jacfwd`` of the composition itself (one tangent per column, the
independent computation), away from the fixed point so that no term vanishes by accident.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmodel
from jaxmodel import education, feedback
from jaxmodel.market import economy
from jaxmodel.workers import workforce

SMALL = dict(n_agents=2_000, n_firms=20)


def _economy(params, settings, A, key=0):
    draws = jaxmodel.make_draws(jax.random.key(key), settings)
    return economy(params, workforce(params, draws, settings), draws.u_K, settings, jnp.asarray(A, settings.dtype))


@pytest.mark.parametrize("spec, changes", [
    ("additive", {}),
    ("partial_multiplicative", {"mu": 1.5, "psi": 1.2}),
    ("ces", {"rho": -0.5, "xi": 0.4}),
])
def test_the_assembled_jacobian_equals_jacfwd(spec, changes):
    settings = jaxmodel.Settings(spec=spec, **SMALL)
    params = jaxmodel.baseline().replace(**changes)
    for A in (0.0, 1.0):
        econ = _economy(params, settings, A)
        _, x, _ = education.solve_education(params, econ, settings)
        # A point 1% off the fixed point, different in every coordinate.
        x = x * (1.0 + 0.01 * jnp.sin(jnp.arange(x.shape[0]) + 1.0))

        def composed(z):
            return education.market_map(params, econ, education.choice(params, econ, z, settings), settings)

        g, D = jax.jit(lambda z: feedback.feedback_jacobian(params, econ, z, settings))(x)
        reference = jax.jit(jax.jacfwd(composed))(x)
        # Both are exact; they differ by the rounding of sums over 2 N worker-branches in another
        # order (entries are O(1-10), float64 rounding ~1e-16 per term): 1e-10 is far above that and
        # far below any missing or wrong term (which would be of the size of the entries).
        assert float(jnp.max(jnp.abs(reference))) > 0.1
        np.testing.assert_allclose(np.asarray(D), np.asarray(reference), rtol=0, atol=1e-10)
        np.testing.assert_allclose(np.asarray(g), np.asarray(composed(x)), rtol=0, atol=1e-12)


def test_newton_converges_in_few_passes_and_warm_starts_in_fewer():
    settings = jaxmodel.Settings(n_agents=20_000, n_firms=100, fp_solver="newton")
    draws = jaxmodel.make_draws(jax.random.key(5), settings)
    params = jaxmodel.baseline()
    newton = jaxmodel.moments(params, draws, settings)
    anderson = jaxmodel.moments(params, draws, settings.replace(fp_solver="anderson"))
    # Quadratic convergence: from P = 0.4 one plain step and a handful of Newton steps, where the
    # Anderson iteration takes 16-17 passes (both verified on P to fp_tol).
    for n_state, a_state in ((newton.before, anderson.before), (newton.after, anderson.after)):
        assert float(n_state["fp_residual"]) <= settings.fp_tol
        assert int(n_state["fp_iterations"]) <= 8 < int(a_state["fp_iterations"])
        assert int(n_state["fp_fallbacks"]) == 0
    near = params.replace(alpha=params.alpha * 1.01, sigma=params.sigma * 1.01, xi=params.xi * 1.01)
    warm = jaxmodel.moments(near, draws, settings, start=newton.aggregates)
    for state in (warm.before, warm.after):
        assert int(state["fp_iterations"]) <= 4
    # Same fixed point, so the same moments: see tests/model/test_fixed_point.py for the tolerance.
    np.testing.assert_allclose(newton.vector(), anderson.vector(), rtol=0, atol=1e-9)


def test_newton_safeguard_takes_over_where_newton_steps_fail():
    # tau = 1e-4 makes the college choice a step function: Newton steps overshoot, and the
    # safeguard replaces them by damped steps and counts them.
    settings = jaxmodel.Settings(n_agents=20_000, n_firms=100, fp_solver="newton", fp_max_iter=60)
    draws = jaxmodel.make_draws(jax.random.key(5), settings)
    m = jaxmodel.moments(jaxmodel.baseline().replace(tau=1e-4), draws, settings)
    assert max(int(m.before["fp_fallbacks"]), int(m.after["fp_fallbacks"])) > 0
    for state in (m.before, m.after):
        converged = float(state["fp_residual"]) <= settings.fp_tol
        assert converged or int(state["fp_iterations"]) == settings.fp_max_iter
