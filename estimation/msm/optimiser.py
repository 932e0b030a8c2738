"""The optimiser of the method of simulated moments: one optax loop that advances every start.

With moment errors g(theta) = m(theta) - m_data and weights W = C C' the estimator minimises
Q(theta) = g' W g = |r|^2 with residuals r = C' g over the box of the free parameters' bounds.
The loop is optax's: ``updates, state = tx.update(...)``, ``params = optax.apply_updates(...)``,
with a state that is a pytree (:class:`LoopState`) and one compiled program per iteration that
advances every start at once: on an accelerator the evaluations of all starts are one ``vmap``-ed
call (on the CPU a ``lax.map`` over the starts in the same program, which skips the stopped ones:
``Multistart.lanes``), and a start that has converged, failed, reached ``max_iter`` or is dominated
is masked (its lane keeps its state), never dispatched on its own. The host keeps only the
checkpoint and the progress bar.

Optimisers (:data:`OPTIMISERS`, ``levelfield calibrate --optimizer NAME``):

- ``lm`` (default): bounded Levenberg-Marquardt in theta itself with NL2SOL's secant term
  (``estimation.msm.lm.scale_by_bounded_lm``), fed the residuals and their Jacobian dr/dtheta
  from forward-mode autodiff (through the education fixed point by the implicit function
  theorem): one evaluation per iteration. Each step is the exact minimiser of the damped model in
  a box (an active-set solve in JAX); the model's affine-scaling term and the box's step-back keep
  the iterates off the bounds until a bound binds, which is then met exactly; on the default
  problem it needs a third of L-BFGS's evaluations (README, Performance).
- ``lm-box``: the same with the box-only step (straight onto a bound the linear model points at):
  fewer evaluations from a good start, stuck at a corner of the box more often from a poor one
  (``benchmarks/bench_optimisers.py``).
- ``lbfgs``: ``optax.lbfgs`` with its zoom line search on the unconstrained scale u
  (``parameters.theta_of_u``), driven by reverse-mode gradients of Q(theta(u)).
- ``adam``: ``optax.adam`` on u, the first-order baseline (``benchmarks/bench_optimisers.py``):
  one evaluation of Q and its gradient per iteration, the best point so far kept.

Any optax ``GradientTransformation`` that wants the gradient of Q in u plugs in the same way
(:class:`GradientMethod`).

Every evaluation starts the education fixed point from aggregates carried in the loop state (a
warm start: those of the start's last accepted point for ``lm``, of its first point for the
gradient methods, whose line searches see only values), so a resumed run, whose checkpoint holds
the whole state, repeats the same computations bit for bit.

After :data:`PRUNE_AFTER` iterations a start whose criterion exceeds 2 Q_best + 1 is stopped as
dominated, so the work follows the starts that are still worth running.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from estimation.msm import lm, programs
from estimation.msm.parameters import FreeArrays, FreeParameters, params_with, theta_of_u
from estimation.msm.status import RUNNING, Status
from jaxmodel import Assignment, Draws, Params, Settings
from jaxmodel.outcomes import STATE_DIAGNOSTICS, cold, moments_at

__all__ = [
    "DEFAULT_OPTIMIZER", "OPTIMISERS", "PRUNE_AFTER", "Batch", "Evaluation", "LoopState", "Multistart", "Problem",
    "StartRecord", "Status", "Tolerances", "criterion_in_u", "default_lanes", "evaluate", "evaluate_in_loop", "finish_starts", "new_batch", "restore_batch", "run_batch",
]

#: Iterations after which a start that is clearly worse than the best one is stopped.
PRUNE_AFTER = 4


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


# --- Evaluations ---------------------------------------------------------------------------------


class Evaluation(NamedTuple):
    """The moments and their Jacobian at one parameter value (``evaluate``)."""

    jacobian: np.ndarray  # (6, k) G = dm/dtheta
    moments: np.ndarray  # (6,) m(theta)
    aggregates: np.ndarray  # (2, 3 O + F) the fixed points' aggregates, the next warm start
    before: dict  # STATE_DIAGNOSTICS of the state before AI (fixed-point residual, iterations, ...)
    after: dict  # and after

    def vector(self) -> np.ndarray:
        return self.moments


def _moments_and_jacobian(theta: jax.Array, start: jax.Array, problem: Problem) -> tuple:
    """G (m, k), m (m,), the aggregates (2, D) and both states' diagnostics at theta (k,),
    warm-started from ``start`` (2, D); traceable, one point."""
    def f(t):
        params = params_with(problem.base, t, problem.free)
        m = moments_at(params, problem.draws, problem.settings, start, problem.assigned)
        return m.vector(), m

    G, m = jax.jacfwd(f, has_aux=True)(theta)

    def diagnostics(state: dict) -> jax.Array:
        return jnp.stack([state[name] for name in STATE_DIAGNOSTICS])

    return G, m.vector(), m.aggregates, diagnostics(m.before), diagnostics(m.after)


_evaluate = jax.jit(_moments_and_jacobian)
_FP_ITERATIONS = STATE_DIAGNOSTICS.index("fp_iterations")


def evaluate(theta, start, problem: Problem) -> Evaluation:
    """The moments and their Jacobian at theta, from a warm start of the fixed points.

    One compiled program (kept across processes by ``estimation.programs``) serves the inference
    and the flip checks; the optimiser runs the same computation for all its starts at once.

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


def criterion_in_u(u: jax.Array, start: jax.Array, targets: jax.Array, problem: Problem) -> jax.Array:
    """Q(theta(u)) = g'Wg (+inf where the moments are not finite), from the warm start ``start``."""
    params = params_with(problem.base, theta_of_u(u, problem.free), problem.free)
    g = moments_at(params, problem.draws, problem.settings, start, problem.assigned).vector() - targets
    q = g @ problem.weights @ g
    return jnp.where(jnp.isfinite(q), q, jnp.inf)


# --- Records and settings ------------------------------------------------------------------------


@dataclasses.dataclass
class StartRecord:
    """What happened to one starting point."""

    start: np.ndarray  # (k,) theta at the start
    theta: np.ndarray  # (k,) theta at the end
    u: np.ndarray  # (k,)
    value: float
    grad_norm: float  # max |dQ/dtheta| (projected on the bounds)
    iterations: int  # evaluations of the moments (and their derivatives)
    status: Status
    method: str
    history: list[float]  # the criterion at every accepted point
    fp_iterations: int = 0  # fixed-point iterations over the evaluations that report them (both states)
    detail: str = ""  # what the status alone does not say (the dominating start)

    @property
    def status_text(self) -> str:
        return self.status.describe(self.detail)


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """Stopping rules of the optimiser.

    Attributes:
        gtol: stop when max |dQ/dtheta| <= gtol (components pushing against an active bound left
            out; the gradient methods test max |dQ/du| on their scale).
        ftol: stop when the Gauss-Newton model predicts a decrease of Q below ftol (1 + Q), or when
            an accepted step decreased Q by less than that ``patience`` times in a row.
        max_iter: most iterations (evaluations) per start.
        patience: see ftol.
    """

    gtol: float = 1e-6
    ftol: float = 1e-10
    max_iter: int = 100
    patience: int = 3


class Lane(NamedTuple):
    """One start's record in the loop (every field gets a leading axis S in :class:`LoopState`)."""

    point: jax.Array  # shape=(k,): the accepted point on the optimiser's scale (theta or u)
    theta: jax.Array  # shape=(k,): the accepted point in theta
    value: jax.Array  # shape=(): Q there (+inf where not finite)
    moments: jax.Array  # shape=(m,): m(theta) (gradient methods: at the last full evaluation)
    jacobian: jax.Array  # shape=(m, k): dm/dtheta there
    aggregates: jax.Array  # shape=(2, D): the warm start of the next evaluation
    targets: jax.Array  # shape=(m,): m_data of this start
    status: jax.Array  # shape=(), int32: Status.code, 0 while running
    evaluations: jax.Array  # shape=(), int32: evaluations made
    fp_iterations: jax.Array  # shape=(), int32: fixed-point iterations they took (both states)
    stalls: jax.Array  # shape=(), int32: accepted steps in a row that decreased Q by <= ftol (1 + Q)
    accepted: jax.Array  # shape=(), bool: whether the last iteration accepted a new point
    before: jax.Array  # shape=(d,): STATE_DIAGNOSTICS of the fixed point before AI at the last full evaluation
    after: jax.Array  # shape=(d,): and after


class LoopState(NamedTuple):
    """Everything the loop carries from one iteration to the next: enough to resume bit for bit."""

    params: jax.Array  # shape=(S, k): the next point each start evaluates, on the optimiser's scale
    opt_state: optax.OptState  # the optax state of every start (leading axis S)
    lane: Lane  # the starts' records (leading axis S)
    history: jax.Array  # shape=(S, history_width(max_iter)): Q at every accepted point, NaN beyond n_history
    n_history: jax.Array  # shape=(S,), int32
    dominated: jax.Array  # shape=(S, 4): dominating start, own and best Q, iteration (-1, nan, nan, -1: not)
    iteration: jax.Array  # shape=(), int32: iterations of the loop (-1 before the first evaluation)
    prune: jax.Array  # shape=(), bool: whether dominated starts stop (starts that share their targets)
    max_iter: jax.Array  # shape=(), int32: Tolerances.max_iter, an argument of the programs, not a constant


@dataclasses.dataclass(frozen=True)
class Method:
    """An optimiser of the loop: ``start`` sets up the optax state of one start, ``advance`` makes
    one iteration of one start (both traceable, vmapped by the loop). With ``start_evaluates``
    the loop evaluates every start before ``start`` (its lane then holds the moments and their
    Jacobian there); otherwise the first ``advance`` evaluates the starting point.

    Attributes:
        name: what ``--optimizer`` takes.
        method: what the records and report.json call it.
        scale: "theta" (the bounded parameters) or "u" (``theta_of_u``'s unconstrained scale).
    """

    name: str
    method: str
    scale: str
    start_evaluates: bool = True

    def settings(self) -> dict:  # pragma: no cover - every method overrides it
        raise NotImplementedError

    def start(self, u0, lane: Lane, problem: Problem, C, tol: Tolerances):  # pragma: no cover
        raise NotImplementedError

    def advance(self, params, opt_state, lane: Lane, problem: Problem, C, tol: Tolerances):  # pragma: no cover
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class LevenbergMarquardt(Method):
    """``lm``: :func:`estimation.msm.lm.scale_by_bounded_lm` on theta, fed r = C'g and dr/dtheta.

    ``interior``: the step that keeps off the bounds until one binds (``lm``, the default), or the
    box-only step that goes straight onto a bound the linear model points at (``lm-box``: fewer
    evaluations from a good start, a bound-constrained local minimum more often from a poor one).
    """

    name: str = "lm"
    method: str = "Levenberg-Marquardt"
    scale: str = "theta"
    start_evaluates: bool = False
    interior: bool = True

    def settings(self) -> dict:
        if self.interior:
            step = ("exact minimiser of the damped model (with Coleman-Li's affine-scaling term) in the box "
                    f"stepped back by max({lm.STEP_BACK}, 1 - |g v|) (primal active set); a variable within "
                    f"{lm.SNAP:g} of its width from a bound goes onto it")
        else:
            step = "exact minimiser of the damped model in the box (primal active set)"
        return {"transformation": "estimation.msm.lm.scale_by_bounded_lm", "scale": self.scale,
                "lambda0": lm.LM_LAMBDA0, "lambda_max": lm.LM_LAMBDA_MAX, "secant": "NL2SOL structured update",
                "step": step}

    def transformation(self, problem: Problem, tol: Tolerances):
        return lm.scale_by_bounded_lm(problem.free.lower, problem.free.upper, problem.targets.shape[0],
                                      gtol=tol.gtol, ftol=tol.ftol, patience=tol.patience, interior=self.interior)

    def _judge(self, tx, params, opt_state, lane: Lane, problem: Problem, C):
        r = C.T @ (lane.moments - lane.targets)
        updates, opt_state = tx.update(jnp.zeros_like(params), opt_state, params, residuals=r,
                                       jacobian=C.T @ lane.jacobian)
        new = optax.projections.projection_box(optax.apply_updates(params, updates), problem.free.lower,
                                               problem.free.upper)
        return new, opt_state

    def start(self, u0, lane: Lane, problem: Problem, C, tol: Tolerances):
        del u0, C
        tx = self.transformation(problem, tol)
        return lane.theta, tx.init(lane.theta), lane

    def advance(self, params, opt_state, lane: Lane, problem: Problem, C, tol: Tolerances):
        tx = self.transformation(problem, tol)
        G, m, aggregates, before, after = _moments_and_jacobian(params, lane.aggregates, problem)
        trial = lane._replace(moments=m, jacobian=G)
        new, opt_state = self._judge(tx, params, opt_state, trial, problem, C)
        a = opt_state.accepted
        lane = lane._replace(
            point=opt_state.theta, theta=opt_state.theta, value=opt_state.value,
            moments=jnp.where(a, m, lane.moments), jacobian=jnp.where(a, G, lane.jacobian),
            aggregates=jnp.where(a, aggregates, lane.aggregates), status=opt_state.status,
            evaluations=lane.evaluations + 1,
            fp_iterations=lane.fp_iterations + (before[_FP_ITERATIONS] + after[_FP_ITERATIONS]).astype(jnp.int32),
            stalls=opt_state.stalls, accepted=a, before=jnp.where(a, before, lane.before),
            after=jnp.where(a, after, lane.after),
        )
        return new, opt_state, lane


@dataclasses.dataclass(frozen=True)
class GradientMethod(Method):
    """An optax transformation driven by Q(theta(u)) and its reverse-mode gradient in u.

    With ``linesearch`` the transformation ends in a line search that takes ``value``, ``grad``
    and ``value_fn`` (optax's zoom line search) and leaves the value and gradient at the new point
    in its state (``optax.tree_utils.tree_get(state, "value")``); a step that does not decrease Q
    ends the start (NO_DESCENT). Without one (a first-order method such as adam, whose iterates
    need not decrease Q) the start's first step is taken from the loop's first evaluation, and
    each iteration evaluates Q and its gradient at the trial point (one evaluation), keeps it in
    the lane if it is the best so far, and steps from it; a trial point that is not finite ends
    the start (NO_DESCENT), and a new best that lowers Q by at most ftol (1 + Q) counts as a
    stall (an evaluation that is no new best leaves the count). The rules GRADIENT (on
    max |dQ/du| at the trial point) and CRITERION_CHANGE are as for ``lm``.

    Attributes:
        make: the optax transformation's factory (no arguments).
        options: its settings, recorded in report.json.
    """

    make: Callable = None
    options: tuple = ()
    linesearch: bool = True

    def settings(self) -> dict:
        return {"transformation": self.method, "scale": self.scale, **dict(self.options)}

    def start(self, u0, lane: Lane, problem: Problem, C, tol: Tolerances):
        del C
        tx = self.make()
        opt_state = tx.init(u0)
        g = lane.moments - lane.targets
        dtheta_du = jax.jvp(lambda u: theta_of_u(u, problem.free), (u0,), (jnp.ones_like(u0),))[1]
        grad = 2.0 * dtheta_du * (lane.jacobian.T @ problem.weights @ g)
        finite = jnp.isfinite(lane.value) & jnp.all(jnp.isfinite(grad))
        status = jnp.where(~finite, Status.NON_FINITE.code,
                           jnp.where(jnp.max(jnp.abs(grad)) <= tol.gtol, Status.GRADIENT.code, RUNNING))
        params = u0
        if self.linesearch:
            opt_state = optax.tree_utils.tree_set(opt_state, value=lane.value, grad=grad)
        else:
            updates, opt_state = tx.update(jnp.where(finite, grad, 0.0), opt_state, u0)
            params = jnp.where(status == RUNNING, optax.apply_updates(u0, updates), u0)
        return params, opt_state, lane._replace(point=u0, status=status.astype(jnp.int32))

    def advance(self, params, opt_state, lane: Lane, problem: Problem, C, tol: Tolerances):
        del C
        if self.linesearch:
            return self._advance_by_linesearch(params, opt_state, lane, problem, tol)
        return self._advance_first_order(params, opt_state, lane, problem, tol)

    def _advance_by_linesearch(self, params, opt_state, lane: Lane, problem: Problem, tol: Tolerances):
        """One iteration that ends in the line search: the new point decreases Q or ends the start."""
        tx = self.make()

        def value_fn(u, start, targets):
            return criterion_in_u(u, start, targets, problem)

        value = optax.tree_utils.tree_get(opt_state, "value")
        grad = optax.tree_utils.tree_get(opt_state, "grad")
        updates, opt_state = tx.update(grad, opt_state, params, value=value, grad=grad, value_fn=value_fn,
                                       start=lane.aggregates, targets=lane.targets)
        new = optax.apply_updates(params, updates)
        new_value = optax.tree_utils.tree_get(opt_state, "value")
        new_grad = optax.tree_utils.tree_get(opt_state, "grad")
        steps = optax.tree_utils.tree_get(opt_state, "info").num_linesearch_steps
        evaluations = lane.evaluations + jnp.maximum(steps, 1).astype(jnp.int32)
        ok = jnp.isfinite(new_value) & (new_value < lane.value) & jnp.all(jnp.isfinite(new))
        small = lane.value - new_value <= tol.ftol * (1.0 + jnp.abs(lane.value))
        stalls = jnp.where(ok & small, lane.stalls + 1, jnp.where(ok, 0, lane.stalls)).astype(jnp.int32)
        point = jnp.where(ok, new, params)
        status = jnp.select(
            [~ok, jnp.max(jnp.abs(new_grad)) <= tol.gtol, stalls >= tol.patience],
            [Status.NO_DESCENT.code, Status.GRADIENT.code, Status.CRITERION_CHANGE.code], RUNNING)
        lane = lane._replace(point=point, theta=jnp.where(ok, theta_of_u(new, problem.free), lane.theta),
                             value=jnp.where(ok, new_value, lane.value), status=status.astype(jnp.int32),
                             evaluations=evaluations, stalls=stalls, accepted=ok)
        return point, opt_state, lane

    def _advance_first_order(self, params, opt_state, lane: Lane, problem: Problem, tol: Tolerances):
        """One evaluation at the trial point ``params``, kept if it is the best so far, and the
        transformation's step from it (the next trial point)."""
        tx = self.make()
        value, grad = jax.value_and_grad(criterion_in_u)(params, lane.aggregates, lane.targets, problem)
        finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
        best = finite & (value < lane.value)
        small = lane.value - value <= tol.ftol * (1.0 + jnp.abs(lane.value))
        stalls = jnp.where(best & small, lane.stalls + 1, jnp.where(best, 0, lane.stalls)).astype(jnp.int32)
        updates, opt_state = tx.update(jnp.where(finite, grad, 0.0), opt_state, params)
        status = jnp.select(
            [~finite, jnp.max(jnp.abs(grad)) <= tol.gtol, stalls >= tol.patience],
            [Status.NO_DESCENT.code, Status.GRADIENT.code, Status.CRITERION_CHANGE.code], RUNNING)
        lane = lane._replace(point=jnp.where(best, params, lane.point),
                             theta=jnp.where(best, theta_of_u(params, problem.free), lane.theta),
                             value=jnp.where(best, value, lane.value), status=status.astype(jnp.int32),
                             evaluations=lane.evaluations + 1, stalls=stalls, accepted=best)
        return optax.apply_updates(params, updates), opt_state, lane


#: lbfgs's settings: optax's defaults (memory 10, zoom line search of at most 20 steps from a
#: first trial step of 1).
LBFGS_OPTIONS = (("memory_size", 10), ("max_linesearch_steps", 20), ("initial_guess_strategy", "one"))


def _lbfgs():
    options = dict(LBFGS_OPTIONS)
    return optax.lbfgs(memory_size=options["memory_size"], linesearch=optax.scale_by_zoom_linesearch(
        max_linesearch_steps=options["max_linesearch_steps"], initial_guess_strategy=options["initial_guess_strategy"]))


#: adam's settings: optax's defaults but the learning rate, a step of 0.02 in u per coordinate
#: (the unconstrained scale, where a two-sided box spans u in [0, pi/2]).
ADAM_OPTIONS = (("learning_rate", 0.02), ("b1", 0.9), ("b2", 0.999), ("eps", 1e-8))


def _adam():
    return optax.adam(**dict(ADAM_OPTIONS))


#: The optimisers of ``levelfield calibrate --optimizer``.
OPTIMISERS: dict[str, Method] = {
    "lm": LevenbergMarquardt(),
    "lm-box": LevenbergMarquardt(name="lm-box", method="Levenberg-Marquardt (box-only step)", interior=False),
    "lbfgs": GradientMethod(name="lbfgs", method="optax.lbfgs (zoom line search)", scale="u", make=_lbfgs,
                            options=LBFGS_OPTIONS, linesearch=True),
    "adam": GradientMethod(name="adam", method="optax.adam", scale="u", make=_adam, options=ADAM_OPTIONS,
                           linesearch=False),
}
DEFAULT_OPTIMIZER = "lm"


def optimiser_record(name: str, tol: Tolerances) -> dict:
    """What report.json records about the optimiser: its name, method and settings."""
    method = OPTIMISERS[name]
    return {"name": name, "method": method.method, "settings": method.settings(),
            "tolerances": dataclasses.asdict(tol), "prune_after": PRUNE_AFTER}


# --- The loop ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Multistart:
    """The static part of a run of the loop (hashable: a static argument of its programs).

    Attributes:
        optimizer: a name in :data:`OPTIMISERS`.
        tol: the stopping rules.
        lanes: how one program advances the starts: "vmap" (every start in one vectorised call,
            the stopped ones masked: on an accelerator several starts cost about one) or "map"
            (``lax.map`` over the starts with a ``lax.cond`` that skips the stopped ones: on a
            CPU, where a vectorised call costs as much as its starts one after the other, only the
            running starts are computed). Default: "vmap" on an accelerator, "map" on the CPU
            (:func:`default_lanes`).
    """

    optimizer: str = DEFAULT_OPTIMIZER
    tol: Tolerances = Tolerances()
    lanes: str = "vmap"

    @property
    def method(self) -> Method:
        return OPTIMISERS[self.optimizer]

    @property
    def compiled(self) -> Multistart:
        """The static argument of the loop's programs: this with ``tol.max_iter`` left out. The cap
        travels in the state (``LoopState.max_iter``), so that runs that differ only in it share
        their compiled programs (and the persistent cache's executables); only the history's width
        (:func:`history_width`) depends on it, in steps."""
        return dataclasses.replace(self, tol=dataclasses.replace(self.tol, max_iter=0))


#: The narrowest history of the loop (columns of Q per start): every run with ``max_iter`` up to
#: this minus 2 (the default 100 included) has the same shapes, hence the same programs.
HISTORY_COLUMNS = 128


def history_width(max_iter: int) -> int:
    """Columns of ``LoopState.history`` for a cap of ``max_iter`` evaluations per start (which
    records at most ``max_iter + 2`` values): :data:`HISTORY_COLUMNS`, or the next power of two."""
    return max(HISTORY_COLUMNS, 1 << (max_iter + 1).bit_length())


def default_lanes() -> str:
    """ "map" on the CPU, "vmap" on an accelerator (see :class:`Multistart`)."""
    return "map" if jax.default_backend() == "cpu" else "vmap"


def _over_lanes(fn, how: Multistart, live, *args):
    """fn(*args) for every start (leading axis S of each argument); with ``how.lanes == "map"`` a
    stopped start (``live`` False) is skipped and keeps its arguments (fn must return them with
    the same structure)."""
    if how.lanes == "vmap":
        return jax.vmap(fn)(*args)

    def one(xs):
        alive, *rest = xs
        return jax.lax.cond(alive, lambda r: fn(*r), lambda r: tuple(r), rest)

    return jax.lax.map(one, (live, *args))


def _strong(tree):
    """Every leaf as a strongly typed array (the state's types never change between iterations,
    nor between a fresh and a resumed run)."""
    return jax.tree_util.tree_map(lambda x: jax.lax.convert_element_type(x, jnp.asarray(x).dtype), tree)


def _first_lane(theta, start, targets, problem: Problem, evaluation: tuple | None) -> Lane:
    """A start's lane: evaluated at theta (``evaluation``, :func:`_moments_and_jacobian`'s outputs
    there), or waiting for its first evaluation (None)."""
    k, m, d = theta.shape[0], targets.shape[0], len(STATE_DIAGNOSTICS)
    evaluated = evaluation is not None
    if evaluated:
        G, moments, aggregates, before, after = evaluation
        g = moments - targets
        q = g @ problem.weights @ g
        value, evaluations = jnp.where(jnp.isfinite(q), q, jnp.inf), 1
        fp = (before[_FP_ITERATIONS] + after[_FP_ITERATIONS]).astype(jnp.int32)
    else:
        G, moments, aggregates = jnp.full((m, k), jnp.nan), jnp.full(m, jnp.nan), start
        before = after = jnp.full(d, jnp.nan)
        value, evaluations, fp = jnp.inf, 0, jnp.int32(0)
    return Lane(point=theta, theta=theta, value=jnp.asarray(value, theta.dtype), moments=moments, jacobian=G,
                aggregates=jnp.asarray(aggregates, theta.dtype), targets=targets, status=jnp.int32(RUNNING),
                evaluations=jnp.int32(evaluations), fp_iterations=fp, stalls=jnp.int32(0),
                accepted=jnp.asarray(evaluated), before=before, after=after)


def _weights_factor(problem: Problem) -> jax.Array:
    """C with W = C C' (lower Cholesky factor): residuals r = C' g have |r|^2 = g' W g.

    W may have zero rows and columns (untargeted moments, ``--moments``), where a plain Cholesky
    factor is NaN: C is then the factor of W with 1 on the diagonal entries of those moments, with
    their columns set to 0 (their rows are 0 already, W being block diagonal in them), so that
    C C' = W (exactly 0 in those rows and columns) and r is 0 for them. A W without zero rows
    passes through untouched: C is ``jnp.linalg.cholesky(W)`` bit for bit."""
    W = problem.weights
    untargeted = jnp.all(W == 0, axis=1)
    eye = jnp.eye(W.shape[0], dtype=bool)
    C = jnp.linalg.cholesky(jnp.where(eye & untargeted[:, None], jnp.ones_like(W), W))
    return jnp.where(untargeted[None, :], jnp.zeros_like(C), C)


@functools.partial(jax.jit, static_argnames=("how", "width"))
def _start_program(theta0, u0, targets, start, padding, prune, max_iter, evaluation, problem: Problem,
                   how: Multistart, width: int) -> tuple:
    """The loop's first state; ``evaluation`` is :func:`_evaluate_all` at the starts (S leading) for
    a method that evaluates before it starts (theta0 then the starts in theta), else None."""
    method = how.method
    evaluated = evaluation is not None
    if evaluated:
        lanes = jax.vmap(lambda t, y, e: _first_lane(t, start, y, problem, e))(theta0, targets, evaluation)
    else:
        lanes = jax.vmap(lambda t, y: _first_lane(t, start, y, problem, None))(theta0, targets)
    C = _weights_factor(problem)
    params, opt_state, lanes = jax.vmap(lambda u, lane: method.start(u, lane, problem, C, how.tol))(u0, lanes)
    # Padding lanes (shapes shared with another batch) never run.
    lanes = lanes._replace(status=jnp.where(padding, Status.MAX_ITER.code, lanes.status).astype(jnp.int32))
    s = theta0.shape[0]
    history = jnp.full((s, width), jnp.nan)
    if evaluated:
        history = history.at[:, 0].set(lanes.value)
    state = LoopState(params=params, opt_state=opt_state, lane=lanes, history=history,
                      n_history=jnp.full(s, int(evaluated), jnp.int32),
                      dominated=jnp.tile(jnp.array([-1.0, jnp.nan, jnp.nan, -1.0]), (s, 1)),
                      iteration=jnp.int32(0 if evaluated else -1), prune=jnp.asarray(prune),
                      max_iter=jnp.asarray(max_iter, jnp.int32))
    return (_strong(state),)


@functools.partial(jax.jit, static_argnames="how")
def _step_program(state: LoopState, problem: Problem, how: Multistart) -> tuple:
    method, tol = how.method, how.tol
    lanes = state.lane
    live = lanes.status == RUNNING
    # A start that has stopped is evaluated (its result thrown away) where it is cheap: at its own
    # accepted point, or the best start's if its own is not finite.
    best = jnp.argmin(lanes.value)
    finite = jnp.isfinite(lanes.value)
    benign = jnp.where(finite[:, None], lanes.point, lanes.point[best])
    params = jnp.where(live[:, None], state.params, benign)
    warm = jnp.where((live | finite)[:, None, None], lanes.aggregates, lanes.aggregates[best])
    C = _weights_factor(problem)
    new_params, new_opt, new_lanes = _over_lanes(lambda p, o, lane: method.advance(p, o, lane, problem, C, tol),
                                                 how, live, params, state.opt_state, lanes._replace(aggregates=warm))

    def keep(new, old):
        return jnp.where(live.reshape(live.shape + (1,) * (new.ndim - 1)), new, old)

    params = keep(new_params, state.params)
    opt_state = jax.tree_util.tree_map(keep, new_opt, state.opt_state)
    lanes = jax.tree_util.tree_map(keep, new_lanes, lanes)
    iteration = state.iteration + 1
    status = jnp.where((lanes.status == RUNNING) & (lanes.evaluations > state.max_iter), Status.MAX_ITER.code,
                       lanes.status)
    best = jnp.argmin(lanes.value)
    worse = (state.prune & (iteration >= PRUNE_AFTER) & (status == RUNNING)
             & (lanes.value > 2.0 * lanes.value[best] + 1.0))
    status = jnp.where(worse, Status.DOMINATED.code, status)
    record = jnp.stack([jnp.full_like(lanes.value, best.astype(lanes.value.dtype)), lanes.value,
                        jnp.full_like(lanes.value, lanes.value[best]),
                        jnp.full_like(lanes.value, iteration.astype(lanes.value.dtype))], axis=1)
    dominated = jnp.where(worse[:, None], record, state.dominated)
    lanes = lanes._replace(status=status.astype(jnp.int32))
    grows = live & lanes.accepted
    rows = jnp.arange(state.history.shape[0])
    column = jnp.minimum(state.n_history, state.history.shape[1] - 1)
    history = state.history.at[rows, column].set(jnp.where(grows, lanes.value, state.history[rows, column]))
    n_history = state.n_history + grows.astype(jnp.int32)
    new = LoopState(params=params, opt_state=opt_state, lane=lanes, history=history, n_history=n_history,
                    dominated=dominated, iteration=iteration, prune=state.prune, max_iter=state.max_iter)
    return (_strong(new),)


def new_batch(theta0: np.ndarray, problem: Problem, how: Multistart, free: FreeParameters,
              targets: np.ndarray | None = None, start: np.ndarray | None = None, prune: bool = True,
              lanes: int | None = None) -> LoopState:
    """The loop's state for starting points theta0 (S, k) inside the bounds (one program): the
    optimiser's state of every start, and for the gradient methods the first evaluation of each.

    Args:
        theta0: (S, k) starting points.
        targets: (S, m) targets of each start (default: every start the problem's).
        start: (2, 3 O + F) warm start of the first evaluations' fixed points (re-estimations near
            an estimate), cold by default.
        prune: stop dominated starts (only where the starts share their targets).
        lanes: run S' >= S lanes, the last S' - S copies of the first start that never run (the
            shapes, hence the compiled programs, of another batch of S' starts).
    """
    theta0 = np.asarray(theta0, dtype=np.float64)
    s = theta0.shape[0]
    targets = np.tile(np.asarray(problem.targets), (s, 1)) if targets is None else np.asarray(targets, np.float64)
    start = np.asarray(cold(problem.settings)) if start is None else np.asarray(start)
    width = max(s, lanes or s)
    padding = np.arange(width) >= s
    theta0 = np.concatenate([theta0, np.repeat(theta0[:1], width - s, axis=0)])
    targets = np.concatenate([targets, np.repeat(targets[:1], width - s, axis=0)])
    u0 = np.stack([free.to_u(row) for row in theta0])
    evaluation = None
    if how.method.start_evaluates:
        # The gradient methods start from an evaluation of every start: the program that also gives
        # their end points' Jacobians (finish_starts) and the estimate's (evaluate_in_loop).
        if how.method.scale != "theta":  # the point the optimiser's scale u0 stands for
            theta0 = np.asarray(jax.vmap(theta_of_u, (0, None))(jnp.asarray(u0), problem.free))
        evaluation = tuple(programs.call("evaluate_all", _evaluate_all, (), jnp.asarray(theta0),
                                         jnp.asarray(np.repeat(start[None], width, axis=0)), problem))
    return programs.call("optimiser_start", _start_program, (how.compiled, history_width(how.tol.max_iter)),
                         jnp.asarray(theta0), jnp.asarray(u0), jnp.asarray(targets), jnp.asarray(start),
                         jnp.asarray(padding), jnp.asarray(prune), jnp.int32(how.tol.max_iter), evaluation,
                         problem)[0]


def step(state: LoopState, problem: Problem, how: Multistart) -> LoopState:
    """One iteration of every running start (one compiled program, whatever ``how.tol.max_iter``:
    the state holds the cap)."""
    return programs.call("optimiser_step", _step_program, (how.compiled,), state, problem)[0]


def run_batch(state: LoopState, problem: Problem, how: Multistart,
              on_iteration: Callable[[Batch], None] | None = None) -> LoopState:
    """Iterate until every start has converged, failed, reached ``max_iter`` or is dominated.

    ``on_iteration`` gets a :class:`Batch` (the state on the host) after every iteration
    (checkpoints, progress bars). The host's work per iteration is one transfer of the statuses
    (and of the state for ``on_iteration``).
    """
    while bool(np.any(np.asarray(state.lane.status) == RUNNING)):
        state = step(state, problem, how)
        if on_iteration is not None:
            on_iteration(Batch(jax.device_get(state), how))
    return state


@dataclasses.dataclass
class Batch:
    """The loop's state on the host (NumPy leaves), as the checkpoint and the progress bar see it."""

    state: LoopState
    how: Multistart

    @property
    def iteration(self) -> int:
        return int(self.state.iteration)

    @property
    def done(self) -> np.ndarray:
        return np.asarray(self.state.lane.status) != RUNNING

    @property
    def status(self) -> list[Status | None]:
        return [Status.of_code(c) for c in np.asarray(self.state.lane.status)]

    @property
    def values(self) -> np.ndarray:
        return np.asarray(self.state.lane.value)

    @property
    def theta(self) -> np.ndarray:
        return np.asarray(self.state.lane.theta)

    @property
    def M(self) -> np.ndarray:
        return np.asarray(self.state.lane.moments)

    @property
    def history(self) -> list[list[float]]:
        h, n = np.asarray(self.state.history), np.asarray(self.state.n_history)
        return [[float(v) for v in h[i, : n[i]]] for i in range(h.shape[0])]

    @property
    def detail(self) -> list[str]:
        out = []
        for status, (by, value, best, iteration) in zip(self.status, np.asarray(self.state.dominated)):
            out.append(f"by start {int(by) + 1} (criterion {value:.4g} against {best:.4g} after "
                       f"{int(iteration)} iterations)" if status is Status.DOMINATED else "")
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """The state's leaves by name, for a checkpoint."""
        return _named_leaves(self.state)


def _leaf_names(tree) -> list[str]:
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [re.sub(r"[^0-9A-Za-z]+", "_", jax.tree_util.keystr(path)).strip("_") for path, _ in paths]


def _named_leaves(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_leaves(tree)
    return {name: np.asarray(leaf) for name, leaf in zip(_leaf_names(tree), leaves)}


def restore_batch(arrays: dict[str, np.ndarray], theta0: np.ndarray, problem: Problem, how: Multistart,
                  free: FreeParameters) -> LoopState:
    """The loop's state from a checkpoint's arrays (:meth:`Batch.arrays`), for starts theta0 (S, k).

    The tree structure comes from the shapes of :func:`new_batch`'s program (traced, not run)."""
    s = np.asarray(theta0).shape[0]
    points = jax.ShapeDtypeStruct(np.shape(theta0), jnp.float64)
    start = jax.ShapeDtypeStruct(cold(problem.settings).shape, jnp.float64)
    evaluation = None
    if how.method.start_evaluates:
        evaluation = jax.eval_shape(_evaluate_all, points, jax.ShapeDtypeStruct((s, *start.shape), jnp.float64),
                                    problem)
    template = jax.eval_shape(
        lambda *a: _start_program(*a, how=how.compiled, width=history_width(how.tol.max_iter))[0],
        points, points, jax.ShapeDtypeStruct((s, problem.targets.shape[0]), jnp.float64), start,
        jax.ShapeDtypeStruct((s,), jnp.bool_), jax.ShapeDtypeStruct((), jnp.bool_),
        jax.ShapeDtypeStruct((), jnp.int32), evaluation, problem)
    names = _leaf_names(template)
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ValueError(f"the checkpoint lacks {', '.join(missing)}")
    leaves = [jnp.asarray(np.asarray(arrays[n], dtype=t.dtype)) for n, t in zip(names, jax.tree_util.tree_leaves(template))]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), leaves)


_evaluate_all = jax.jit(jax.vmap(_moments_and_jacobian, (0, 0, None)))


def _serializable(*types) -> None:
    """Let ``jax.export`` serialise programs whose outputs hold these NamedTuples (the loop state,
    optax's states), so that ``programs.call`` keeps them across processes."""
    for cls in types:
        try:
            jax.export.register_namedtuple_serialization(cls, serialized_name=f"{cls.__module__}.{cls.__qualname__}")
        except ValueError:  # registered already
            pass


_serializable(Lane, LoopState, lm.ScaleByBoundedLMState, optax.EmptyState, optax.ScaleByLBFGSState,
              optax.ScaleByZoomLinesearchState, optax.ZoomLinesearchInfo, optax.ScaleByAdamState)


def finish_starts(state: LoopState, starts: np.ndarray, free: FreeParameters, problem: Problem,
                  how: Multistart) -> tuple[list[StartRecord], np.ndarray]:
    """One record per start, and the model moments at each start's end point (S, m).

    For the gradient methods, whose line searches see only values, the moments and their Jacobian
    at the end points come from one more evaluation of every start (one program, not counted)."""
    host = jax.device_get(state)
    lanes = host.lane
    M, J = np.asarray(lanes.moments), np.asarray(lanes.jacobian)
    if how.method.scale != "theta":
        G, m, *_ = programs.call("evaluate_all", _evaluate_all, (), jnp.asarray(lanes.theta),
                                 jnp.asarray(lanes.aggregates), problem)
        M, J = np.asarray(m), np.asarray(G)
    weights = np.asarray(problem.weights, dtype=np.float64)
    batch = Batch(host, how)
    records = []
    rows = zip(range(len(starts)), batch.status, batch.detail, batch.history)
    for i, status, detail, history in rows:
        theta = np.array(lanes.theta[i])
        g = M[i] - np.asarray(lanes.targets[i])
        grad = np.asarray(lm.projected_gradient(jnp.asarray(theta), jnp.asarray(2.0 * J[i].T @ weights @ g),
                                                jnp.asarray(free.lower), jnp.asarray(free.upper)))
        grad_norm = float(np.max(np.abs(grad))) if np.isfinite(grad).all() else float("inf")
        records.append(StartRecord(
            start=np.asarray(starts[i]), theta=theta, u=free.to_u(free.inside(theta, margin=0.0)),
            value=float(lanes.value[i]), grad_norm=grad_norm, iterations=int(lanes.evaluations[i]), status=status,
            method=how.method.method, history=history, fp_iterations=int(lanes.fp_iterations[i]), detail=detail,
        ))
    return records, M[: len(starts)]


def evaluate_in_loop(theta: np.ndarray, problem: Problem, how: Multistart, free: FreeParameters,
                     lanes: int) -> Evaluation:
    """:func:`evaluate` at theta (k,) from a cold start, by a program the optimisation of ``lanes``
    starts with ``how``'s optimiser has compiled already (none of its own): for ``lm`` its step,
    the other lanes idle; for the gradient methods the evaluation of every lane that gave their
    first points and end points (:func:`_evaluate_all`), every lane at theta."""
    if how.method.start_evaluates:
        start = np.repeat(np.asarray(cold(problem.settings))[None], lanes, axis=0)
        out = programs.call("evaluate_all", _evaluate_all, (), jnp.asarray(np.repeat(np.asarray(theta)[None], lanes,
                                                                                         axis=0)),
                            jnp.asarray(start), problem)
        G, m, aggregates, before, after = (np.asarray(x[0]) for x in jax.device_get(out))
    else:
        how = dataclasses.replace(how, optimizer="lm")
        state = step(new_batch(np.asarray(theta)[None], problem, how, free, prune=False, lanes=lanes), problem, how)
        lane = jax.tree_util.tree_map(lambda x: np.asarray(x[0]), jax.device_get(state.lane))
        G, m, aggregates, before, after = lane.jacobian, lane.moments, lane.aggregates, lane.before, lane.after
    return Evaluation(jacobian=G, moments=m, aggregates=aggregates, before=dict(zip(STATE_DIAGNOSTICS, before)),
                      after=dict(zip(STATE_DIAGNOSTICS, after)))
