"""The bounded Levenberg-Marquardt transformation (``estimation.msm.lm``) on small problems with
known answers: its box-constrained step against scipy's exact BVLS, and whole solves through
optax's loop (``init``, ``update``, ``apply_updates``) with and without a binding bound."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import lsq_linear

from estimation.msm import lm
from estimation.msm.status import Status

jax.config.update("jax_enable_x64", True)


def _bvls(H, g, lo, hi):
    """argmin g'd + d'Hd/2 in [lo, hi] by scipy's BVLS, as |L'd + L^-1 g|^2 with H = L L'."""
    L = np.linalg.cholesky(H)
    return lsq_linear(L.T, -np.linalg.solve(L, g), bounds=(lo, hi), method="bvls", tol=1e-15).x


@pytest.mark.parametrize("k", [1, 3, 5, 12, 28])
def test_box_qp_is_the_exact_bounded_minimiser(k):
    """Random strictly convex problems, a share of them with binding bounds and some one-sided:
    the active-set solve equals BVLS's minimiser to 1e-9 (both exact methods on problems of
    condition number up to ~1e4: agreement to rounding, amplified by the conditioning) and holds
    active variables exactly on their bounds."""
    rng = np.random.default_rng(k)
    solve = jax.jit(jax.vmap(lm.box_qp))
    H, g, lo, hi = [], [], [], []
    for _ in range(40):
        A = rng.standard_normal((k + 3, k))
        H.append(A.T @ A + 1e-3 * np.eye(k))
        g.append(3 * rng.standard_normal(k))
        low, high = -rng.uniform(0, 1, k), rng.uniform(0, 1, k)
        low[rng.uniform(size=k) < 0.15] = 0.0  # the point on a bound
        high[rng.uniform(size=k) < 0.15] = np.inf
        lo.append(low)
        hi.append(high)
    H, g, lo, hi = map(np.array, (H, g, lo, hi))
    d = np.asarray(solve(*map(jnp.asarray, (H, g, lo, hi))))
    binding = 0
    for i in range(len(g)):
        ref = _bvls(H[i], g[i], lo[i], hi[i])
        np.testing.assert_allclose(d[i], ref, rtol=0, atol=1e-9 * (1 + np.abs(ref).max()))
        assert np.all(d[i] >= lo[i]) and np.all(d[i] <= hi[i])
        at = (np.abs(ref - lo[i]) < 1e-9) | (np.abs(ref - hi[i]) < 1e-9)
        binding += at.sum()
        assert np.all((d[i][at] == lo[i][at]) | (d[i][at] == hi[i][at]))  # exactly on the bound
    assert binding > 0


def _linear_problem():
    """r(theta) = A theta - b, m = 6, k = 3."""
    rng = np.random.default_rng(7)
    A = rng.standard_normal((6, 3))
    b = rng.standard_normal(6)
    return A, b


@pytest.mark.parametrize("bounded", [False, True], ids=["free", "binding-bound"])
def test_the_first_step_is_the_bounded_minimiser_of_the_damped_model(bounded):
    """From theta0 the update moves to theta0 + d with d = argmin r'Jd + d'(J'J + lam D)d/2 in the
    box (S = 0 before any secant update, lam = LM_LAMBDA0, D = diag(J'J)), as BVLS finds it; with
    a binding bound d reaches it exactly. Tolerance 1e-12: the same exact minimiser, rounding only."""
    A, b = _linear_problem()
    theta0 = np.array([0.3, -0.2, 0.1])
    lower = np.array([-np.inf, -np.inf, -np.inf])
    upper = np.array([np.inf, np.inf, np.inf])
    if bounded:
        free_step = _bvls(A.T @ A + lm.LM_LAMBDA0 * np.diag(np.diag(A.T @ A)), A.T @ (A @ theta0 - b),
                          lower - theta0, upper - theta0)
        j = int(np.argmax(np.abs(free_step)))
        # A bound half way along the free step's largest component: it binds.
        if free_step[j] > 0:
            upper[j] = theta0[j] + 0.5 * free_step[j]
        else:
            lower[j] = theta0[j] + 0.5 * free_step[j]
    tx = lm.scale_by_bounded_lm(lower, upper, n_residuals=6, gtol=1e-14, ftol=1e-14)
    params = jnp.asarray(theta0)
    state = tx.init(params)
    r, J = A @ theta0 - b, A
    updates, state = jax.jit(tx.update)(jnp.zeros(3), state, params, residuals=jnp.asarray(r), jacobian=jnp.asarray(J))
    step = np.asarray(optax.apply_updates(params, updates)) - theta0
    JtJ = J.T @ J
    expected = _bvls(JtJ + lm.LM_LAMBDA0 * np.diag(np.diag(JtJ)), J.T @ r, lower - theta0, upper - theta0)
    np.testing.assert_allclose(step, expected, rtol=1e-12, atol=1e-12)
    if bounded:
        assert theta0[j] + step[j] in (lower[j], upper[j]) or np.isclose(theta0[j] + step[j], [lower[j], upper[j]],
                                                                         rtol=0, atol=1e-15).any()
    assert int(state.status) == 0 and bool(state.accepted)


def _solve(residuals, theta0, lower, upper, iterations=200):
    """optax's loop: evaluate r and J at params, update, apply, project on the box."""
    tx = lm.scale_by_bounded_lm(jnp.asarray(lower), jnp.asarray(upper), n_residuals=2, gtol=1e-12, ftol=1e-15)
    jac = jax.jacfwd(residuals)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jnp.zeros_like(params), state, params, residuals=residuals(params),
                                   jacobian=jac(params))
        return optax.projections.projection_box(optax.apply_updates(params, updates), lower, upper), state

    params = jnp.asarray(theta0)
    state = tx.init(params)
    for _ in range(iterations):
        params, state = step(params, state)
        if int(state.status) != 0:
            break
    return np.asarray(state.theta), Status.of_code(int(state.status)), int(state.count)


def _rosenbrock(t):
    return jnp.stack([10.0 * (t[1] - t[0] ** 2), 1.0 - t[0]])


def test_lm_solves_rosenbrock_to_its_known_minimum():
    """Q = 100 (theta2 - theta1^2)^2 + (1 - theta1)^2 has its minimum 0 at (1, 1): reached to 1e-6
    (the solver-output tier: the stopping rules end it once the model's best decrease is below
    ftol, about 1e-8 from the minimum in theta along Rosenbrock's valley) from (-1.2, 1)."""
    theta, status, count = _solve(_rosenbrock, [-1.2, 1.0], np.array([-5.0, -5.0]), np.array([5.0, 5.0]))
    assert status.converged, status
    np.testing.assert_allclose(theta, [1.0, 1.0], rtol=0, atol=1e-6)
    assert count < 100


def test_lm_stops_exactly_on_a_binding_bound():
    """With theta1 <= 0.5 the minimum is on the bound: Q = (1 - theta1)^2 once theta2 = theta1^2,
    so (0.5, 0.25), with theta1 held exactly at 0.5 (an active constraint, not a fold of a
    transformation) and theta2 to 1e-6 (the solver-output tier)."""
    theta, status, _ = _solve(_rosenbrock, [-1.2, 1.0], np.array([-5.0, -5.0]), np.array([0.5, 5.0]))
    assert status.converged, status
    assert theta[0] == 0.5
    np.testing.assert_allclose(theta[1], 0.25, rtol=0, atol=1e-6)


def test_a_non_finite_start_fails_and_then_stays():
    """Residuals that are not finite at the start: status NON_FINITE, and later updates change
    neither the state nor the parameters."""
    tx = lm.scale_by_bounded_lm(jnp.array([-1.0]), jnp.array([1.0]), n_residuals=1)
    params = jnp.array([0.5])
    state = tx.init(params)
    updates, state = tx.update(None, state, params, residuals=jnp.array([jnp.nan]), jacobian=jnp.array([[1.0]]))
    assert Status.of_code(int(state.status)) is Status.NON_FINITE and float(updates[0]) == 0.0
    again, state2 = tx.update(None, state, params, residuals=jnp.array([0.1]), jacobian=jnp.array([[1.0]]))
    assert float(again[0]) == 0.0 and int(state2.count) == int(state.count)


def test_an_indefinite_secant_term_falls_back_to_gauss_newton():
    """At a point where most parameters have no effect (J has one non-zero column: alpha = 0 in the
    default problem switches off every AI channel) and the secant term S is indefinite in a vanishing
    column, the step is Gauss-Newton's: S is dropped, not cured by a shift that, measured against D's
    floor of 1e-12 max diag(J'J), freezes the one column that matters. Found from three of ten Sobol
    starts of the default calibration that stopped at Q = 41.8 as "predicted decrease below ftol" with
    0.2 of decrease left. The decrease the model predicts is then the Gauss-Newton model's, which
    with this J and r is (J'r)_1^2 / (J'J)_11 in closed form (one free column, no bound binding;
    lam = 1e-12 adds a relative 1e-12); tolerance 1e-9 relative covers that and rounding."""
    rng = np.random.default_rng(3)
    J = np.zeros((6, 5))
    J[:, 0] = rng.standard_normal(6) * 10.0
    r = rng.standard_normal(6)
    S = np.zeros((5, 5))
    S[1, 1] = -5.0  # negative curvature along a parameter with no effect
    S[0, 1] = S[1, 0] = 2.0
    theta = np.full(5, 0.5)
    lower, upper = np.full(5, -10.0), np.full(5, 10.0)
    step, predicted = jax.jit(lm.box_step)(*map(jnp.asarray, (r, J, S, lm.LM_LAMBDA_STOP, theta, lower, upper)))
    g = J.T @ r
    assert float(predicted) == pytest.approx(g[0] ** 2 / (J[:, 0] @ J[:, 0]), rel=1e-9)
    assert float(step[0]) == pytest.approx(-g[0] / (J[:, 0] @ J[:, 0]), rel=1e-9)
    # Where S keeps the model definite it is used: the predicted decrease then counts its curvature.
    S_definite = np.diag([0.0, 3.0, 0.0, 0.0, 0.0])
    _, kept = jax.jit(lm.box_step)(*map(jnp.asarray, (r, J, S_definite, 1e-3, theta, lower, upper)))
    assert np.isfinite(float(kept)) and float(kept) > 0
