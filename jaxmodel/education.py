"""Education (MODEL.md section 4): the college choice and its fixed point.

The agent compares the incomes it can foresee with and without college,
P_i = L((log W~_i1 - log W~_i0 - c_i) / tau), with
W~_ie = exp(b_o0 + log factor_o + b_o1 log q_ie + b_o2 e) + xi Pi_j / (N/F). Gamma(P) therefore
depends on P only through the aggregates

    x = (b_o0 + log factor_o, b_o1, b_o2 for every occupation o, xi Pi_j / (N/F) for every firm j),

3 O + F numbers (130 at O = 10, F = 100). Write ``choice(x)`` for the probabilities these
aggregates imply and ``market(P)`` for the aggregates that probabilities P imply
(``clear_market``): then Gamma = choice o market, and P* = Gamma(P*) exactly when
x* = market(choice(x*)) and P* = choice(x*). The solver works in that small space.

Solvers (``Settings.fp_solver``; the fixed point, not the path to it, is the model):

- "anderson" (default): Anderson acceleration (type II, memory :data:`ANDERSON_MEMORY`) of
  x <- market(choice(x)). Each iteration makes one pass over the agents for ``market`` and a
  cheaper one for ``choice``; its least-squares problem is (3 O + F) x m. Safeguard: an iteration
  whose residual does not fall is followed by a damped step x <- (1 - d) x + d market(choice(x))
  (d = ``fp_damping``) with the history cleared; these fallbacks are counted in the diagnostics.
- "newton": Newton's method x <- x + (I - D)^{-1} (market(choice(x)) - x), with the Jacobian D
  of x -> market(choice(x)) assembled exactly in one pass (``jaxmodel.feedback``). Quadratic
  convergence, so few iterations, each dearer than an Anderson iteration; the same safeguard.
- "damped": the reference of MODEL.md, P <- (1 - d) P + d Gamma(P) from P = 0.4 on the (O, M)
  probabilities.

All stop when max |Gamma(P) - P| <= tol at the P they return (measured exactly: Gamma(P) is
choice(market(P))), or after ``fp_max_iter`` iterations. A cold start begins at P = 0.4, a warm
start at given aggregates x0 (for example those of a nearby parameter value).

Derivatives (forward and reverse mode) come from the implicit function theorem through
``jax.lax.custom_root`` on the aggregates: dx*/dtheta = (I - D)^{-1} d market(choice(x))/dtheta
at x*, then P* = choice(x*). D at x* is assembled in one pass and I - D is factorised once (LU,
(3 O + F)-square); the tangent systems (forward mode, any number of tangents) and the transposed
ones (reverse mode) are then solved with that factorisation: exact to rounding at the x* the solver
returned, with no Krylov iterations and no pass over the agents per tangent.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmodel.feedback import feedback_jacobian
from jaxmodel.market import Economy, Market, clear_market
from jaxmodel.screening import fitted
from jaxmodel.settings import DENSE_LIMIT, Settings

#: Starting value of every P_i (MODEL.md section 4).
P_START = 0.4
#: Past iterations Anderson acceleration combines.
ANDERSON_MEMORY = 5
#: Krylov dimension of GMRES before a restart in the matrix-free tangent solves.
GMRES_RESTART = 30


class FixedPointInfo(NamedTuple):
    """Diagnostics of the education fixed point (floats: custom_root's aux must be)."""

    iterations: jax.Array  # shape=(): iterations taken
    residual: jax.Array  # shape=(): max |Gamma(P) - P| at the returned P
    fallbacks: jax.Array  # shape=(): safeguard (damped) steps taken by the Anderson solver


def n_aggregates(settings: Settings) -> int:
    """3 O + F: the size of the aggregates Gamma depends on (``Settings.n_aggregates``)."""
    return settings.n_aggregates


def aggregates_of(params, wage_coef: jax.Array, wage_factor: jax.Array, rents: jax.Array,
                  settings: Settings) -> jax.Array:
    """x = (b_o0 + log factor_o, b_o1, b_o2, xi Pi_j/(N/F)): (3 O + F,) from (O, 3), (O,) and (F,)."""
    level = wage_coef[:, 0] + jnp.log(wage_factor)
    rent = params.xi * rents / settings.agents_per_firm
    return jnp.concatenate([level, wage_coef[:, 1], wage_coef[:, 2], rent])


def aggregates(params, econ: Economy, market: Market, settings: Settings) -> jax.Array:
    """The aggregates of a cleared market (:func:`aggregates_of`)."""
    return aggregates_of(params, market.wage_coef, market.wage_factor, market.rents, settings)


def choice(params, econ: Economy, x: jax.Array, settings: Settings) -> jax.Array:
    """P = L((log W~_1 - log W~_0 - c)/tau) at aggregates x: (O, M).

    W~_ie = exp(b_o0 + log factor_o + b_o1 log q_ie + b_o2 e) + xi Pi_j/(N/F).
    """
    o = settings.n_occupations
    coef = jnp.stack([x[:o], x[o:2 * o], x[2 * o:3 * o]], axis=1)
    rent = jnp.take(x[3 * o:], econ.firm)
    income = jnp.exp(fitted(coef, econ.foreseen_signal)) + rent[None]
    gain = jnp.log(income[1] / income[0])  # one log per agent instead of two
    return jax.nn.sigmoid((gain - econ.cost) / params.tau)


def market_map(params, econ: Economy, P: jax.Array, settings: Settings) -> jax.Array:
    """market(P): the aggregates (3 O + F,) of the labour market at probabilities P."""
    return aggregates(params, econ, clear_market(params, econ, P, settings), settings)


def college_choice(params, econ: Economy, P: jax.Array, settings: Settings) -> jax.Array:
    """Gamma(P) = choice(market(P)): the college probabilities implied by probabilities P, (O, M)."""
    return choice(params, econ, market_map(params, econ, P, settings), settings)


def _norm_weights(x: jax.Array, settings: Settings) -> jax.Array:
    """Weights of Anderson's least squares: 1 for the projection's coefficients, and the rents
    relative to the occupations' wage level (what moves a log income), each block of equal total
    weight. They shape the path only, never the fixed point."""
    o, f = settings.n_occupations, settings.n_firms
    scale = jnp.exp(jnp.max(x[:o]))
    rent_w = jnp.full((f,), 1.0, x.dtype) / scale * jnp.sqrt(3.0 * o / f)
    return jax.lax.stop_gradient(jnp.concatenate([jnp.ones((3 * o,), x.dtype), rent_w]))


class _AndersonState(NamedTuple):
    x: jax.Array  # (D,) current aggregates (not yet valid before the first step of a cold start)
    P: jax.Array  # (O, M) choice(x), or P = 0.4 before the first step of a cold start
    it: jax.Array  # () int32 steps taken
    res: jax.Array  # () max |P_new - P| of the last step: max |Gamma(P) - P| when it was plain
    norm: jax.Array  # () weighted 2-norm of f = market(P) - x at the previous step
    weights: jax.Array  # (D,) weights of the least squares, fixed at the first step
    f_prev: jax.Array  # (D,) weighted f of the previous step
    g_prev: jax.Array  # (D,) market(P) of the previous step
    dF: jax.Array  # (m, D) differences of weighted f
    dG: jax.Array  # (m, D) differences of g
    count: jax.Array  # () int32 valid columns of the history
    fallbacks: jax.Array  # () int32 safeguard steps
    verify: jax.Array  # () bool: plain steps only (phase 2)
    done: jax.Array  # () bool


def _anderson(step, choose, x0: jax.Array, P0: jax.Array, tau, settings: Settings):
    """Anderson acceleration of x <- step(choose(x)), with an exact stopping test on P.

    One loop, each iteration one ``step`` (a pass over the agents) and one ``choose``:

    1. Anderson steps while the weighted residual max |w (g - x)| of the aggregates exceeds
       tol tau (a change dx of the aggregates moves P by about dx / (4 tau) per unit of log
       income). The first step is plain (x <- g), which also turns the cold start P = 0.4 into
       aggregates.
    2. Then plain steps x <- g, P <- choose(g), for which max |P_new - P| = max |Gamma(P) - P|
       exactly, until it is <= tol: the tolerance of MODEL.md is verified on P itself (usually by
       one step). The P so verified is returned, with its aggregates.

    Args:
        x0: (D,) warm-start aggregates with P0 = choose(x0), or anything with P0 = 0.4 (cold).

    Returns:
        (x, P = choose(x), info).
    """
    m, tol, d = ANDERSON_MEMORY, settings.tol, settings.fp_damping
    agg_tol = tol * jax.lax.stop_gradient(tau)
    dim, dtype = x0.shape[0], x0.dtype

    def body(s: _AndersonState) -> _AndersonState:
        g = step(s.P)
        first = s.it == 0
        weights = jnp.where(first, _norm_weights(jax.lax.stop_gradient(g), settings), s.weights)
        f = (g - s.x) * weights
        norm = jnp.sqrt(jnp.sum(f * f))
        verify = s.verify | (~first & ~(jnp.max(jnp.abs(f)) > agg_tol))  # NaN also ends phase 1
        plain = verify | first
        has_prev = s.it >= 2  # f of the first step is measured against a start that may be cold
        slot = s.it % m
        dF = jnp.where(has_prev, s.dF.at[slot].set(f - s.f_prev), s.dF)
        dG = jnp.where(has_prev, s.dG.at[slot].set(g - s.g_prev), s.dG)
        count = jnp.where(has_prev, jnp.minimum(s.count + 1, m), s.count)
        # Safeguard: a residual that did not fall means the last accelerated step did not help.
        fallback = ~plain & has_prev & (norm >= s.norm)
        count = jnp.where(fallback, 0, count)
        valid = jnp.arange(m) < count
        # gamma = argmin |f - dF' gamma| over the valid columns (ridge-regularised normal equations).
        dFv = jnp.where(valid[:, None], dF, 0.0)
        gram = dFv @ dFv.T
        gram = gram + jnp.diag(jnp.where(valid, 1e-12 * jnp.trace(gram) + jnp.finfo(dtype).tiny, 1.0))
        gamma = jnp.where(valid, jnp.linalg.solve(gram, dFv @ f), 0.0)
        accelerated = g - gamma @ jnp.where(valid[:, None], dG, 0.0)
        x_new = jnp.where(plain, g, jnp.where(fallback, (1.0 - d) * s.x + d * g, accelerated))
        P_new = choose(x_new)
        res = jnp.max(jnp.abs(P_new - s.P))
        # A plain step measured Gamma(P) - P exactly; P (not yet P_new) is then the answer.
        done = plain & ~first & ~(res > tol)
        keep = lambda old, new: jnp.where(done, old, new)  # noqa: E731
        return _AndersonState(
            x=keep(s.x, x_new), P=keep(s.P, P_new), it=s.it + 1, res=res, norm=norm, weights=weights,
            f_prev=f, g_prev=g, dF=dF, dG=dG, count=count, fallbacks=s.fallbacks + fallback.astype(jnp.int32),
            verify=verify, done=done,
        )

    zeros = jnp.zeros((m, dim), dtype)
    init = _AndersonState(
        x=x0, P=P0, it=jnp.int32(0), res=jnp.asarray(jnp.inf, dtype), norm=jnp.asarray(jnp.inf, dtype),
        weights=jnp.ones_like(x0), f_prev=jnp.zeros_like(x0), g_prev=jnp.zeros_like(x0), dF=zeros, dG=zeros,
        count=jnp.int32(0), fallbacks=jnp.int32(0), verify=jnp.asarray(False), done=jnp.asarray(False),
    )
    s = jax.lax.while_loop(lambda s: (~s.done) & (s.it < settings.fp_max_iter), body, init)
    return s.x, s.P, FixedPointInfo(s.it.astype(dtype), s.res, s.fallbacks.astype(dtype))


class _NewtonState(NamedTuple):
    x: jax.Array  # (C,) current aggregates
    P: jax.Array  # (O, M) choice(x)
    it: jax.Array  # () int32 passes over the agents (a cold start's first plain step counts)
    res: jax.Array  # () max |Gamma(P) - P| at the last point measured
    norm: jax.Array  # () weighted 2-norm of market(choice(x)) - x at the last accepted point
    x_prev: jax.Array  # (C,) last accepted point, and its market(choice(.)): the safeguard's base
    g_prev: jax.Array
    newton: jax.Array  # () bool: x came from a Newton step (so it is checked by the safeguard)
    fallbacks: jax.Array  # () int32 safeguard steps
    D: jax.Array  # (C, C) feedback Jacobian at x (valid once done)
    done: jax.Array  # () bool


def _newton(feedback, choose, x0: jax.Array, P0: jax.Array, weights: jax.Array, settings: Settings, passes_before=0):
    """Newton's method on x = market(choice(x)) with the assembled Jacobian D, safeguarded.

    Each iteration is one pass (``feedback``: g = market(choice(x)) and D, ``jaxmodel.feedback``):

    1. The stopping test of MODEL.md on P = choice(x) itself: Gamma(P) = choice(g), so
       max |choice(g) - P| <= tol ends the loop with (x, P) and the D of x.
    2. Safeguard: a point reached by a Newton step whose weighted residual |w (g - x)| did not fall
       below that of the point it came from (or is not finite) is rejected, and replaced by the damped
       step (1 - d) x_prev + d g_prev from that point (``fp_damping``); these are counted.
    3. Otherwise the Newton step x <- x + (I - D)^{-1} (g - x).

    Args:
        passes_before: () passes already made (a cold start's plain step): they count towards
            ``fp_max_iter`` and the iterations reported.

    Returns:
        (x, P = choice(x), info, D at x).
    """
    tol, d = settings.tol, settings.fp_damping
    dim, dtype = x0.shape[0], x0.dtype
    eye = jnp.eye(dim, dtype=dtype)

    def body(s: _NewtonState) -> _NewtonState:
        g, D = feedback(s.x)
        f = g - s.x
        norm = jnp.sqrt(jnp.sum((f * weights) ** 2))
        res = jnp.max(jnp.abs(choose(g) - s.P))
        done = ~(res > tol)
        reject = ~done & s.newton & ~(norm < s.norm)
        step = jnp.linalg.solve(eye - D, f)
        x_new = jnp.where(reject, (1.0 - d) * s.x_prev + d * s.g_prev, s.x + step)
        keep = lambda old, new: jnp.where(done, old, new)  # noqa: E731
        accept = ~reject
        return _NewtonState(
            x=keep(s.x, x_new), P=keep(s.P, choose(x_new)), it=s.it + 1, res=res,
            norm=jnp.where(accept, norm, s.norm), x_prev=jnp.where(accept, s.x, s.x_prev),
            g_prev=jnp.where(accept, g, s.g_prev), newton=accept, fallbacks=s.fallbacks + reject.astype(jnp.int32),
            D=D, done=done,
        )

    inf = jnp.asarray(jnp.inf, dtype)
    init = _NewtonState(
        x=x0, P=P0, it=jnp.asarray(passes_before, jnp.int32), res=inf, norm=inf, x_prev=x0, g_prev=x0, newton=jnp.asarray(False),
        fallbacks=jnp.int32(0), D=jnp.zeros((dim, dim), dtype), done=jnp.asarray(False),
    )
    s = jax.lax.while_loop(lambda s: (~s.done) & (s.it < settings.fp_max_iter), body, init)
    return s.x, s.P, FixedPointInfo(s.it.astype(dtype), s.res, s.fallbacks.astype(dtype)), s.D


def _damped(step, choose, settings: Settings, P0: jax.Array) -> tuple[jax.Array, jax.Array, FixedPointInfo]:
    """MODEL.md's reference: P <- (1 - d) P + d Gamma(P) from P0 until max |Gamma(P) - P| <= tol.

    Returns (x = market(P), P, info).
    """
    d, tol = settings.fp_damping, settings.tol

    def cond(carry):
        _, it, res, _ = carry
        return (it < settings.fp_max_iter) & (res > tol)

    def body(carry):
        P, it, _, r = carry
        P = P + d * r
        r = choose(step(P)) - P
        return P, it + 1, jnp.max(jnp.abs(r)), r

    r0 = choose(step(P0)) - P0
    P, it, res, _ = jax.lax.while_loop(cond, body, (P0, jnp.int32(0), jnp.max(jnp.abs(r0)), r0))
    zero = jnp.zeros((), P.dtype)
    return step(P), P, FixedPointInfo(it.astype(P.dtype), res, zero)


def solve_education(
    params, econ: Economy, settings: Settings, start: jax.Array | None = None
) -> tuple[jax.Array, jax.Array, FixedPointInfo]:
    """The fixed point P* = Gamma(P*), differentiable in every parameter ``Gamma`` closes over.

    The solver runs on values that carry no derivative. The derivatives come from the implicit
    function theorem (``jax.lax.custom_root``): dx*/dtheta = (I - D)^{-1} d market(choice(x))/dtheta
    at x*, with D assembled in one pass (``jaxmodel.feedback``) and factorised once, so forward mode
    (the MSM Jacobian) and reverse mode (the gradient of a scalar) are exact to the fixed point's
    tolerance and cost one LU solve of size 3 O + F beyond the tangents of ``market`` itself.

    Args:
        start: (3 O + F,) aggregates to start from (a warm start), or None for P = 0.4; a start
            that is not finite also starts cold. The start changes the path, never the fixed point, and
            carries no derivative.

    Returns:
        (P*, x*, info): (O, M) college probabilities, the (3 O + F,) aggregates x* = market(P*),
        and the iteration count, residual and fallback steps.
    """
    fixed_params, fixed_econ = jax.lax.stop_gradient((params, econ))

    def step(P):
        return market_map(fixed_params, fixed_econ, P, settings)

    def choose(x):
        return choice(fixed_params, fixed_econ, x, settings)

    def feedback(x):
        return feedback_jacobian(fixed_params, fixed_econ, x, settings)

    if start is None:
        warm = jnp.asarray(False)
        x0 = jnp.zeros((n_aggregates(settings),), econ.cost.dtype)
    else:
        start = jax.lax.stop_gradient(start).astype(econ.cost.dtype)
        warm = jnp.all(jnp.isfinite(start))
        x0 = jnp.where(warm, start, 0.0)
    P0 = jnp.where(warm, choose(x0), P_START)

    dense = settings.n_aggregates <= DENSE_LIMIT
    if settings.fp_solver == "damped":
        x_star, _, info = _damped(step, choose, settings, P0)
        D = feedback(x_star)[1] if dense else None
    elif settings.fp_solver == "anderson":
        x_star, _, info = _anderson(step, choose, x0, P0, fixed_params.tau, settings)
        D = feedback(x_star)[1] if dense else None
    else:
        # A cold start first turns P = 0.4 into aggregates by one plain step.
        x1 = jax.lax.cond(warm, lambda: x0, lambda: step(P0))
        weights = _norm_weights(x1, settings)
        x_star, _, info, D = _newton(feedback, choose, x1, choose(x1), weights, settings, jnp.where(warm, 0, 1))

    def excess(x):
        return market_map(params, econ, choice(params, econ, x, settings), settings) - x

    x = jax.lax.custom_root(excess, x_star, lambda f, x0: x0, _tangent_solver(D, settings))
    return choice(params, econ, x, settings), x, info


def _tangent_solver(D: jax.Array | None, settings: Settings):
    """custom_root's tangent_solve: g(v) = y with g = D - I at x* (and its transpose in reverse mode).

    With D: one LU factorisation of D - I, used by both. Without (more than :data:`DENSE_LIMIT`
    aggregates): restarted GMRES on g's products (``jvp``, or ``vjp`` when transposed), to the relative
    tolerance ``Settings.tangent_tol``.
    """
    if D is not None:
        lu = jax.scipy.linalg.lu_factor(D - jnp.eye(D.shape[0], dtype=D.dtype))
        solve = lambda _, b: jax.scipy.linalg.lu_solve(lu, b)  # noqa: E731
        transpose_solve = lambda _, b: jax.scipy.linalg.lu_solve(lu, b, trans=1)  # noqa: E731
    else:
        def solve(matvec, b):
            x, _ = jax.scipy.sparse.linalg.gmres(
                matvec, b, tol=settings.tangent_tol, atol=0.0, restart=GMRES_RESTART,
                maxiter=max(1, settings.fp_max_iter // GMRES_RESTART), solve_method="incremental",
            )
            return x

        transpose_solve = solve

    def tangent_solve(g, y):
        return jax.lax.custom_linear_solve(g, y, solve=solve, transpose_solve=transpose_solve)

    return tangent_solve
