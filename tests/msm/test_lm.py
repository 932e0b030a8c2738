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


def _first_step(theta0, lower, upper, interior=True):
    """The first update's step from theta0 on the linear problem: (step, state)."""
    A, b = _linear_problem()
    tx = lm.scale_by_bounded_lm(lower, upper, n_residuals=6, gtol=1e-14, ftol=1e-14, interior=interior)
    params = jnp.asarray(theta0)
    state = tx.init(params)
    r = A @ theta0 - b
    updates, state = jax.jit(tx.update)(jnp.zeros(3), state, params, residuals=jnp.asarray(r), jacobian=jnp.asarray(A))
    return np.asarray(optax.apply_updates(params, updates)) - theta0, state


def _interior_reference(theta0, lower, upper):
    """The interior step of the module docstring, computed here in NumPy with scipy's BVLS: the
    damped model plus A = diag(|g_i| / v_i) (v_i the distance to the bound g pushes theta_i
    towards, where finite), in the box shrunk by beta = max(0.995, 1 - max |g_i v_i|), then onto a
    bound that the step leaves within SNAP of the width."""
    A, b = _linear_problem()
    r = A @ theta0 - b
    JtJ, g = A.T @ A, A.T @ r
    up, down = (g < 0) & np.isfinite(upper), (g > 0) & np.isfinite(lower)
    v = np.where(up, upper - theta0, np.where(down, theta0 - lower, 1.0))
    H = JtJ + lm.LM_LAMBDA0 * np.diag(np.diag(JtJ)) + np.diag(np.where(up | down, np.abs(g) / v, 0.0))
    beta = max(lm.STEP_BACK, 1.0 - np.max(np.abs(g * v)))
    low, high = np.minimum(lower - theta0, 0.0), np.maximum(upper - theta0, 0.0)
    d = _bvls(H, g, beta * low, beta * high)
    span = upper - lower
    width = np.where(np.isfinite(span), span, np.maximum(np.abs(theta0), 1.0))
    d = np.where((d < 0) & (theta0 + d - lower <= lm.SNAP * width), low, d)
    return np.where((d > 0) & (upper - theta0 - d <= lm.SNAP * width), high, d)


def _bound_across_the_free_step(theta0, share):
    """Bounds with one of them ``share`` of the way along the free step's largest component."""
    A, b = _linear_problem()
    lower, upper = np.full(3, -np.inf), np.full(3, np.inf)
    JtJ = A.T @ A
    free_step = _bvls(JtJ + lm.LM_LAMBDA0 * np.diag(np.diag(JtJ)), A.T @ (A @ theta0 - b), lower - theta0,
                      upper - theta0)
    j = int(np.argmax(np.abs(free_step)))
    if free_step[j] > 0:
        upper[j] = theta0[j] + share * free_step[j]
    else:
        lower[j] = theta0[j] + share * free_step[j]
    return lower, upper, j


THETA0 = np.array([0.3, -0.2, 0.1])


def test_the_free_first_step_is_the_minimiser_of_the_damped_model():
    """Without bounds the step is d = -(J'J + lam D)^-1 J'r (S = 0 before any secant update,
    lam = LM_LAMBDA0, D = diag(J'J); no affine-scaling term without a finite bound), in both
    modes. Tolerance 1e-12: the same exact minimiser, rounding only."""
    A, b = _linear_problem()
    JtJ = A.T @ A
    expected = -np.linalg.solve(JtJ + lm.LM_LAMBDA0 * np.diag(np.diag(JtJ)), A.T @ (A @ THETA0 - b))
    for interior in (True, False):
        step, state = _first_step(THETA0, np.full(3, -np.inf), np.full(3, np.inf), interior)
        np.testing.assert_allclose(step, expected, rtol=1e-12, atol=1e-12)
        assert int(state.status) == 0 and bool(state.accepted)


def test_the_interior_first_step_stops_short_of_a_bound_across_its_path():
    """A bound half way along the free step: the step equals the bounded minimiser of the interior
    model (checked against scipy's BVLS on the same model, to 1e-12: rounding only), and it stops
    strictly inside the box, at beta of the way to that bound or short of it."""
    lower, upper, j = _bound_across_the_free_step(THETA0, 0.5)
    step, _ = _first_step(THETA0, lower, upper)
    np.testing.assert_allclose(step, _interior_reference(THETA0, lower, upper), rtol=1e-12, atol=1e-12)
    bound = upper[j] if np.isfinite(upper[j]) else lower[j]
    assert 0 < abs(step[j]) <= lm.STEP_BACK * abs(bound - THETA0[j]) + 1e-15


def test_the_box_only_first_step_reaches_a_binding_bound_exactly():
    """interior=False: d = argmin r'Jd + d'(J'J + lam D)d/2 in the bounds' box, as BVLS finds it
    (1e-12), with the binding bound reached exactly."""
    lower, upper, j = _bound_across_the_free_step(THETA0, 0.5)
    step, _ = _first_step(THETA0, lower, upper, interior=False)
    A, b = _linear_problem()
    JtJ = A.T @ A
    expected = _bvls(JtJ + lm.LM_LAMBDA0 * np.diag(np.diag(JtJ)), A.T @ (A @ THETA0 - b), lower - THETA0,
                     upper - THETA0)
    np.testing.assert_allclose(step, expected, rtol=1e-12, atol=1e-12)
    assert THETA0[j] + step[j] in (lower[j], upper[j])


@pytest.mark.parametrize("theta", [0.5, 0.134, 2.54e-4])
def test_the_interior_step_in_one_variable_has_its_closed_form(theta):
    """r = theta + 1 on [0, 1] pulls theta towards its lower bound 0 (g = theta + 1, v = theta):
    the model's Hessian is 1 + lam + (theta + 1)/theta, so d = -(theta + 1)/(1 + lam + (theta + 1)/theta),
    which converges quadratically (theta_new ~ (1 + lam) theta^2), cut at the stepped-back box
    d >= -beta theta, beta = max(0.995, 1 - (theta + 1) theta); where that leaves theta within SNAP
    (1e-4 of the width 1) of 0, theta goes to 0 exactly. The three points: the model's step
    inside the box; inside, ending 2.5e-4 from the bound (no snap); cut by the box and snapped.
    Tolerance 1e-14: closed form against the active-set solve, rounding only."""
    lam = lm.LM_LAMBDA0
    step, predicted = lm.box_step(jnp.array([theta + 1.0]), jnp.array([[1.0]]), jnp.zeros((1, 1)), jnp.asarray(lam),
                                  jnp.array([theta]), jnp.array([0.0]), jnp.array([1.0]))
    beta = max(lm.STEP_BACK, 1.0 - (theta + 1.0) * theta)
    d = max(-(theta + 1.0) / (1.0 + lam + (theta + 1.0) / theta), -beta * theta)
    if theta + d <= lm.SNAP:
        assert float(step[0]) == -theta  # onto the bound, exactly
    else:
        np.testing.assert_allclose(float(step[0]), d, rtol=1e-14)
    s = float(step[0])
    np.testing.assert_allclose(float(predicted), -2.0 * (theta + 1.0) * s - s * s, rtol=1e-14)


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
    step, predicted = jax.jit(lm.box_step, static_argnames="interior")(
        *map(jnp.asarray, (r, J, S, lm.LM_LAMBDA_STOP, theta, lower, upper)), interior=False)  # the stopping test's
    g = J.T @ r
    assert float(predicted) == pytest.approx(g[0] ** 2 / (J[:, 0] @ J[:, 0]), rel=1e-9)
    assert float(step[0]) == pytest.approx(-g[0] / (J[:, 0] @ J[:, 0]), rel=1e-9)
    # Where S keeps the model definite it is used: the predicted decrease then counts its curvature.
    S_definite = np.diag([0.0, 3.0, 0.0, 0.0, 0.0])
    _, kept = jax.jit(lm.box_step)(*map(jnp.asarray, (r, J, S_definite, 1e-3, theta, lower, upper)))
    assert np.isfinite(float(kept)) and float(kept) > 0
