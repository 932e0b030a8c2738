"""The method of simulated moments (MODEL.md section 7) with optax and exact derivatives.

With moment errors g(theta) = m(theta) - m_data and weights W the estimator minimises
Q(theta) = g' W g over bounded parameters. The optimiser works on unconstrained coordinates u
(``estimation.parameters``) with optax's L-BFGS and zoom line search; the gradient is reverse-mode
autodiff through the model, its education fixed point included. Several starting points advance
together as one batch (``jax.vmap`` over starts). A start whose L-BFGS run fails (a non-finite
criterion, or no decrease for several iterations) is finished by a first-order method (gradient
descent with a backtracking line search that accepts only decreases).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxmodel
from estimation.parameters import FreeArrays, params_with, theta_of_u
from jaxmodel import Draws, Params, Settings

#: L-BFGS with optax's zoom line search (strong Wolfe conditions).
LBFGS = optax.lbfgs(memory_size=10)
#: First-order fallback: steepest descent with a backtracking (Armijo) line search.
FALLBACK = optax.chain(
    optax.sgd(learning_rate=1.0),
    optax.scale_by_backtracking_linesearch(max_backtracking_steps=40, store_grad=True),
)


@dataclasses.dataclass(frozen=True)
class Problem:
    """The static part of an estimation (hashable): the model settings. The free parameters are
    data (``ProblemData.free``), so every free set of the same size shares one compilation."""

    settings: Settings


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ProblemData:
    """The array part of an estimation (a pytree, passed to jitted functions as arguments).

    Attributes:
        base: parameters held fixed (the free ones are overwritten).
        free: which parameters are free, with their bounds.
        draws: the estimation's draws, fixed throughout.
        targets: (m,) m_data.
        weights: (m, m) W.
    """

    base: Params
    free: FreeArrays
    draws: Draws
    targets: jax.Array
    weights: jax.Array


def model_moments(theta: jax.Array, data: ProblemData, problem: Problem) -> jax.Array:
    """m(theta): (6,) model moments at the free parameters theta (k,)."""
    params = params_with(data.base, theta, data.free)
    return jaxmodel.moments(params, data.draws, problem.settings).vector()


def criterion(u: jax.Array, targets: jax.Array, data: ProblemData, problem: Problem) -> jax.Array:
    """Q = g' W g with g = m(theta(u)) - targets; +inf where the model's moments are not finite
    (the line search then backs off instead of stepping into the region)."""
    g = model_moments(theta_of_u(u, data.free), data, problem) - targets
    q = g @ data.weights @ g
    return jnp.where(jnp.isfinite(q), q, jnp.inf)


def _init(solver, u, targets, data, problem):
    """Optimiser state at u with the criterion's value and gradient stored in it."""
    value, grad = jax.value_and_grad(criterion)(u, targets, data, problem)
    state = solver.init(u)
    return optax.tree.set(state, value=value, grad=grad)


def _step(solver, u, state, targets, data, problem):
    """One optimiser iteration from (u, state), reusing the value and gradient the state holds."""
    fun = functools.partial(criterion, targets=targets, data=data, problem=problem)
    value, grad = optax.tree.get(state, "value"), optax.tree.get(state, "grad")
    updates, state = solver.update(grad, state, u, value=value, grad=grad, value_fn=fun)
    return optax.apply_updates(u, updates), state


@functools.partial(jax.jit, static_argnames="problem")
def init_batch(U: jax.Array, T: jax.Array, data: ProblemData, problem: Problem):
    """L-BFGS states for a batch of starting points U (S, k) with targets T (S, m).

    Each start has its own targets, so that one compiled batch serves the multistart (equal rows)
    and the re-estimations with shifted targets alike.
    """
    states = jax.vmap(lambda u, t: _init(LBFGS, u, t, data, problem))(U, T)
    return _strong(states)


def _strong(tree):
    """Leaves without JAX's weak type: the state after a step has none, and equal types avoid
    compiling ``step_batch`` a second time on its second call."""
    return jax.tree_util.tree_map(lambda x: x.astype(x.dtype), tree)


@functools.partial(jax.jit, static_argnames="problem")
def step_batch(U: jax.Array, states, T: jax.Array, data: ProblemData, problem: Problem):
    """One L-BFGS iteration for every start in the batch (vmap over starts)."""
    return jax.vmap(lambda u, s, t: _step(LBFGS, u, s, t, data, problem))(U, states, T)


@functools.partial(jax.jit, static_argnames="problem")
def fallback_init(u, targets, data, problem):
    return _init(FALLBACK, u, targets, data, problem)


@functools.partial(jax.jit, static_argnames="problem")
def fallback_step(u, state, targets, data, problem):
    return _step(FALLBACK, u, state, targets, data, problem)


@functools.partial(jax.jit, static_argnames="problem")
def jacobian(theta: jax.Array, data: ProblemData, problem: Problem) -> jax.Array:
    """G = dm/dtheta at theta by forward-mode autodiff: (6, k)."""
    return jax.jacfwd(model_moments)(theta, data, problem)


@functools.partial(jax.jit, static_argnames=("settings", "n_sets"))
def simulated_moments(params: Params, key: jax.Array, settings: Settings, n_sets: int) -> jax.Array:
    """Moments at ``params`` on ``n_sets`` independent draw sets: (n_sets, 6).

    Draw sets come from ``jax.random.split(key, n_sets)`` and are simulated in batches of four
    (``lax.map`` with ``batch_size``, i.e. ``vmap`` within a batch).
    """
    keys = jax.random.split(key, n_sets)

    def one(k):
        return jaxmodel.moments(params, jaxmodel.make_draws(k, settings), settings).vector()

    return jax.lax.map(one, keys, batch_size=min(4, n_sets))


def simulation_noise(params: Params, key: jax.Array, settings: Settings, n_sets: int) -> np.ndarray:
    """Omega_sim: covariance (ddof 1) of the simulated moments over ``n_sets`` draw sets: (6, 6)."""
    sims = np.asarray(simulated_moments(params, key, settings, n_sets))
    return np.cov(sims, rowvar=False, ddof=1)


@dataclasses.dataclass
class StartRecord:
    """What happened to one starting point."""

    start: np.ndarray  # (k,) theta at the start
    theta: np.ndarray  # (k,) theta at the end
    u: np.ndarray  # (k,)
    value: float
    grad_norm: float  # max |dQ/du|
    iterations: int
    status: str
    method: str  # "L-BFGS" or "L-BFGS then gradient descent"
    history: list[float]


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """Stopping rules of the optimiser.

    Attributes:
        gtol: stop when max |dQ/du| <= gtol.
        ftol: stop when the criterion falls by less than ftol (1 + Q) in ``patience`` iterations
            in a row.
        max_iter: most L-BFGS iterations per start.
        patience: iterations without relevant decrease before stopping (or falling back).
    """

    gtol: float = 1e-6
    ftol: float = 1e-10
    max_iter: int = 100
    patience: int = 3


def _status(value: float, grad_norm: float, stalls: int, tol: Tolerances) -> str | None:
    if not np.isfinite(value):
        return "failed: non-finite criterion"
    if grad_norm <= tol.gtol:
        return "converged: gradient norm below gtol"
    if stalls >= tol.patience:
        return "converged: criterion change below ftol"
    return None


@dataclasses.dataclass
class BatchState:
    """Optimiser state of all starts, enough to resume bit for bit."""

    U: np.ndarray  # (S, k)
    T: np.ndarray  # (S, m) targets of each start
    states: object  # pytree with leading axis S
    iteration: int
    stalls: np.ndarray  # (S,) int
    done: np.ndarray  # (S,) bool
    status: list  # S entries, str or None
    history: list  # S lists of floats


def new_batch(U0: np.ndarray, data: ProblemData, problem: Problem, T: np.ndarray | None = None) -> BatchState:
    """A fresh batch from starting points U0 (S, k); targets T (S, m) default to data.targets."""
    U = jnp.asarray(U0)
    T = np.tile(np.asarray(data.targets), (U0.shape[0], 1)) if T is None else np.asarray(T)
    states = init_batch(U, jnp.asarray(T), data, problem)
    values = np.asarray(optax.tree.get(states, "value"))
    s = U0.shape[0]
    return BatchState(
        U=np.asarray(U), T=T, states=states, iteration=0, stalls=np.zeros(s, int), done=np.zeros(s, bool),
        status=[None] * s, history=[[float(v)] for v in values],
    )


def run_batch(
    batch: BatchState,
    data: ProblemData,
    problem: Problem,
    tol: Tolerances,
    on_iteration: Callable[[BatchState], None] | None = None,
) -> BatchState:
    """Advance all starts with L-BFGS until each converges, fails or reaches ``max_iter``.

    Starts that are done are frozen (their iterate and state are kept) while the others move.
    ``on_iteration`` is called after every iteration (checkpoints, progress bars).
    """
    while batch.iteration < tol.max_iter and not batch.done.all():
        values = np.asarray(optax.tree.get(batch.states, "value"))
        grads = np.asarray(optax.tree.get(batch.states, "grad"))
        for i in np.flatnonzero(~batch.done):
            status = _status(values[i], float(np.max(np.abs(grads[i]))), int(batch.stalls[i]), tol)
            if status is not None:
                batch.done[i], batch.status[i] = True, status
        if batch.done.all():
            break
        # Rows of finished starts are stepped as copies of an active start: a vmapped line search
        # runs as long as its slowest row, and a failed start (non-finite values) would make every
        # iteration run the line search to its limit (measured: 3.5 s instead of 0.25 s per
        # iteration at N = 5000). Their results are discarded below; the batch keeps its shape.
        source = np.arange(batch.U.shape[0])
        source[batch.done] = np.flatnonzero(~batch.done)[0]
        U_new, states_new = step_batch(
            jnp.asarray(batch.U[source]), jax.tree_util.tree_map(lambda x: x[source], batch.states),
            jnp.asarray(batch.T[source]), data, problem,
        )
        keep = jnp.asarray(batch.done)
        states_new = jax.tree_util.tree_map(
            lambda new, old: jnp.where(keep.reshape((-1,) + (1,) * (new.ndim - 1)), old, new), states_new, batch.states
        )
        U_new = np.where(batch.done[:, None], batch.U, np.asarray(U_new))
        new_values = np.asarray(optax.tree.get(states_new, "value"))
        for i in np.flatnonzero(~batch.done):
            old, new = values[i], new_values[i]
            if not np.isfinite(new) or new > old:
                # A line search that ends above where it started has failed: keep the old point.
                batch.stalls[i] = tol.patience
                U_new[i] = batch.U[i]
                states_new = jax.tree_util.tree_map(lambda n, o, i=i: n.at[i].set(o[i]), states_new, batch.states)
                batch.done[i], batch.status[i] = True, "stalled: line search found no decrease"
                continue
            batch.stalls[i] = batch.stalls[i] + 1 if old - new <= tol.ftol * (1.0 + abs(old)) else 0
            batch.history[i].append(float(new))
        batch.U, batch.states = U_new, states_new
        batch.iteration += 1
        if on_iteration is not None:
            on_iteration(batch)
    for i in np.flatnonzero(~batch.done):
        batch.status[i] = "stopped: max_iter reached"
    return batch


def polish_first_order(u: np.ndarray, targets: np.ndarray, data: ProblemData, problem: Problem,
                       tol: Tolerances) -> tuple:
    """Gradient descent with backtracking from u; returns (u, value, grad_norm, iterations, history)."""
    targets = jnp.asarray(targets)
    state = fallback_init(jnp.asarray(u), targets, data, problem)
    u = jnp.asarray(u)
    history = [float(optax.tree.get(state, "value"))]
    stalls = 0
    for it in range(1, 4 * tol.max_iter + 1):
        value = float(optax.tree.get(state, "value"))
        grad_norm = float(jnp.max(jnp.abs(optax.tree.get(state, "grad"))))
        if not np.isfinite(value) or grad_norm <= tol.gtol or stalls >= tol.patience:
            return np.asarray(u), value, grad_norm, it - 1, history
        u_new, state_new = fallback_step(u, state, targets, data, problem)
        new = float(optax.tree.get(state_new, "value"))
        if not np.isfinite(new) or new > value:
            return np.asarray(u), value, grad_norm, it - 1, history
        stalls = stalls + 1 if value - new <= tol.ftol * (1.0 + abs(value)) else 0
        u, state = u_new, state_new
        history.append(new)
    value = float(optax.tree.get(state, "value"))
    return np.asarray(u), value, float(jnp.max(jnp.abs(optax.tree.get(state, "grad")))), 4 * tol.max_iter, history


def finish_starts(batch: BatchState, starts: np.ndarray, data: ProblemData, problem: Problem,
                  tol: Tolerances) -> list[StartRecord]:
    """Records of every start; failed or stalled L-BFGS runs are finished by the first-order method."""
    values = np.asarray(optax.tree.get(batch.states, "value"))
    grads = np.asarray(optax.tree.get(batch.states, "grad"))
    records = []
    for i in range(batch.U.shape[0]):
        u, value = batch.U[i], float(values[i])
        grad_norm, method, status = float(np.max(np.abs(grads[i]))), "L-BFGS", batch.status[i]
        history = list(batch.history[i])
        iterations = len(history) - 1
        if status.startswith(("failed", "stalled")) and np.isfinite(value) and grad_norm > tol.gtol:
            u, value, grad_norm, extra, more = polish_first_order(u, batch.T[i], data, problem, tol)
            history += more[1:]
            iterations += extra
            method = "L-BFGS then gradient descent"
            status = (
                "converged: gradient norm below gtol" if grad_norm <= tol.gtol
                else f"{status}; gradient descent stopped at max|grad| = {grad_norm:.2e}"
            )
        theta = np.asarray(theta_of_u(jnp.asarray(u), data.free))
        records.append(StartRecord(
            start=starts[i], theta=theta, u=np.asarray(u), value=value, grad_norm=grad_norm,
            iterations=iterations, status=status, method=method, history=history,
        ))
    return records


def starting_points(free: FreeParameters, base: Params, n_starts: int, seed: int) -> np.ndarray:
    """n_starts starting values of theta: (n_starts, k).

    The first is the base (baseline) value, moved inside the bounds; the others are drawn from a
    fixed PRNG key: uniformly over the middle 80% of a two-sided range, log-uniformly within a
    factor 3 of the base value for one-sided bounds, and base +- 1 without bounds.
    """
    first = free.inside([float(getattr(base, n)) for n in free.names], margin=0.01)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 20260305]))
    rows = [first]
    for _ in range(n_starts - 1):
        row = []
        for j, n in enumerate(free.names):
            lo, hi, b = free.lower[j], free.upper[j], first[j]
            if np.isfinite(lo) and np.isfinite(hi):
                row.append(lo + (hi - lo) * rng.uniform(0.1, 0.9))
            elif np.isfinite(lo):
                row.append(lo + max(b - lo, 1e-2) * np.exp(rng.uniform(-np.log(3), np.log(3))))
            elif np.isfinite(hi):
                row.append(hi - max(hi - b, 1e-2) * np.exp(rng.uniform(-np.log(3), np.log(3))))
            else:
                row.append(b + rng.uniform(-1, 1))
        rows.append(free.inside(row, margin=0.01))
    return np.array(rows)
