"""Bounded Levenberg-Marquardt with the NL2SOL secant term, as an optax transformation.

The MSM criterion is Q(theta) = |r(theta)|^2 with residuals r = C' (m(theta) - m_data) (W = C C'),
a small nonlinear least-squares problem (six residuals, k <= 28 parameters) over a box
lower <= theta <= upper. Each step minimises the damped quadratic model

    q(d) = g'd + d' (J'J + S) d / 2 + lam d' D d / 2 + d' A d / 2,   g = J'r,
    beta (lower - theta) <= d <= beta (upper - theta),

with J = dr/dtheta, D = diag(J'J) (Marquardt's scaling, floored for columns that vanish) and S a
secant estimate of the curvature sum_i r_i Hess r_i that Gauss-Newton leaves out (the structured
update of NL2SOL, Dennis, Gay and Welsch 1981), which matters where a moment is flat to first
order (a dispersion parameter at 0 whose moments move with its square). A and beta keep the
iterates off the bounds until a bound is where the criterion wants them, as the interior
(trust-region reflective) methods do, after Coleman and Li (1996): A = diag(|g_i| / v_i), with v_i
the distance to the bound that g pushes theta_i towards (no term where that bound is infinite or
g_i = 0), makes a step towards a near bound as dear as its own length; the box is the bounds'
box shrunk towards theta by beta = max(0.995, 1 - max_i |g_i v_i|) (scipy's trf's step-back).
A variable that the step leaves within :data:`SNAP` of its width from the bound it moves towards
is put on that bound, so that a bound that binds is met exactly, and a variable on its bound stays
there while g pushes it out (its box is [0, 0] on that side). Measured from the 20 Sobol starts
of each of the three problems of ``benchmarks/bench_optimisers.py``: the box-only step (A = 0,
beta = 1: straight onto a bound as soon as the linear model points there; ``interior=False``)
reached the best criterion from 24 of the 60 (problem, start) pairs, ending in corners of the box
from most of the others, this step from 39 (every other one ends at a bound-constrained local
minimum), scipy's trf from 49. The model is a strictly convex quadratic
over a box; :func:`box_qp` solves it exactly by a primal active-set method.

:func:`scale_by_bounded_lm` is an ``optax.GradientTransformationExtraArgs``: its ``update`` takes
the residuals and their Jacobian at ``params`` as the extra arguments ``residuals`` and
``jacobian`` (the gradient argument is not used) and returns the update to the next point to
evaluate. ``params`` is the trial point of the previous update: the update first judges it
(accepted when Q falls with a gain ratio above 1e-4, the damping then shrinking by Nielsen's rule;
rejected otherwise, the damping growing), then tests the accepted point for convergence, then
proposes the next trial point from the accepted one. So one evaluation of (r, J) per update, and
the loop around it is optax's own: ``updates, state = tx.update(...)``;
``params = optax.apply_updates(params, updates)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from estimation.msm.status import RUNNING, Status

#: Initial damping (relative to the diagonal of J'J) and the damping beyond which no step is
#: expected to decrease Q any more.
LM_LAMBDA0 = 0.1
LM_LAMBDA_MAX = 1e12
#: Damping of the undamped Gauss-Newton model in the stopping test (its best decrease in the box).
LM_LAMBDA_STOP = 1e-12
#: Doublings of the Gauss-Newton model's shift tried to make its Cholesky factor finite.
GN_DOUBLINGS = 200
#: Least step-back from the bounds (the box of a step is the bounds' box shrunk by this factor).
STEP_BACK = 0.995
#: A variable that a step leaves within this share of its width in the box from the bound it
#: moves towards is put on that bound (where infinite bounds leave no width: max(|theta|, 1)).
SNAP = 1e-4


class ScaleByBoundedLMState(NamedTuple):
    """State of :func:`scale_by_bounded_lm` (one start; vmap it for several)."""

    count: jax.Array  # shape=(), int32: updates made; 0: params is the start, accepted unjudged
    theta: jax.Array  # shape=(k,): the last accepted point
    residuals: jax.Array  # shape=(m,): r there
    jacobian: jax.Array  # shape=(m, k): dr/dtheta there
    value: jax.Array  # shape=(): Q = |r|^2 there (+inf where not finite)
    S: jax.Array  # shape=(k, k): secant estimate of the curvature Gauss-Newton leaves out
    lam: jax.Array  # shape=(): damping
    nu: jax.Array  # shape=(): growth factor of the damping after a rejection
    predicted: jax.Array  # shape=(): decrease of Q the model predicts for the pending trial step
    accepted: jax.Array  # shape=(), bool: whether the last update accepted its params
    stalls: jax.Array  # shape=(), int32: accepted steps in a row that decreased Q by <= ftol (1 + Q)
    status: jax.Array  # shape=(), int32: ``Status.code`` of the accepted point, 0 while running


def box_qp(H: jax.Array, g: jax.Array, lower: jax.Array, upper: jax.Array,
           max_iter: int | None = None) -> jax.Array:
    """argmin g'd + d'Hd/2 subject to lower <= d <= upper, by a primal active-set method.

    H must be symmetric positive definite, and lower <= 0 <= upper (d = 0 is feasible; infinite
    bounds allowed). The method starts at d = 0 with no active bound. Each iteration minimises the
    model over the free variables with the active ones held at their bounds (a Cholesky solve of
    the free block); if that point is feasible it is taken and the active bound whose multiplier
    has the wrong sign (the most negative) is released, or, if none, the point is the solution;
    otherwise the iterate moves toward it until the first bound is met, which becomes active.
    Held variables sit exactly on their bounds. With H positive definite the model decreases
    strictly between releases, so no working set repeats and the method ends in finitely many
    iterations; ``max_iter`` (default 4 k + 8) caps them for compiled code: at the cap the feasible
    iterate is returned.

    Args:
        H: (k, k) symmetric positive definite.
        g: (k,) linear term.
        lower, upper: (k,) bounds of d, lower <= 0 <= upper.
        max_iter: most iterations (static).

    Returns:
        (k,) the minimiser.
    """
    k = g.shape[0]
    max_iter = 4 * k + 8 if max_iter is None else max_iter
    dtype = g.dtype
    eye = jnp.eye(k, dtype=dtype)
    # Multipliers and bound violations are judged relative to the problem's scale.
    scale = jnp.max(jnp.abs(g)) + jnp.max(jnp.abs(H)) * jnp.max(
        jnp.where(jnp.isfinite(lower), jnp.abs(lower), 0.0) + jnp.where(jnp.isfinite(upper), jnp.abs(upper), 0.0))
    tol = 1e-13 * scale

    def held_value(at_lo, at_hi):
        return jnp.where(at_lo, lower, jnp.where(at_hi, upper, 0.0))

    def subproblem(at_lo, at_hi):
        free = ~(at_lo | at_hi)
        held = held_value(at_lo, at_hi)
        both = free[:, None] & free[None, :]
        M = jnp.where(both, H, 0.0) + jnp.where(free, 0.0, 1.0) * eye
        rhs = jnp.where(free, -(g + H @ held), held)
        L = jnp.linalg.cholesky(M)
        return jax.scipy.linalg.cho_solve((L, True), rhs), free

    def body(carry):
        d, at_lo, at_hi, it, _ = carry
        p, free = subproblem(at_lo, at_hi)
        below, above = free & (p < lower), free & (p > upper)
        feasible = ~jnp.any(below | above)
        # Feasible: take p; release the active bound with the most negative multiplier.
        grad = H @ p + g
        wrong = jnp.where(at_lo, -grad, jnp.where(at_hi, grad, -jnp.inf))
        worst = jnp.argmax(wrong)
        release = wrong[worst] > tol
        optimal = feasible & ~release
        # Infeasible: move toward p until the first bound, which becomes active.
        direction = p - d
        ratio = jnp.where(below, (lower - d) / jnp.where(below, direction, -1.0),
                          jnp.where(above, (upper - d) / jnp.where(above, direction, 1.0), jnp.inf))
        blocking = jnp.argmin(ratio)
        alpha = jnp.clip(ratio[blocking], 0.0, 1.0)
        moved = d + alpha * direction
        hit = jnp.arange(k) == blocking
        new_lo = jnp.where(feasible, at_lo & ~(release & _hit(worst, k)), at_lo | (hit & below))
        new_hi = jnp.where(feasible, at_hi & ~(release & _hit(worst, k)), at_hi | (hit & above))
        new_d = jnp.where(feasible, p, moved)
        new_d = jnp.where(new_lo, lower, jnp.where(new_hi, upper, new_d))
        return new_d, new_lo, new_hi, it + 1, optimal

    def cond(carry):
        *_, it, optimal = carry
        return (~optimal) & (it < max_iter)

    none = jnp.zeros(k, bool)
    init = (jnp.zeros(k, dtype), none, none, jnp.int32(0), jnp.asarray(False))
    d, at_lo, at_hi, _, _ = jax.lax.while_loop(cond, body, init)
    return jnp.where(at_lo, lower, jnp.where(at_hi, upper, jnp.clip(d, lower, upper)))


def _hit(index: jax.Array, k: int) -> jax.Array:
    """(k,) bool, True at ``index``."""
    return jnp.arange(k) == index


def _factor_model(JtJ, S, D, lam):
    """The model's Hessian: J'J + S + lam D where that is positive definite, else Gauss-Newton's
    J'J + shift D, the shift lam doubled (at least to 1e-8) until its Cholesky factor is finite.

    S is a secant estimate and may be indefinite. Shifting J'J + S until it is definite is no cure:
    D is floored far below S's scale in a column that vanishes (a parameter with no effect at this
    point), so the shift that makes it definite can be 10^8 times lam and freezes every other
    direction; the stopping test then reads the frozen model as "no decrease left" (measured: three
    of ten Sobol starts of the default problem stopped so at Q = 41.8, at alpha = 0). J'J + shift D
    is positive semi-definite, so the doublings only cover rounding in near-empty columns.
    Returns (H, curvature): the model's Hessian and the curvature kept (S or 0).
    """
    with_S = JtJ + S + lam * jnp.diag(D)
    definite = jnp.all(jnp.isfinite(jnp.linalg.cholesky(with_S)))

    def gauss_newton(shift):
        H = JtJ + shift * jnp.diag(D)
        return H, jnp.all(jnp.isfinite(jnp.linalg.cholesky(H)))

    def body(carry):
        t, shift, _, _ = carry
        shift = jnp.maximum(2.0 * shift, 1e-8)
        return (t + 1, shift, *gauss_newton(shift))

    def cond(carry):
        t, _, _, ok = carry
        return (~ok) & (t < GN_DOUBLINGS)

    first = jax.lax.cond(definite, lambda: (with_S, definite), lambda: gauss_newton(lam))
    _, _, H, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), lam, *first))
    return H, jnp.where(definite, S, jnp.zeros_like(S))


def widths(theta: jax.Array, lower: jax.Array, upper: jax.Array) -> jax.Array:
    """Each parameter's width in the box, upper - lower, or max(|theta|, 1) where it is infinite: (k,)."""
    span = upper - lower
    return jnp.where(jnp.isfinite(span), span, jnp.maximum(jnp.abs(theta), 1.0))


def affine_scaling(theta: jax.Array, grad: jax.Array, lower: jax.Array, upper: jax.Array):
    """Coleman and Li's distances: v_i = upper_i - theta_i where g_i < 0 and upper_i is finite,
    theta_i - lower_i where g_i > 0 and lower_i is finite, else 1; and whether v_i is such a distance.

    Returns:
        (v (k,), toward (k,) bool).
    """
    up = (grad < 0) & jnp.isfinite(upper)
    down = (grad > 0) & jnp.isfinite(lower)
    return jnp.where(up, upper - theta, jnp.where(down, theta - lower, 1.0)), up | down


def box_step(r: jax.Array, J: jax.Array, S: jax.Array, lam: jax.Array, theta: jax.Array,
             lower: jax.Array, upper: jax.Array, interior: bool = True) -> tuple[jax.Array, jax.Array]:
    """The damped model's step within the bounds and the decrease of Q it predicts.

    The model of Q/2 = |r|^2/2 is g'd + d'(J'J + S)d/2 with g = J'r (Gauss-Newton plus the secant
    term); the step minimises it plus lam d'Dd/2 (D = diag(J'J), floored at 1e-12 of its largest
    entry) by :func:`box_qp`. With ``interior`` (the module docstring): plus d'Ad/2 with
    A = diag(|g_i| / v_i), in the bounds' box shrunk towards theta by
    beta = max(STEP_BACK, 1 - max |g_i v_i|), and a variable left within SNAP of its width from the
    bound it moves towards goes onto it. Without: subject to lower <= theta + d <= upper alone.

    Args:
        r: (m,) residuals; J: (m, k) dr/dtheta; S: (k, k) secant curvature; lam: () damping;
        theta: (k,) the point; lower, upper: (k,) its bounds; interior: static.

    Returns:
        The step (k,) and the decrease of Q = |r|^2 the undamped model predicts for it ().
    """
    JtJ = J.T @ J
    diag = jnp.diag(JtJ)
    D = jnp.maximum(diag, 1e-12 * jnp.maximum(jnp.max(diag, initial=0.0), 1e-300))
    grad = J.T @ r
    H, curvature = _factor_model(JtJ, S, D, lam)
    low, high = jnp.minimum(lower - theta, 0.0), jnp.maximum(upper - theta, 0.0)
    if interior:
        v, toward = affine_scaling(theta, grad, lower, upper)
        near = toward & (v > 0)  # on its bound, a variable's box side is 0 already
        H = H + jnp.diag(jnp.where(near, jnp.abs(grad) / jnp.where(near, v, 1.0), 0.0))
        beta = jnp.maximum(STEP_BACK, 1.0 - jnp.max(jnp.abs(grad * v)))
        step = box_qp(H, grad, beta * low, beta * high)
        width = widths(theta, lower, upper)
        onto_low = (step < 0) & (theta + step - lower <= SNAP * width)
        onto_high = (step > 0) & (upper - (theta + step) <= SNAP * width)
        step = jnp.where(onto_low, low, jnp.where(onto_high, high, step))
    else:
        step = box_qp(H, grad, low, high)
    predicted = -2.0 * (grad @ step) - step @ (JtJ + curvature) @ step
    return step, predicted


def secant_update(S, step, J_old, J_new, r_old, r_new):
    """NL2SOL's structured secant update of S: S s = y# with y# = (J_new - J_old)' r_new, a
    symmetric rank-two change, S first sized down by min(1, |s'y#| / |s'Ss|); unchanged when
    y's <= 1e-12 |y| |s| (y = J_new' r_new - J_old' r_old). Shapes: S (k, k), step (k,),
    J (m, k), r (m,)."""
    y = J_new.T @ r_new - J_old.T @ r_old
    y_sharp = (J_new - J_old).T @ r_new
    ys = y @ step
    usable = ys > 1e-12 * jnp.linalg.norm(y) * jnp.linalg.norm(step)
    sSs = step @ S @ step
    sized = jnp.where(sSs != 0.0, S * jnp.minimum(1.0, jnp.abs(step @ y_sharp) / jnp.where(sSs != 0.0, jnp.abs(sSs), 1.0)), S)
    ys_safe = jnp.where(usable, ys, 1.0)
    z = y_sharp - sized @ step
    new = sized + (jnp.outer(z, y) + jnp.outer(y, z)) / ys_safe - (z @ step) * jnp.outer(y, y) / ys_safe**2
    return jnp.where(usable, new, S)


def projected_gradient(theta: jax.Array, grad: jax.Array, lower: jax.Array, upper: jax.Array) -> jax.Array:
    """dQ/dtheta (k,) with the components that push against an active bound set to 0 (a bound is
    active within 1e-12 max(|theta|, 1))."""
    span = jnp.maximum(jnp.abs(theta), 1.0) * 1e-12
    at_lo = jnp.isfinite(lower) & (theta - lower <= span) & (grad > 0)
    at_hi = jnp.isfinite(upper) & (upper - theta <= span) & (grad < 0)
    return jnp.where(at_lo | at_hi, 0.0, grad)


def _value(r: jax.Array) -> jax.Array:
    q = r @ r
    return jnp.where(jnp.isfinite(q), q, jnp.inf)


def _judge(state: ScaleByBoundedLMState, params: jax.Array, r: jax.Array, J: jax.Array,
           ftol: float) -> ScaleByBoundedLMState:
    """The state after judging the trial point ``params`` (k,), with r (m,) and J (m, k) there.

    The first update accepts its params unjudged; later ones accept on a fall of Q with a gain ratio
    above 1e-4 (see :func:`scale_by_bounded_lm`), which also updates S, the damping and the stall
    count. ``predicted`` and ``status`` are left as they were, for the caller to set.
    """
    new = _value(r)
    first = state.count == 0
    rho = jnp.where(state.predicted > 0, (state.value - new) / jnp.where(state.predicted > 0, state.predicted, 1.0), -1.0)
    good = jnp.isfinite(new) & jnp.all(jnp.isfinite(J)) & (new < state.value) & (rho > 1e-4)
    accept = first | good
    step = params - state.theta
    S = jnp.where(good, secant_update(state.S, step, state.jacobian, J, state.residuals, r), state.S)
    small = state.value - new <= ftol * (1.0 + jnp.abs(state.value))
    stalls = jnp.where(good, jnp.where(small, state.stalls + 1, 0), state.stalls)
    lam = jnp.where(first, state.lam,
                    jnp.where(good, state.lam * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3),
                              state.lam * state.nu))
    nu = jnp.where(first, state.nu, jnp.where(good, 4.0, 2.0 * state.nu))
    return state._replace(
        count=state.count + 1, theta=jnp.where(accept, params, state.theta),
        residuals=jnp.where(accept, r, state.residuals), jacobian=jnp.where(accept, J, state.jacobian),
        value=jnp.where(accept, new, state.value), S=S, lam=lam, nu=nu, accepted=accept,
        stalls=stalls.astype(jnp.int32),
    )


def _stopping_status(judged: ScaleByBoundedLMState, finite: jax.Array, safe_r: jax.Array, safe_J: jax.Array,
                     safe_S: jax.Array, lower: jax.Array, upper: jax.Array, gtol: float, ftol: float,
                     patience: int, lambda_max: float) -> jax.Array:
    """The :class:`Status` code of the accepted point of ``judged`` (RUNNING while none holds), by the
    stopping rules of :func:`scale_by_bounded_lm` in their order. ``safe_r`` (m,), ``safe_J`` (m, k)
    and ``safe_S`` (k, k) are its r, J and S, zeroed where not ``finite``."""
    theta, value = judged.theta, judged.value
    grad = projected_gradient(theta, 2.0 * judged.jacobian.T @ judged.residuals, lower, upper)
    _, best_decrease = box_step(safe_r, safe_J, safe_S, jnp.asarray(LM_LAMBDA_STOP, judged.lam.dtype), theta,
                                lower, upper, interior=False)
    threshold = ftol * (1.0 + jnp.abs(value))
    return jnp.select(
        [~finite, jnp.max(jnp.abs(grad)) <= gtol, judged.stalls >= patience, best_decrease <= threshold,
         judged.lam > lambda_max],
        [Status.NON_FINITE.code, Status.GRADIENT.code, Status.CRITERION_CHANGE.code,
         Status.PREDICTED_DECREASE.code, Status.NO_DESCENT.code], RUNNING).astype(jnp.int32)


def scale_by_bounded_lm(lower, upper, n_residuals: int, gtol: float = 1e-6, ftol: float = 1e-10, patience: int = 3,
                        lambda0: float = LM_LAMBDA0, lambda_max: float = LM_LAMBDA_MAX,
                        interior: bool = True) -> optax.GradientTransformationExtraArgs:
    r"""Bounded Levenberg-Marquardt with NL2SOL's secant term (see the module docstring).

    ``update(updates, state, params, *, residuals, jacobian)``: ``residuals`` (m,) and
    ``jacobian`` (m, k) are r and dr/dtheta at ``params``; ``updates`` is ignored. The returned
    update takes params to the next trial point theta + d, with d the step of the damped model at
    the accepted point theta (:func:`box_step`), clipped into the box.

    Acceptance: Q_new < Q, finite r and J, and a gain ratio
    :math:`\rho = (Q - Q_{new}) / \text{predicted} > 10^{-4}`; then
    :math:`\lambda \leftarrow \lambda \max(1/3, 1 - (2\rho - 1)^3)`, :math:`\nu = 4`, and S gets the
    secant update; else :math:`\lambda \leftarrow \nu \lambda`, :math:`\nu \leftarrow 2 \nu`.

    Stopping (``state.status``, a :class:`Status` code, tested on the accepted point in this order):
    non-finite Q or J (NON_FINITE); max |projected dQ/dtheta| <= gtol (GRADIENT); ``patience``
    accepted steps in a row each decreasing Q by <= ftol (1 + Q) (CRITERION_CHANGE); the undamped
    model's best decrease in the box <= ftol (1 + Q) (PREDICTED_DECREASE); lam > lambda_max
    (NO_DESCENT). Once a status is set, further updates leave the state and params unchanged.

    Args:
        lower, upper: (k,) bounds of theta (+-inf where none).
        n_residuals: m, the length of r (the state's arrays have fixed shapes).
        gtol, ftol, patience: stopping rules; lambda0, lambda_max: damping (see above).
        interior: the step of the module docstring (default); False: the box-only step (A = 0,
            beta = 1, no snapping), the exact minimiser of the damped model in the bounds' box.
    """
    lower = jnp.asarray(lower, jnp.float64)
    upper = jnp.asarray(upper, jnp.float64)

    def init(params):
        k = params.shape[0]
        dtype = params.dtype
        return ScaleByBoundedLMState(
            count=jnp.int32(0), theta=jnp.asarray(params), residuals=jnp.zeros(n_residuals, dtype),
            jacobian=jnp.zeros((n_residuals, k), dtype),
            value=jnp.asarray(jnp.inf, dtype), S=jnp.zeros((k, k), dtype), lam=jnp.asarray(lambda0, dtype),
            nu=jnp.asarray(4.0, dtype), predicted=jnp.asarray(0.0, dtype), accepted=jnp.asarray(False),
            stalls=jnp.int32(0), status=jnp.int32(RUNNING),
        )

    def update(updates, state: ScaleByBoundedLMState, params, *, residuals, jacobian, **extra_args):
        del updates, extra_args
        judged = _judge(state, params, residuals, jacobian, ftol)
        theta, value, lam = judged.theta, judged.value, judged.lam
        # Test the accepted point.
        finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(judged.jacobian))
        safe_r = jnp.where(finite, judged.residuals, 0.0)
        safe_J = jnp.where(finite, judged.jacobian, 0.0)
        safe_S = jnp.where(finite, judged.S, 0.0)
        status = _stopping_status(judged, finite, safe_r, safe_J, safe_S, lower, upper, gtol, ftol, patience,
                                  lambda_max)
        # Propose the next trial point from the accepted one.
        d, predicted = box_step(safe_r, safe_J, safe_S, lam, theta, lower, upper, interior)
        trial = jnp.clip(theta + d, lower, upper)
        running = status == RUNNING
        trial = jnp.where(running, trial, theta)
        new_state = judged._replace(predicted=predicted, status=status)
        # A start that had stopped stays as it was.
        stopped = state.status != RUNNING
        new_state = jax.tree_util.tree_map(lambda old, fresh: jnp.where(stopped, old, fresh), state, new_state)
        new_params = jnp.where(stopped, params, trial)
        return new_params - params, new_state

    return optax.GradientTransformationExtraArgs(init, update)
