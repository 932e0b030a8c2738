"""The education fixed point: the solver changes the path, never the answer.

MODEL.md section 4 defines the model by P* = Gamma(P*) to ``fp_tol`` and leaves the solver free.
These tests hold the Anderson solver (the default) to the reference damped iteration, warm starts
to cold ones, and show that ``fp_damping`` moves the path (iteration counts) but not the moments.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmodel
from jaxmodel import education
from jaxmodel.market import economy
from jaxmodel.workers import workforce

SETTINGS = jaxmodel.Settings(n_agents=20_000, n_firms=100)
# Moments are smooth functions of P*; both solvers stop with max |Gamma(P) - P| <= 1e-10, and the
# moments' sensitivity to P is O(1), so the moments agree to a few 1e-10: 1e-9 leaves a margin of
# about 3 and fails at any error in the fixed point itself (which would move them by > 1e-6).
MOMENT_TOL = 1e-9


@pytest.fixture(scope="module")
def draws():
    return jaxmodel.make_draws(jax.random.key(5), SETTINGS)


POINTS = [
    {},
    {"sigma": 0.7, "xi": 0.4},
    {"eta0": 0.0, "eta1": 1.0, "psi": 1.0, "gini_K": 0.8, "xi": 0.05},
    {"sigma": 1.0, "tau": 0.2, "sigma_eps": 1.0},
]


@pytest.mark.parametrize("changes", POINTS, ids=lambda c: ",".join(c) or "baseline")
@pytest.mark.parametrize("solver", ["anderson", "newton"])
def test_the_solvers_reach_the_damped_iterations_fixed_point(draws, changes, solver):
    params = jaxmodel.baseline().replace(**changes)
    damped = jaxmodel.moments(params, draws, SETTINGS.replace(fp_solver="damped"))
    anderson = jaxmodel.moments(params, draws, SETTINGS.replace(fp_solver=solver))
    np.testing.assert_allclose(anderson.vector(), damped.vector(), rtol=0, atol=MOMENT_TOL)
    for state_a, state_d in ((anderson.before, damped.before), (anderson.after, damped.after)):
        assert float(state_a["fp_residual"]) <= SETTINGS.fp_tol
        # Acceleration pays: fewer passes over the agents than MODEL.md's d = 0.5 iteration.
        assert int(state_a["fp_iterations"]) < int(state_d["fp_iterations"])


def test_the_probabilities_agree_to_the_tolerance(draws):
    params = jaxmodel.baseline()
    for A in (0.0, 1.0):
        p_a = jaxmodel.solve(params, draws, SETTINGS, A).P
        p_d = jaxmodel.solve(params, draws, SETTINGS.replace(fp_solver="damped"), A).P
        # Both within 1e-10 of Gamma's fixed point; the map contracts (|eigenvalues| < 0.4), so
        # the two solutions lie within (1e-10 + 1e-10) / (1 - 0.4) of each other.
        assert float(jnp.max(jnp.abs(p_a - p_d))) <= 4e-10


def test_warm_and_cold_starts_give_the_same_moments(draws):
    params = jaxmodel.baseline()
    cold = jaxmodel.moments(params, draws, SETTINGS)
    nearby = params.replace(alpha=params.alpha * 1.01, sigma=params.sigma * 1.01, xi=params.xi * 1.01)
    reference = jaxmodel.moments(nearby, draws, SETTINGS)
    warm = jaxmodel.moments(nearby, draws, SETTINGS, start=cold.aggregates)
    np.testing.assert_allclose(warm.vector(), reference.vector(), rtol=0, atol=MOMENT_TOL)
    # A warm start near the solution saves iterations.
    for state in ("before", "after"):
        assert int(getattr(warm, state)["fp_iterations"]) < int(getattr(reference, state)["fp_iterations"])
    # Starting at the solution itself: it is accepted at once (one verifying step).
    again = jaxmodel.moments(params, draws, SETTINGS, start=cold.aggregates)
    assert int(again.before["fp_iterations"]) <= 2 and int(again.after["fp_iterations"]) <= 2
    np.testing.assert_allclose(again.vector(), cold.vector(), rtol=0, atol=MOMENT_TOL)


def test_warm_start_carries_no_derivative(draws):
    params = jaxmodel.baseline()
    start = jaxmodel.moments(params, draws, SETTINGS).aggregates

    def gini(alpha, s):
        return jaxmodel.moments(params.replace(alpha=alpha), draws, SETTINGS, start=s).gini_change

    # One compiled gradient for both: the cold start is the start of NaN rows that moments(start=None)
    # uses (outcomes.cold), the warm one the fixed points at the baseline.
    grad = jax.jit(jax.grad(gini, argnums=(0, 1)))
    d_cold, _ = grad(0.6, jaxmodel.outcomes.cold(SETTINGS))
    d_warm, d_start = grad(0.6, start)
    # Implicit-function derivatives do not depend on where the solver started: both use D at an
    # x* within fp_tol of the fixed point, so they agree to about fp_tol relative.
    assert float(d_warm) == pytest.approx(float(d_cold), rel=1e-7, abs=1e-12)
    assert float(jnp.max(jnp.abs(d_start))) == 0.0


def test_damping_changes_the_path_not_the_answer(draws):
    params = jaxmodel.baseline()
    reference = SETTINGS.replace(fp_solver="damped")
    slow = jaxmodel.moments(params, draws, reference.replace(fp_damping=0.3))
    fast = jaxmodel.moments(params, draws, reference.replace(fp_damping=0.9))
    assert int(slow.after["fp_iterations"]) > int(fast.after["fp_iterations"]) + 10
    np.testing.assert_allclose(slow.vector(), fast.vector(), rtol=0, atol=MOMENT_TOL)


def test_the_safeguard_takes_over_where_acceleration_stalls(draws):
    # tau = 1e-4 makes the college choice a step function: no method converges, and the Anderson
    # steps stop reducing the residual, so the solver falls back to damped steps and says so.
    m = jaxmodel.moments(jaxmodel.baseline().replace(tau=1e-4), draws, SETTINGS)
    for state in (m.before, m.after):
        assert int(state["fp_fallbacks"]) > 0
        # Either the safeguarded iteration got there (seen before AI: 148 iterations, 57 of them
        # damped) or it reports failure with its residual after fp_max_iter iterations (after AI).
        converged = float(state["fp_residual"]) <= SETTINGS.fp_tol
        assert converged or int(state["fp_iterations"]) == SETTINGS.fp_max_iter
    assert float(m.after["fp_residual"]) > 1e3 * SETTINGS.fp_tol
    # At the baseline acceleration works and the safeguard is not needed more than rarely.
    ok = jaxmodel.moments(jaxmodel.baseline(), draws, SETTINGS)
    assert int(ok.before["fp_fallbacks"]) <= 2 and int(ok.after["fp_fallbacks"]) <= 2


def test_the_solver_works_in_the_space_of_aggregates(draws):
    """Gamma = choice o market: the aggregates x* reproduce P* exactly, and are a fixed point."""
    params = jaxmodel.baseline()
    workers = workforce(params, draws, SETTINGS)
    econ = economy(params, workers, draws.u_K, SETTINGS, jnp.asarray(1.0))
    P, x, info = education.solve_education(params, econ, SETTINGS)
    assert x.shape == (education.n_aggregates(SETTINGS),)
    np.testing.assert_array_equal(education.choice(params, econ, x, SETTINGS), P)
    gamma = education.college_choice(params, econ, P, SETTINGS)
    assert float(jnp.max(jnp.abs(gamma - P))) == pytest.approx(float(info.residual), rel=1e-12)
    assert float(info.residual) <= SETTINGS.fp_tol


def test_the_assignment_is_sorted_once_and_changes_nothing(draws):
    """Occupations and firms depend on the draws and rho_occ, rho_firm only: computed once
    (``jaxmodel.assign``), they give bit-identical moments and leave the per-evaluation program with
    the Gini's sorts alone."""
    from jaxmodel.outcomes import cold, moments_at

    params = jaxmodel.baseline()
    assigned = jaxmodel.assign(params, draws, SETTINGS)
    start = cold(SETTINGS)
    inside = moments_at(params, draws, SETTINGS, start)
    once = moments_at(params, draws, SETTINGS, start, assigned)
    np.testing.assert_array_equal(np.asarray(once.vector()), np.asarray(inside.vector()))

    def agent_sorts(*extra):
        """Sorts of N-vectors in the traced program (the Gini sorts 2N + F incomes, so only the
        assignment's sorts have length N)."""
        text = str(jax.make_jaxpr(lambda p: moments_at(p, draws, SETTINGS, start, *extra).vector())(params))
        return len(re.findall(rf"\[{SETTINGS.n_agents}\] = sort\[", text))

    assert agent_sorts() == 2 and agent_sorts(assigned) == 0
