"""The method of simulated moments (MODEL.md section 7) with exact derivatives.

With moment errors g(theta) = m(theta) - m_data and weights W = C C' the estimator minimises
Q(theta) = g' W g = |r|^2 with residuals r = C' g over bounded parameters. The problem is a small
nonlinear least-squares problem (six residuals, a few parameters), so the optimiser is
Levenberg-Marquardt in the parameters themselves, with their bounds as a box: each step solves
the bounded linear least-squares problem of the damped Gauss-Newton model (``scipy.optimize
.lsq_linear``), so a bound that binds is an active constraint, not a fold of a transformation. Each
iteration evaluates the moments and their Jacobian dm/dtheta by forward-mode autodiff (through the
education fixed point by the implicit function theorem) in one compiled program, ``evaluate``,
which also serves the Jacobian of the inference, the flip checks' re-estimations and the moments
at the estimate. The step's model is Gauss-Newton's J'J plus a secant estimate S of the curvature
Gauss-Newton leaves out (the structured update of NL2SOL, Dennis, Gay and Welsch 1981), which
matters where a moment is flat to first order, e.g. in a dispersion parameter at 0 (sigma_nu),
whose moments move with its square: pure Gauss-Newton bounces on such a bound. Measured on the
default problem: 11 evaluations to the criterion L-BFGS reached in 32 iterations (N = 2x10^4 and
10^5).

Every evaluation starts the education fixed point from the aggregates of the start's last
accepted point (a warm start, ``jaxmodel.education``); they are part of the optimiser state and of
its checkpoint, so a resumed run repeats the same computations bit for bit.

Starts advance in turn, one evaluation each per iteration; a start that converges, fails, or is
clearly worse than the best after :data:`PRUNE_AFTER` iterations stops, so the wall time follows
the starts that are still worth running.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxmodel
from estimation import distributed
from estimation.msm import programs
from estimation.msm.parameters import FreeArrays, FreeParameters, params_with, theta_of_u
from jaxmodel import Assignment, Draws, Params, Settings
from jaxmodel.outcomes import STATE_DIAGNOSTICS, cold, moments_at

#: Iterations after which a start that is clearly worse than the best one is stopped.
PRUNE_AFTER = 4
#: Levenberg-Marquardt: initial damping (relative to the diagonal of J'J) and its largest value.
LM_LAMBDA0 = 0.1
LM_LAMBDA_MAX = 1e12


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Problem:
    """One estimation problem: the static model settings and the arrays (a pytree).

    ``settings`` is a static field (part of the tree structure, so a jitted function compiles once
    per settings); everything else is data, so every free set of the same size, every target vector
    and weighting matrix share one compilation.

    Attributes:
        settings: the model's static sizes and switches.
        base: parameters held fixed (the free ones are overwritten).
        free: which parameters are free, with their bounds.
        draws: the estimation's draws, fixed throughout.
        targets: (m,) m_data.
        weights: (m, m) W.
        assigned: the workers' occupations and firms when neither rho_occ nor rho_firm is free
            (``jaxmodel.assign``, computed once), else None (every evaluation sorts).
    """

    settings: Settings = dataclasses.field(metadata=dict(static=True))
    base: Params
    free: FreeArrays
    draws: Draws
    targets: jax.Array
    weights: jax.Array
    assigned: Assignment | None = None


def model_moments(theta: jax.Array, problem: Problem) -> jax.Array:
    """m(theta): (6,) model moments at the free parameters theta (k,)."""
    params = params_with(problem.base, theta, problem.free)
    return jaxmodel.moments(params, problem.draws, problem.settings).vector()


def criterion(u: jax.Array, targets: jax.Array, problem: Problem) -> jax.Array:
    """Q = g' W g with g = m(theta(u)) - targets; +inf where the model's moments are not finite."""
    g = model_moments(theta_of_u(u, problem.free), problem) - targets
    q = g @ problem.weights @ g
    return jnp.where(jnp.isfinite(q), q, jnp.inf)


class Evaluation(NamedTuple):
    """The moments and their Jacobian at one parameter value (``evaluate``)."""

    jacobian: np.ndarray  # (6, k) G = dm/dtheta
    moments: np.ndarray  # (6,) m(theta)
    aggregates: np.ndarray  # (2, 3 O + F) the fixed points' aggregates, the next warm start
    before: dict  # STATE_DIAGNOSTICS of the state before AI (fixed-point residual, iterations, ...)
    after: dict  # and after

    def vector(self) -> np.ndarray:
        return self.moments


@jax.jit
def _evaluate(theta: jax.Array, start: jax.Array, problem: Problem) -> tuple:
    def f(t):
        params = params_with(problem.base, t, problem.free)
        m = moments_at(params, problem.draws, problem.settings, start, problem.assigned)
        return m.vector(), m

    G, m = jax.jacfwd(f, has_aux=True)(theta)

    def diagnostics(state: dict) -> jax.Array:
        return jnp.stack([state[name] for name in STATE_DIAGNOSTICS])

    return G, m.vector(), m.aggregates, diagnostics(m.before), diagnostics(m.after)


def evaluate(theta, start, problem: Problem) -> Evaluation:
    """The moments and their Jacobian at theta, from a warm start of the fixed points.

    One compiled program (kept across processes by ``estimation.programs``) serves every optimiser
    step, the inference and the flip checks.

    Args:
        theta: (k,) free parameters.
        start: (2, 3 O + F) aggregates of the two fixed points to start from (NaN: cold).

    Returns:
        An :class:`Evaluation`: G = dm/dtheta (6, k) by forward-mode autodiff, the moments, the
        aggregates of the solution (the next warm start) and both states' diagnostics.
    """
    G, m, aggregates, before, after = programs.call(
        "evaluate", _evaluate, (), jnp.asarray(theta), jnp.asarray(start), problem
    )
    before, after = np.asarray(before), np.asarray(after)
    return Evaluation(
        jacobian=np.asarray(G), moments=np.asarray(m), aggregates=np.asarray(aggregates),
        before=dict(zip(STATE_DIAGNOSTICS, before)), after=dict(zip(STATE_DIAGNOSTICS, after)),
    )


def jacobian(theta: jax.Array, problem: Problem) -> np.ndarray:
    """G = dm/dtheta at theta by forward-mode autodiff: (6, k) (the program of ``evaluate``)."""
    return evaluate(theta, cold(problem.settings), problem).jacobian


@functools.partial(jax.jit, static_argnames=("settings", "n_sets"))
def _simulated_moments(params: Params, key_data: jax.Array, settings: Settings, n_sets: int) -> tuple:
    keys = jax.random.split(jax.random.wrap_key_data(key_data), n_sets)

    def one(k):
        return jaxmodel.moments(params, jaxmodel.make_draws(k, settings), settings).vector()

    return (jax.lax.map(one, keys, batch_size=min(4, n_sets)),)


def simulated_moments(params: Params, key: jax.Array, settings: Settings, n_sets: int) -> jax.Array:
    """Moments at ``params`` on ``n_sets`` independent draw sets: (n_sets, 6).

    Draw sets come from ``jax.random.split(key, n_sets)`` and are simulated in batches of four
    (``lax.map`` with ``batch_size``, i.e. ``vmap`` within a batch). With several processes the
    sets are spread over every device of every process (``estimation.distributed``).
    """
    if distributed.process_count() > 1:
        return distributed.simulated_moments(params, key, settings, n_sets)
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), params)
    return programs.call("simulated_moments", _simulated_moments, (settings, n_sets), params,
                         jax.random.key_data(key))[0]


def simulation_noise(params: Params, key: jax.Array, settings: Settings, n_sets: int) -> np.ndarray:
    """Omega_sim: covariance (ddof 1) of the simulated moments over ``n_sets`` draw sets: (6, 6)."""
    sims = np.asarray(simulated_moments(params, key, settings, n_sets))
    return np.cov(sims, rowvar=False, ddof=1)


class Status(enum.Enum):
    """How a start ended: one member per outcome (no status strings to parse); the value is the
    text written to report.json and shown in the tables."""

    GRADIENT = "converged: gradient norm below gtol"
    CRITERION_CHANGE = "converged: criterion change below ftol"
    PREDICTED_DECREASE = "converged: predicted decrease below ftol"
    NO_DESCENT = "converged: no step decreases the criterion"
    MAX_ITER = "stopped: max_iter reached"
    DOMINATED = "stopped: dominated"
    NON_FINITE = "failed: non-finite criterion"

    @property
    def converged(self) -> bool:
        return self in (Status.GRADIENT, Status.CRITERION_CHANGE, Status.PREDICTED_DECREASE, Status.NO_DESCENT)

    @property
    def failed(self) -> bool:
        return self is Status.NON_FINITE

    def describe(self, detail: str = "") -> str:
        """The status's text, with its detail (which start dominated, and by how much) if any."""
        return f"{self.value} {detail}" if detail else self.value


@dataclasses.dataclass
class StartRecord:
    """What happened to one starting point."""

    start: np.ndarray  # (k,) theta at the start
    theta: np.ndarray  # (k,) theta at the end
    u: np.ndarray  # (k,)
    value: float
    grad_norm: float  # max |dQ/dtheta| (projected on the bounds)
    iterations: int  # evaluations of the moments and their Jacobian
    status: Status
    method: str
    history: list[float]  # the criterion at every accepted point
    fp_iterations: int = 0  # fixed-point iterations over all evaluations (both states)
    detail: str = ""  # what the status alone does not say (the dominating start)

    @property
    def status_text(self) -> str:
        return self.status.describe(self.detail)


METHOD = "Levenberg-Marquardt"


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """Stopping rules of the optimiser.

    Attributes:
        gtol: stop when max |dQ/dtheta| <= gtol (components pushing against an active bound left out).
        ftol: stop when the Gauss-Newton model predicts a decrease of Q below ftol (1 + Q), or when
            an accepted step decreased Q by less than that ``patience`` times in a row.
        max_iter: most iterations (evaluations) per start.
        patience: see ftol.
    """

    gtol: float = 1e-6
    ftol: float = 1e-10
    max_iter: int = 100
    patience: int = 3


@dataclasses.dataclass
class BatchState:
    """Optimiser state of all starts: plain arrays, enough to resume bit for bit.

    Attributes:
        theta: (S, k) current points; T: (S, m) targets of each start (rows may differ).
        X: (S, 2, D) the fixed points' aggregates at theta (warm starts of the next evaluation).
        M: (S, m) model moments at theta; J: (S, m, k) dm/dtheta there; values: (S,) Q there.
        S: (S, k, k) secant estimate of the curvature Gauss-Newton leaves out (in units of |r|^2/2).
        lam: (S,) Levenberg-Marquardt damping; nu: (S,) its growth factor after a rejection.
        evaluations: (S,) evaluations made by each start; fp_iterations: (S,) fixed-point
            iterations they took (both states).
        stalls: (S,) accepted steps in a row with a decrease below ftol (1 + Q).
        done: (S,) bool; status: S entries, :class:`Status` or None (running); detail: S strings
            (see ``StartRecord.detail``); history: S lists of accepted Q values.
        iteration: iterations of the batch.
    """

    theta: np.ndarray
    T: np.ndarray
    X: np.ndarray
    M: np.ndarray
    J: np.ndarray
    values: np.ndarray
    S: np.ndarray
    lam: np.ndarray
    nu: np.ndarray
    evaluations: np.ndarray
    fp_iterations: np.ndarray
    stalls: np.ndarray
    done: np.ndarray
    status: list
    detail: list
    history: list
    iteration: int = 0

    ARRAYS = ("theta", "T", "X", "M", "J", "values", "S", "lam", "nu", "evaluations", "fp_iterations", "stalls", "done")

    def arrays(self) -> dict[str, np.ndarray]:
        """The array fields, for a checkpoint."""
        return {name: np.asarray(getattr(self, name)) for name in self.ARRAYS}


def _cholesky_factor(weights) -> np.ndarray:
    """C with W = C C' (lower Cholesky factor): residuals r = C' g have |r|^2 = g' W g."""
    return np.linalg.cholesky(np.asarray(weights, dtype=np.float64))


def _evaluate_at(theta: np.ndarray, start: np.ndarray, problem: Problem):
    """Moments, dm/dtheta, the new aggregates and the fixed-point iterations (both states) at theta:
    ((m,), (m, k), (2, D), int)."""
    ev = evaluate(theta, start, problem)
    iterations = int(ev.before["fp_iterations"]) + int(ev.after["fp_iterations"])
    return ev.moments, ev.jacobian, ev.aggregates, iterations


def _value(moments: np.ndarray, target: np.ndarray, weights: np.ndarray) -> float:
    g = moments - target
    q = float(g @ weights @ g)
    return q if np.isfinite(q) else np.inf


def new_batch(theta0: np.ndarray, problem: Problem, T: np.ndarray | None = None,
              start: np.ndarray | None = None) -> BatchState:
    """A fresh batch from starting points theta0 (S, k) inside the bounds (one evaluation each);
    targets T (S, m) default to problem.targets; ``start`` (2, 3 O + F) warm-starts the first
    evaluations' fixed points (re-estimations near an estimate), cold by default."""
    s = theta0.shape[0]
    T = np.tile(np.asarray(problem.targets), (s, 1)) if T is None else np.asarray(T, dtype=np.float64)
    weights = np.asarray(problem.weights)
    start = np.asarray(cold(problem.settings)) if start is None else np.asarray(start)
    rows = [_evaluate_at(theta0[i], start, problem) for i in range(s)]
    M = np.stack([r[0] for r in rows])
    values = np.array([_value(M[i], T[i], weights) for i in range(s)])
    return BatchState(
        theta=np.array(theta0, dtype=np.float64), T=T, X=np.stack([r[2] for r in rows]), M=M,
        J=np.stack([r[1] for r in rows]), values=values, S=np.zeros((s, theta0.shape[1], theta0.shape[1])),
        lam=np.full(s, LM_LAMBDA0), nu=np.full(s, 4.0),
        evaluations=np.ones(s, int), fp_iterations=np.array([r[3] for r in rows]), stalls=np.zeros(s, int),
        done=np.zeros(s, bool), status=[None] * s, detail=[""] * s, history=[[float(v)] for v in values],
    )


def projected_gradient(theta: np.ndarray, grad: np.ndarray, free: FreeParameters) -> np.ndarray:
    """dQ/dtheta with the components that push against an active bound set to 0: (k,)."""
    lo, hi = np.asarray(free.lower), np.asarray(free.upper)
    span = np.maximum(np.abs(theta), 1.0) * 1e-12
    at_lo = np.isfinite(lo) & (theta - lo <= span) & (grad > 0)
    at_hi = np.isfinite(hi) & (hi - theta <= span) & (grad < 0)
    return np.where(at_lo | at_hi, 0.0, grad)


def _box_step(r: np.ndarray, Jr: np.ndarray, S: np.ndarray, lam: float, theta: np.ndarray,
              free: FreeParameters) -> tuple[np.ndarray, float]:
    """The damped step of the quadratic model within the bounds, and the decrease of Q it predicts.

    The model of Q/2 = |r|^2/2 is  r'J d + d' (J'J + S) d / 2  (Gauss-Newton plus the secant
    estimate S of the residuals' curvature, as in NL2SOL); the step minimises it plus
    lam d' D d / 2 (D = diag(J'J), Marquardt's scaling, floored for columns that vanish) subject
    to lower <= theta + d <= upper. With H = J'J + S + lam D = L L' (lam raised until H is
    positive definite) the model is |L' d + L^-1 J'r|^2 / 2 + const, a bounded linear
    least-squares problem, solved exactly (BVLS).
    """
    from scipy.optimize import lsq_linear

    JtJ = Jr.T @ Jr
    diag = np.diag(JtJ)
    D = np.maximum(diag, 1e-12 * max(float(diag.max(initial=0.0)), 1e-300))
    grad = Jr.T @ r
    # Raise the damping until the model is positive definite. D may be floored far below S's scale
    # in a column that (nearly) vanishes, so the shift doubles up to 200 times; if S's
    # curvature still dominates, the model drops S (Gauss-Newton, positive definite for lam > 0).
    shift, L = lam, None
    for curvature in (S, np.zeros_like(S)):
        for _ in range(200):
            try:
                L = np.linalg.cholesky(JtJ + curvature + shift * np.diag(D))
                break
            except np.linalg.LinAlgError:
                shift = max(2.0 * shift, 1e-8)
        if L is not None:
            S = curvature
            break
        shift = lam
    if L is None:  # pragma: no cover - J'J + lam D with D > 0 always factorises
        raise np.linalg.LinAlgError("no positive definite model")
    A = L.T
    b = -np.linalg.solve(L, grad)
    lo = np.asarray(free.lower) - theta
    hi = np.asarray(free.upper) - theta
    step = lsq_linear(A, b, bounds=(np.minimum(lo, 0.0), np.maximum(hi, 0.0)), method="bvls").x
    # Predicted decrease of Q = |r|^2 by the undamped model.
    predicted = float(-2.0 * (grad @ step) - step @ (JtJ + S) @ step)
    return step, predicted


def _secant_update(S: np.ndarray, step: np.ndarray, J_old: np.ndarray, J_new: np.ndarray, r_old: np.ndarray,
                   r_new: np.ndarray) -> np.ndarray:
    """The structured secant update of S, the curvature sum_i r_i Hess r_i that Gauss-Newton leaves
    out (Dennis, Gay and Welsch 1981, NL2SOL): S s = y# with y# = (J_new - J_old)' r_new, a
    symmetric rank-two change, S first sized down by min(1, |s'y#| / |s'Ss|)."""
    y = J_new.T @ r_new - J_old.T @ r_old
    y_sharp = (J_new - J_old).T @ r_new
    ys = float(y @ step)
    if not ys > 1e-12 * np.linalg.norm(y) * np.linalg.norm(step):
        return S
    sSs = float(step @ S @ step)
    if sSs != 0.0:
        S = S * min(1.0, abs(float(step @ y_sharp)) / abs(sSs))
    z = y_sharp - S @ step
    return S + (np.outer(z, y) + np.outer(y, z)) / ys - float(z @ step) * np.outer(y, y) / ys**2


def _status(batch: BatchState, i: int, C: np.ndarray, weights: np.ndarray, free: FreeParameters,
            tol: Tolerances) -> Status | None:
    value = batch.values[i]
    if not np.isfinite(value) or not np.isfinite(batch.J[i]).all():
        return Status.NON_FINITE
    g = batch.M[i] - batch.T[i]
    grad = projected_gradient(batch.theta[i], 2.0 * batch.J[i].T @ weights @ g, free)
    if np.max(np.abs(grad)) <= tol.gtol:
        return Status.GRADIENT
    if batch.stalls[i] >= tol.patience:
        return Status.CRITERION_CHANGE
    # The Gauss-Newton model's best decrease within the bounds (no damping): below ftol, no
    # evaluation can gain more than the tolerance.
    _, predicted = _box_step(C.T @ g, C.T @ batch.J[i], batch.S[i], 1e-12, batch.theta[i], free)
    if predicted <= tol.ftol * (1.0 + abs(value)):
        return Status.PREDICTED_DECREASE
    if batch.lam[i] > LM_LAMBDA_MAX:
        return Status.NO_DESCENT
    return None


def run_batch(
    batch: BatchState,
    problem: Problem,
    free: FreeParameters,
    tol: Tolerances,
    on_iteration: Callable[[BatchState], None] | None = None,
    prune: bool = True,
) -> BatchState:
    """Advance every start by Levenberg-Marquardt until each converges, fails or reaches ``max_iter``.

    An iteration gives each active start one evaluation at its trial point theta + d: accepted when
    Q falls (the damping then shrinks by Nielsen's rule), rejected otherwise (the damping grows).
    With ``prune`` (starts that share their targets), a start whose criterion after
    :data:`PRUNE_AFTER` iterations exceeds 2 Q_best + 1 is stopped as dominated. ``on_iteration``
    is called after every iteration (checkpoints, progress bars).
    """
    weights = np.asarray(problem.weights, dtype=np.float64)
    C = _cholesky_factor(weights)
    lo, hi = np.asarray(free.lower), np.asarray(free.upper)
    while True:
        for i in np.flatnonzero(~batch.done):
            status = _status(batch, i, C, weights, free, tol)
            if status is None and batch.evaluations[i] > tol.max_iter:
                status = Status.MAX_ITER
            if status is not None:
                batch.done[i], batch.status[i] = True, status
        if prune and batch.iteration >= PRUNE_AFTER:
            best = int(np.argmin(batch.values))
            for i in np.flatnonzero(~batch.done):
                if batch.values[i] > 2.0 * batch.values[best] + 1.0:
                    batch.done[i], batch.status[i] = True, Status.DOMINATED
                    batch.detail[i] = (f"by start {best + 1} (criterion {batch.values[i]:.4g} against "
                                       f"{batch.values[best]:.4g} after {batch.iteration} iterations)")
        if batch.done.all():
            return batch
        for i in np.flatnonzero(~batch.done):
            g = batch.M[i] - batch.T[i]
            r_old, Jr_old = C.T @ g, C.T @ batch.J[i]
            step, predicted = _box_step(r_old, Jr_old, batch.S[i], batch.lam[i], batch.theta[i], free)
            theta_new = np.clip(batch.theta[i] + step, lo, hi)
            m_new, J_new, X_new, fp_it = _evaluate_at(theta_new, batch.X[i], problem)
            batch.evaluations[i] += 1
            batch.fp_iterations[i] += fp_it
            value, new = batch.values[i], _value(m_new, batch.T[i], weights)
            rho = (value - new) / predicted if predicted > 0 else -1.0
            if np.isfinite(new) and np.isfinite(J_new).all() and new < value and rho > 1e-4:
                batch.stalls[i] = batch.stalls[i] + 1 if value - new <= tol.ftol * (1.0 + abs(value)) else 0
                step = theta_new - batch.theta[i]
                batch.S[i] = _secant_update(batch.S[i], step, Jr_old, C.T @ J_new, r_old, C.T @ (m_new - batch.T[i]))
                batch.theta[i], batch.M[i], batch.J[i], batch.X[i] = theta_new, m_new, J_new, X_new
                batch.values[i] = new
                batch.lam[i] *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
                batch.nu[i] = 4.0
                batch.history[i].append(float(new))
            else:
                batch.lam[i] *= batch.nu[i]
                batch.nu[i] *= 2.0
        batch.iteration += 1
        if on_iteration is not None:
            on_iteration(batch)


def finish_starts(batch: BatchState, starts: np.ndarray, free: FreeParameters, problem: Problem) -> list[StartRecord]:
    """One record per start."""
    weights = np.asarray(problem.weights, dtype=np.float64)
    records = []
    for i in range(batch.theta.shape[0]):
        g = batch.M[i] - batch.T[i]
        grad = projected_gradient(batch.theta[i], 2.0 * batch.J[i].T @ weights @ g, free)
        grad_norm = float(np.max(np.abs(grad))) if np.isfinite(grad).all() else float("inf")
        theta = np.array(batch.theta[i])
        records.append(StartRecord(
            start=starts[i], theta=theta, u=free.to_u(free.inside(theta, margin=0.0)), value=float(batch.values[i]),
            grad_norm=grad_norm, iterations=int(batch.evaluations[i]), status=batch.status[i], method=METHOD,
            history=list(batch.history[i]), fp_iterations=int(batch.fp_iterations[i]), detail=batch.detail[i],
        ))
    return records


#: How the starting points are drawn (recorded in report.json).
START_DESIGN = ("the baseline (moved inside the box), then a scrambled Sobol sequence (scipy.stats.qmc) "
                "over the middle 90% of the search box, seeded by the run's seed")


def starting_points(free: FreeParameters, base: Params, n_starts: int, seed: int) -> np.ndarray:
    """n_starts starting values of theta: (n_starts, k).

    The first is the base (baseline) value, moved inside the search box; the others are the first
    points of a scrambled Sobol sequence (space-filling, seeded by ``seed``) mapped to the middle
    90% of the box, which is finite for every parameter (``parameters.SEARCH_BOX`` or --bound).
    """
    from scipy.stats import qmc

    first = free.inside([float(getattr(base, n)) for n in free.names], margin=0.01)
    rows = [first]
    if n_starts > 1:
        lo, hi = np.asarray(free.lower), np.asarray(free.upper)
        m = int(np.ceil(np.log2(n_starts - 1))) if n_starts > 2 else 0
        sobol = qmc.Sobol(d=free.size, scramble=True, seed=np.random.default_rng([seed, 20260305]))
        for u in sobol.random_base2(m)[: n_starts - 1]:
            rows.append(free.inside(lo + (hi - lo) * (0.05 + 0.9 * u), margin=0.01))
    return np.array(rows)
