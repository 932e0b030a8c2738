"""Outcomes of a state and the six moments (MODEL.md section 5); the public ``solve``/``moments``.

``moments(params, draws, settings)`` solves the economy before AI (A = 0) and after (A = A1) on the
same draws and returns the six moments under their MODEL.md code names with diagnostics. Both
public functions validate their inputs, then call one jit-compiled function with ``settings``
static, so new parameter values never recompile.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from jaxmodel import firms, screening, tasks
from jaxmodel.aggregation import occupation_sums
from jaxmodel.draws import Draws, check_draws
from jaxmodel.education import n_aggregates, solve_education
from jaxmodel.errors import InvalidParameterError, InvalidSettingError
from jaxmodel.inequality import between_group_share, weighted_gini
from jaxmodel.market import Economy, clear_market, economy, wages
from jaxmodel.params import Params, validate_params
from jaxmodel.settings import Settings
from jaxmodel.workers import Assignment, Workforce, assignment, workforce

#: The six moments in order m1..m6 (MODEL.md section 5).
MOMENT_NAMES: tuple[str, ...] = (
    "cv_change",
    "productivity_gain",
    "college_premium_change",
    "credential_reliance_change",
    "between_firm_share_change",
    "gini_change",
)

#: Per-state outcomes reported before and after AI as diagnostics.
STATE_DIAGNOSTICS: tuple[str, ...] = (
    "cv_within_firms",
    "cv_all_workers",
    "gini",
    "college_share",
    "between_firm_share",
    "capital_share",
    "diagnostic_variance",
    "college_premium",
    "credential_reliance",
    "credential_occupations",
    "fp_residual",
    "fp_iterations",
    "fp_fallbacks",
)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class State:
    """The solved economy in one AI state.

    Attributes:
        P: (O, M) college probabilities (agents in occupation order).
        firm: (O, M) int32 firm of each agent (firms ordered by assets).
        log_theta: (O, M) log ability of each agent.
        income: (2, O, M) worker income W_ie = w^c_ie + xi Pi_j / (N/F).
        wage: (2, O, M) commodity wage w^c_ie.
        owner_income: (F,) income of each owner person, (1 - xi) Pi_j / m_o.
        rents: (F,) firm rents Pi_j.
        prices: (T,) task prices p_k.
        task_mean: (T,) within-task mean output; task_cv: (T,) its coefficient of variation within
            firms (MODEL.md section 5, what m1 compares); task_cv_all_workers: (T,) the CV over all
            workers (a diagnostic: it also counts the spread of proprietary access across firms).
        cv_within_firms, cv_all_workers: the exposure-weighted means sum_k a_k CV_k / sum_k a_k of
            the two.
        wage_coef: (O, 3) wage projection of log MPc on [1, s, e] (s centred by occupation).
        credential_coef: (O,) b^D_o, the credential coefficient of the diagnostic projection.
        credential_support: (O,) g_o in [0, 1], how far b^D_o is identified
            (``screening.credential_support``: 0 where (almost) nobody or everybody goes to college).
        occupation_exposure: (O,) abar_o = sum_k omega_ok a_k.
        college_premium: weighted mean log W for e = 1 minus e = 0.
        credential_reliance: R = sum_o abar_o g_o b^D_o / sum_o abar_o g_o (``screening.credential_reliance``).
        credential_occupations: sum_o g_o, the number of occupations R averages over.
        diagnostic_variance: V_D, abar-weighted mean over occupations of Corr(s, log h)^2.
        between_firm_share: between-firm share of the variance of log worker income.
        gini: Gini of income over all persons (workers and owners).
        college_share: mean P.
        capital_share: owners' share of total income.
        fp_residual: max |Gamma(P) - P| at the solution; fp_iterations: iterations taken;
        fp_fallbacks: safeguard (damped) steps of the Anderson solver.
        aggregates: (3 O + F,) the aggregates x* that Gamma depends on at the solution (a warm
            start for a nearby parameter value, ``jaxmodel.education``).
    """

    P: jax.Array
    firm: jax.Array
    log_theta: jax.Array
    income: jax.Array
    wage: jax.Array
    owner_income: jax.Array
    rents: jax.Array
    prices: jax.Array
    task_mean: jax.Array
    task_cv: jax.Array
    task_cv_all_workers: jax.Array
    cv_within_firms: jax.Array
    cv_all_workers: jax.Array
    wage_coef: jax.Array
    credential_coef: jax.Array
    credential_support: jax.Array
    occupation_exposure: jax.Array
    college_premium: jax.Array
    credential_reliance: jax.Array
    credential_occupations: jax.Array
    diagnostic_variance: jax.Array
    between_firm_share: jax.Array
    gini: jax.Array
    college_share: jax.Array
    capital_share: jax.Array
    fp_residual: jax.Array
    fp_iterations: jax.Array
    fp_fallbacks: jax.Array
    aggregates: jax.Array


def task_statistics(econ: Economy, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Within-task mean and CV of y_iek over all worker-branches, weights w_ie omega_{o(i)k}.

    With y_iek = h_ie phi_k + c_ie F_k, both need only per-occupation sums of w, w h, w c and their
    cross products. Second moments are taken about the reference phi_k hbar + F_k cbar (hbar, cbar
    overall weighted means) for accuracy. The CV returned here is the one over all workers (a
    diagnostic since MODEL.md measures m1 within firms, :func:`within_firm_cv`).

    Returns:
        (mean, cv), each (T,).
    """
    total = jnp.sum(w)
    h_bar = jnp.sum(w * econ.h) / total
    c_bar = jnp.sum(w * econ.access) / total
    dh, dc = econ.h - h_bar, econ.access - c_bar
    sums = {
        name: econ.omega.T @ jnp.sum(w * value, axis=(0, 2))
        for name, value in {
            "w": 1.0, "h": dh, "c": dc, "hh": dh * dh, "hc": dh * dc, "cc": dc * dc
        }.items()
    }
    phi, floor = econ.phi, econ.floor
    weight = sums["w"]
    shift = (phi * sums["h"] + floor * sums["c"]) / weight
    second = (phi**2 * sums["hh"] + 2 * phi * floor * sums["hc"] + floor**2 * sums["cc"]) / weight
    mean = phi * h_bar + floor * c_bar + shift
    return mean, jnp.sqrt(second - shift**2) / mean


def within_firm_cv(econ: Economy, w: jax.Array, task_mean: jax.Array) -> jax.Array:
    """CV_k = sqrt(V_k) / ybar_k with V_k the pooled within-firm variance of y_iek (MODEL.md section 5).

    V_k = sum_j sum_{i in j, e} w_ie omega_{o(i)k} (y_iek - ybar_jk)^2 / sum_{i, e} w_ie omega_{o(i)k},
    ybar_jk the weighted task mean of firm j and ybar_k (``task_mean``) the overall one. With
    y_iek = h_ie phi_k + c_ie F_k and deviations dh, dc from the firm's own mean h and c over all
    its worker-branches (which keeps the difference below accurate), firm j's sum of squares on
    task k is SS_jk = Q_jk - L_jk^2 / W_jk, with W_jk = sum_o omega_ok n_jo, L_jk = sum_o omega_ok
    (phi_k Dh_jo + F_k Dc_jo) from per-(firm, occupation) sums n, Dh, Dc of w, w dh, w dc, and
    sum_j Q_jk = sum_o omega_ok (phi_k^2 sum w dh^2 + 2 phi_k F_k sum w dh dc + F_k^2 sum w dc^2)
    from per-occupation sums. Memory O(F (O + T)), never an N x T array.

    Args:
        econ: the economy; w: (2, O, M) branch weights; task_mean: (T,) ybar_k.

    Returns:
        (T,) the within-firm CV.
    """
    o, n_firms = econ.omega.shape[0], econ.K.shape[0]
    cell = (econ.firm * o + jnp.arange(o, dtype=econ.firm.dtype)[:, None]).reshape(-1)

    def by_cell(value: jax.Array) -> jax.Array:
        """(F, O) sums over the worker-branches of each (firm, occupation) cell of a (2, O, M) term."""
        return jax.ops.segment_sum(jnp.sum(value, axis=0).reshape(-1), cell, n_firms * o).reshape(n_firms, o)

    count = by_cell(w)
    firm_weight = jnp.sum(count, axis=1)
    safe = jnp.where(firm_weight > 0, firm_weight, 1.0)
    h_ref = jnp.sum(by_cell(w * econ.h), axis=1) / safe
    c_ref = jnp.sum(by_cell(w * econ.access), axis=1) / safe
    dh = econ.h - jnp.take(h_ref, econ.firm)[None]
    dc = econ.access - jnp.take(c_ref, econ.firm)[None]
    omega, phi, floor = econ.omega, econ.phi, econ.floor
    W = count @ omega                                                            # (F, T)
    L = (by_cell(w * dh) @ omega) * phi + (by_cell(w * dc) @ omega) * floor      # (F, T)
    hh, hc, cc = occupation_sums(w * dh * dh, w * dh * dc, w * dc * dc)
    Q = phi**2 * (hh @ omega) + 2.0 * phi * floor * (hc @ omega) + floor**2 * (cc @ omega)
    has = W > 0
    between = jnp.sum(jnp.where(has, L**2 / jnp.where(has, W, 1.0), 0.0), axis=0)
    return jnp.sqrt((Q - between) / jnp.sum(W, axis=0)) / task_mean


def _exposure_mean(a: jax.Array, per_task: jax.Array) -> jax.Array:
    """sum_k a_k x_k / sum_k a_k."""
    return jnp.sum(a * per_task) / jnp.sum(a)


def _exposure_average(econ: Economy, per_occupation: jax.Array) -> jax.Array:
    """sum_o abar_o x_o / sum_o abar_o with abar_o = sum_k omega_ok a_k."""
    abar = econ.omega @ econ.exposure
    return jnp.sum(abar * per_occupation) / jnp.sum(abar)


def solve_state(params, workers: Workforce, u_K: jax.Array, settings: Settings, A, start=None) -> State:
    """Solve one AI state (A = 0 before, A = A1 after) and compute its outcomes.

    ``start``: (3 O + F,) aggregates to warm-start the fixed point from, or None (cold).
    """
    econ = economy(params, workers, u_K, settings, A)
    P, x, info = solve_education(params, econ, settings, start)
    market = clear_market(params, econ, P, settings)
    w = market.w
    wage = wages(econ, market)
    income = wage + market.rent_share[None]
    log_income = jnp.log(income)

    mass = firms.owner_mass(params.owner_share, settings.n_agents, settings.n_firms)
    owner_income = (1.0 - params.xi) * market.rents / mass
    everyone = jnp.concatenate([income.reshape(-1), owner_income])
    weights = jnp.concatenate([w.reshape(-1), jnp.full_like(owner_income, mass)])
    worker_total = jnp.sum(w * income)
    owner_total = (1.0 - params.xi) * jnp.sum(market.rents)

    firm_of_branch = jnp.broadcast_to(econ.firm[None], w.shape).reshape(-1)
    diag_coef = screening.weighted_projection(econ.log_h, econ.signal, w)[:, 2]
    support = screening.credential_support(w)
    abar = econ.omega @ econ.exposure
    v_d = screening.diagnostic_variance(econ.signal, econ.log_h, w)
    task_mean, task_cv_all = task_statistics(econ, w)
    task_cv = within_firm_cv(econ, w, task_mean)
    return State(
        P=P,
        firm=econ.firm,
        log_theta=workers.log_theta,
        income=income,
        wage=wage,
        owner_income=owner_income,
        rents=market.rents,
        prices=market.prices,
        task_mean=task_mean,
        task_cv=task_cv,
        task_cv_all_workers=task_cv_all,
        cv_within_firms=_exposure_mean(econ.exposure, task_cv),
        cv_all_workers=_exposure_mean(econ.exposure, task_cv_all),
        wage_coef=market.wage_coef,
        credential_coef=diag_coef,
        credential_support=support,
        occupation_exposure=abar,
        college_premium=jnp.sum(w[1] * log_income[1]) / jnp.sum(w[1])
        - jnp.sum(w[0] * log_income[0]) / jnp.sum(w[0]),
        credential_reliance=screening.credential_reliance(abar, support, diag_coef),
        credential_occupations=jnp.sum(support),
        diagnostic_variance=_exposure_average(econ, v_d),
        between_firm_share=between_group_share(
            log_income.reshape(-1), w.reshape(-1), firm_of_branch, settings.n_firms
        ),
        gini=weighted_gini(everyone, weights),
        college_share=jnp.mean(P),
        capital_share=owner_total / (worker_total + owner_total),
        fp_residual=info.residual,
        fp_iterations=info.iterations,
        fp_fallbacks=info.fallbacks,
        aggregates=x,
    )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Moments:
    """The six moments (after minus before, MODEL.md section 5) and diagnostics of both states.

    ``cv_change_all_workers`` is m1 with the CV over all workers instead of within firms, a
    diagnostic (MODEL.md section 5). ``before`` and ``after`` hold the per-state outcomes named in
    :data:`STATE_DIAGNOSTICS`;
    ``aggregates`` (2, 3 O + F) the fixed points' aggregates of both states, which warm-start a
    solve at a nearby parameter value (``moments(..., start=m.aggregates)``).
    """

    cv_change: jax.Array
    productivity_gain: jax.Array
    college_premium_change: jax.Array
    credential_reliance_change: jax.Array
    between_firm_share_change: jax.Array
    gini_change: jax.Array
    cv_change_all_workers: jax.Array
    before: dict
    after: dict
    aggregates: jax.Array

    def vector(self) -> jax.Array:
        """The six moments m1..m6 as a (6,) array (for Jacobians and MSM)."""
        return jnp.stack([getattr(self, name) for name in MOMENT_NAMES])

    @property
    def regime(self) -> str:
        """"concentrating" when Delta Gini > 0, "equalizing" otherwise (concrete values only)."""
        return "concentrating" if float(self.gini_change) > 0 else "equalizing"

    def to_dict(self) -> dict:
        """Plain floats: the six moments, ``cv_change_all_workers``, ``<diagnostic>_before/_after``
        and the regime."""
        out = {name: float(getattr(self, name)) for name in MOMENT_NAMES}
        out["cv_change_all_workers"] = float(self.cv_change_all_workers)
        for name in STATE_DIAGNOSTICS:
            cast = int if name in ("fp_iterations", "fp_fallbacks") else float
            out[f"{name}_before"] = cast(self.before[name])
            out[f"{name}_after"] = cast(self.after[name])
        out["regime"] = self.regime
        return out


def _exposure_weighted_change(a: jax.Array, after: jax.Array, before: jax.Array) -> jax.Array:
    """sum_k a_k (after_k / before_k - 1) / sum_k a_k."""
    return jnp.sum(a * (after / before - 1.0)) / jnp.sum(a)


def compare_states(params, before: State, after: State, exposure: jax.Array) -> Moments:
    """The six moments from the two solved states (after minus before).

    Credential reliance is compared on the same occupations in both states: each occupation's
    support is min(g_o before, g_o after), so that m4 never reflects an occupation entering or
    leaving R; the diagnostics ``credential_reliance`` and ``credential_occupations`` of both
    states are those of this common set.
    """
    support = jnp.minimum(before.credential_support, after.credential_support)

    def diagnostics(state: State) -> dict:
        out = {name: getattr(state, name) for name in STATE_DIAGNOSTICS}
        out["credential_reliance"] = screening.credential_reliance(
            state.occupation_exposure, support, state.credential_coef
        )
        out["credential_occupations"] = jnp.sum(support)
        return out

    before_d, after_d = diagnostics(before), diagnostics(after)
    return Moments(
        cv_change=_exposure_weighted_change(exposure, after.task_cv, before.task_cv),
        productivity_gain=_exposure_weighted_change(exposure, after.task_mean, before.task_mean),
        college_premium_change=after.college_premium - before.college_premium,
        credential_reliance_change=after_d["credential_reliance"] - before_d["credential_reliance"],
        between_firm_share_change=after.between_firm_share - before.between_firm_share,
        gini_change=after.gini - before.gini,
        cv_change_all_workers=_exposure_weighted_change(exposure, after.task_cv_all_workers,
                                                        before.task_cv_all_workers),
        before=before_d,
        after=after_d,
        aggregates=jnp.stack([before.aggregates, after.aggregates]),
    )


def _cast(params: Params, settings: Settings) -> Params:
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, settings.dtype), params)


@functools.partial(jax.jit, static_argnames="settings")
def _solve(params: Params, draws: Draws, settings: Settings, A) -> State:
    params = _cast(params, settings)
    workers = workforce(params, draws, settings)
    return solve_state(params, workers, draws.u_K, settings, jnp.asarray(A, settings.dtype))


def cold(settings: Settings) -> jax.Array:
    """A ``start`` for :func:`moments` that means "no warm start": (2, 3 O + F) of NaN."""
    return jnp.full((2, n_aggregates(settings)), jnp.nan, settings.dtype)


def moments_at(params: Params, draws: Draws, settings: Settings, start: jax.Array,
               assigned: Assignment | None = None) -> Moments:
    """The moments from a warm ``start`` (2, 3 O + F) (NaN rows start cold), with the workers'
    assignment to occupations and firms if it is known (``assign``); traceable, not jitted."""
    params = _cast(params, settings)
    workers = workforce(params, draws, settings, assigned)
    # Both states share one compiled body (lax.map over A = 0, A1): half the compile time.
    capability = jnp.stack([jnp.zeros((), settings.dtype), params.A1])
    states = jax.lax.map(
        lambda a: solve_state(params, workers, draws.u_K, settings, a[0], a[1]),
        (capability, jnp.asarray(start, settings.dtype)),
    )
    before = jax.tree_util.tree_map(lambda x: x[0], states)
    after = jax.tree_util.tree_map(lambda x: x[1], states)
    a = tasks.exposure(tasks.task_grid(settings.n_tasks, settings.dtype), params.z_lo, params.z_hi, params.w_a)
    return compare_states(params, before, after, a)


@functools.partial(jax.jit, static_argnames="settings")
def moments_jit(params: Params, draws: Draws, settings: Settings, start: jax.Array | None = None) -> Moments:
    """The compiled function behind :func:`moments`, without its input checks: for ahead-of-time
    lowering (``moments_jit.lower(...).compile()``, as the benchmarks time compilation) and for use
    inside other transformations with inputs already validated."""
    return moments_at(params, draws, settings, cold(settings) if start is None else start)


@functools.partial(jax.jit, static_argnames="settings")
def _assign(params: Params, draws: Draws, settings: Settings) -> Assignment:
    return assignment(_cast(params, settings), draws, settings)


def assign(params: Params, draws: Draws, settings: Settings) -> Assignment:
    """The workers' occupations and firms (two sorts), which depend only on the draws and on
    rho_occ and rho_firm: compute once and reuse where neither of those moves."""
    _check_inputs(params, draws, settings)
    return _assign(params, draws, settings)


def _check_inputs(params: Params, draws: Draws, settings: Settings) -> None:
    if not isinstance(settings, Settings):
        raise InvalidSettingError(f"settings must be a jaxmodel.Settings, got {type(settings).__name__}")
    validate_params(params)
    check_draws(draws, settings)


def solve(params: Params, draws: Draws, settings: Settings, A) -> State:
    """Solve the economy at AI capability A on the given draws (MODEL.md section 4).

    Args:
        params: the parameters (validated when concrete).
        draws: from ``make_draws(key, settings)``.
        settings: static sizes and switches.
        A: AI capability, >= 0 (0 before adoption, ``params.A1`` after).

    Returns:
        The solved :class:`State`.
    """
    _check_inputs(params, draws, settings)
    if not isinstance(A, jax.core.Tracer) and not float(A) >= 0.0:
        raise InvalidParameterError(f"A={float(A):g} must be >= 0 (AI capability)")
    return _solve(params, draws, settings, A)


def moments(params: Params, draws: Draws, settings: Settings, start: jax.Array | None = None) -> Moments:
    """The six moments and diagnostics of the move from A = 0 to A = A1 (MODEL.md section 5).

    Differentiable by ``jax.jacfwd``/``jax.jacrev`` in every parameter (the education fixed point by
    the implicit function theorem); ``vmap`` over draw sets batches simulations.

    Args:
        start: optional (2, 3 O + F) warm start of the two fixed points, e.g. ``m.aggregates`` of a
            nearby parameter value; it changes the path, not the answer (to ``fp_tol``).
    """
    _check_inputs(params, draws, settings)
    if start is not None:
        start = jnp.asarray(start, settings.dtype)
        expected = (2, n_aggregates(settings))
        if start.shape != expected:
            raise InvalidSettingError(f"start has shape {start.shape}, expected {expected} (Moments.aggregates)")
    return moments_jit(params, draws, settings, start)
