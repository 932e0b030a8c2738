"""The two regimes (MODEL.md section 8): the boundary Delta Gini = 0, maps and scenarios.

The boundary in the plane (xi, Gini(K)) is, for each xi on a grid, the asset concentration
Gini(K)* at which the model-implied Delta Gini crosses zero. It is found by a safeguarded Newton
method (Numerical Recipes' rtsafe) on Gini(K) in [0, 0.98]: Newton steps with the exact autodiff
derivative dDeltaGini/dGini(K), replaced by bisection whenever a step leaves the bracket or does
not halve |Delta Gini|. All grid points advance together, one batched (vmap) evaluation of the
value and its derivative per iteration, each point's education fixed points warm-started from its
previous iterate's (the path changes, not the answer). Where Delta Gini has one sign on the whole interval the
point is reported as having no crossing in the domain.

Along the curve the implicit function theorem gives its slope,
dGini(K)*/dxi = -(dDeltaGini/dxi) / (dDeltaGini/dGini(K)).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

import jaxmodel
from estimation.errors import ConfigError
from jaxmodel import MOMENT_NAMES, Draws, Params, Settings

#: Technology structures of AI (eta0 commodity access, eta1 proprietary access), either side of the
#: baseline (0.5, 0.5). Both have a boundary inside the plane at the baseline's other parameters;
#: with more lopsided structures (eta0 = 1, eta1 = 0.25) Delta Gini keeps one sign everywhere.
STRUCTURES: dict[str, dict[str, float]] = {
    "commodity-leaning": {"eta0": 0.75, "eta1": 0.5},
    "proprietary-leaning": {"eta0": 0.5, "eta1": 1.0},
}
#: Search interval of Gini(K) for the boundary (the domain is [0, 1); sigma_K grows without bound at 1).
GINI_K_RANGE = (0.0, 0.98)
#: Boundary points are reported when |Delta Gini| < F_TOL (Delta Gini itself is of order 1e-3 to 1e-2).
F_TOL = 1e-8
X_TOL = 1e-10
MAX_ITER = 40


def _with(base: Params, xi, gini_K, eta0=None, eta1=None) -> Params:
    values = base.to_dict()
    values.update(xi=xi, gini_K=gini_K)
    if eta0 is not None:
        values.update(eta0=eta0, eta1=eta1)
    return Params(**values)


def _gini_change(params: Params, draws: Draws, settings: Settings) -> jax.Array:
    return jaxmodel.moments(params, draws, settings).gini_change


@functools.partial(jax.jit, static_argnames="settings")
def delta_gini_with_slopes(base: Params, xi: jax.Array, gini_K: jax.Array, starts: jax.Array, draws: Draws,
                           settings: Settings):
    """Delta Gini and its derivatives in xi and Gini(K) at each point of (G,) arrays.

    Args:
        starts: (G, 2, 3 O + F) warm starts of each point's fixed points (NaN: cold), e.g. the
            aggregates of the previous Newton iterate at the same xi.

    Returns:
        (value, d/dxi, d/dGini(K), aggregates): three (G,) arrays by forward-mode autodiff and the
        (G, 2, 3 O + F) aggregates of the solutions, the next warm starts.
    """

    def one(x, g, start):
        def f(v):
            m = jaxmodel.moments(_with(base, v[0], v[1]), draws, settings, start=start)
            return m.gini_change, (m.gini_change, m.aggregates)

        grad, (value, aggregates) = jax.jacfwd(f, has_aux=True)(jnp.stack([x, g]))
        return value, grad[0], grad[1], aggregates

    return jax.lax.map(lambda a: one(*a), (xi, gini_K, starts), batch_size=min(4, xi.shape[0]))


@functools.partial(jax.jit, static_argnames="settings")
def delta_gini_map(base: Params, xi: jax.Array, gini_K: jax.Array, eta0: jax.Array, eta1: jax.Array,
                   draws: Draws, settings: Settings) -> jax.Array:
    """Delta Gini at each point of (G,) arrays of (xi, Gini(K), eta0, eta1)."""

    def one(a):
        x, g, e0, e1 = a
        return _gini_change(_with(base, x, g, e0, e1), draws, settings)

    return jax.lax.map(one, (xi, gini_K, eta0, eta1), batch_size=min(4, xi.shape[0]))


class Crossing(enum.Enum):
    """How the search for Gini(K)* ended at one xi."""

    CONVERGED = "converged"
    ALWAYS_CONCENTRATING = "Delta Gini > 0 everywhere"
    NEVER_CONCENTRATING = "Delta Gini < 0 everywhere"
    NOT_CONVERGED = "not converged"


@dataclasses.dataclass
class Boundary:
    """The boundary Delta Gini = 0 for one technology structure, one row per xi."""

    structure: str
    eta0: float
    eta1: float
    xi: np.ndarray  # (G,)
    gini_K: np.ndarray  # (G,) Gini(K)* (nan where no crossing)
    residual: np.ndarray  # (G,) Delta Gini at the point
    slope: np.ndarray  # (G,) dGini(K)*/dxi by the implicit function theorem
    iterations: np.ndarray  # (G,)
    status: list  # (G,) Crossing
    concentrating_above: np.ndarray  # (G,) bool: Delta Gini > 0 above the curve (higher Gini(K))

    def status_text(self, i: int) -> str:
        """The status of row i in words (as in boundary.csv)."""
        status = self.status[i]
        if status is Crossing.CONVERGED:
            return status.value
        if status is Crossing.NOT_CONVERGED:
            return f"not converged: |Delta Gini| = {abs(self.residual[i]):.1e} after {self.iterations[i]} iterations"
        lo, hi = GINI_K_RANGE
        return f"no crossing in [{lo:g}, {hi:g}]: {status.value}"

    def records(self) -> list[dict]:
        return [
            {"structure": self.structure, "eta0": self.eta0, "eta1": self.eta1, "xi": float(self.xi[i]),
             "gini_K": float(self.gini_K[i]), "delta_gini_residual": float(self.residual[i]),
             "slope_dginiK_dxi": float(self.slope[i]), "iterations": int(self.iterations[i]),
             "status": self.status_text(i),
             "concentrating_side": "above" if self.concentrating_above[i] else "below"}
            for i in range(self.xi.size)
        ]


def find_boundary(base: Params, draws: Draws, settings: Settings, xi: np.ndarray, structure: str,
                  eta: Mapping[str, float], progress: Callable[[str], None] | None = None) -> Boundary:
    """Gini(K)* with Delta Gini(xi, Gini(K)*) = 0 for each xi, by safeguarded Newton (batched)."""
    base = base.replace(**eta)
    xi = np.asarray(xi, dtype=np.float64)
    g = xi.size
    lo_x, hi_x = GINI_K_RANGE

    # Each point's fixed points start from the aggregates of its previous evaluation (warm starts:
    # a Newton step moves Gini(K) a little); the two bracket ends start cold.
    cold = np.full((g,) + tuple(jaxmodel.outcomes.cold(settings).shape), np.nan)
    warm = {"starts": cold}

    def evaluate(points, starts=None):
        f, f_xi, f_g, aggregates = delta_gini_with_slopes(
            base, jnp.asarray(xi), jnp.asarray(points), jnp.asarray(warm["starts"] if starts is None else starts),
            draws, settings,
        )
        if starts is None:
            warm["starts"] = np.asarray(aggregates)
        return np.asarray(f), np.asarray(f_xi), np.asarray(f_g)

    f_lo, _, _ = evaluate(np.full(g, lo_x), cold)
    f_hi, _, _ = evaluate(np.full(g, hi_x), cold)
    crossing = np.sign(f_lo) != np.sign(f_hi)
    # Orient each bracket so that f(a) < 0 < f(b).
    a = np.where(f_lo < 0, lo_x, hi_x)
    b = np.where(f_lo < 0, hi_x, lo_x)
    # Start from the secant (regula falsi) point of the bracket.
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.clip(np.where(crossing, lo_x - f_lo * (hi_x - lo_x) / (f_hi - f_lo), np.nan), lo_x, hi_x)
    previous = np.full(g, np.inf)
    done = ~crossing
    iterations = np.zeros(g, int)
    f = np.full(g, np.nan)
    f_xi = np.full(g, np.nan)
    f_g = np.full(g, np.nan)
    for it in range(1, MAX_ITER + 1):
        active = ~done
        if not active.any():
            break
        point = np.where(active, x, np.where(np.isfinite(x), x, lo_x))
        fv, fx, fg = evaluate(point)
        f = np.where(active, fv, f)
        f_xi = np.where(active, fx, f_xi)
        f_g = np.where(active, fg, f_g)
        iterations = np.where(active, it, iterations)
        if progress is not None:
            progress(f"{structure}: iteration {it}, max |Delta Gini| {np.nanmax(np.abs(np.where(active, fv, 0))):.1e}")
        converged = active & (np.abs(fv) < F_TOL)
        neg = active & (fv < 0)
        a = np.where(neg, x, a)
        b = np.where(active & (fv >= 0), x, b)
        narrow = active & (np.abs(b - a) < X_TOL)
        done = done | converged | narrow
        newton = x - fv / np.where(fg != 0, fg, np.nan)
        inside = (newton > np.minimum(a, b)) & (newton < np.maximum(a, b))
        fast = np.abs(fv) <= 0.5 * previous
        step = np.where(inside & fast & np.isfinite(newton), newton, 0.5 * (a + b))
        previous = np.where(active, np.abs(fv), previous)
        x = np.where(done, x, step)
    status = []
    for i in range(g):
        if not crossing[i]:
            status.append(Crossing.ALWAYS_CONCENTRATING if f_lo[i] > 0 else Crossing.NEVER_CONCENTRATING)
        else:
            status.append(Crossing.CONVERGED if abs(f[i]) < F_TOL else Crossing.NOT_CONVERGED)
    gini_star = np.where(crossing, x, np.nan)
    slope = np.where(crossing, -f_xi / f_g, np.nan)
    return Boundary(
        structure=structure, eta0=float(base.eta0), eta1=float(base.eta1), xi=xi, gini_K=gini_star,
        residual=np.where(crossing, f, np.nan), slope=slope, iterations=iterations, status=status,
        concentrating_above=np.where(crossing, f_g > 0, f_lo > 0),
    )


def regime_map(base: Params, draws: Draws, settings: Settings, axes: dict[str, np.ndarray]) -> np.ndarray:
    """Delta Gini on the grid of two of (xi, gini_K, eta0, eta1): (len(first), len(second))."""
    (n1, v1), (n2, v2) = axes.items()
    grid1, grid2 = np.meshgrid(v1, v2, indexing="ij")
    columns = {n: np.full(grid1.size, float(getattr(base, n))) for n in ("xi", "gini_K", "eta0", "eta1")}
    columns[n1], columns[n2] = grid1.ravel(), grid2.ravel()
    values = delta_gini_map(base, *(jnp.asarray(columns[n]) for n in ("xi", "gini_K", "eta0", "eta1")), draws, settings)
    return np.asarray(values).reshape(grid1.shape)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A counterfactual named by its policy meaning."""

    name: str
    meaning: str
    change: Callable[[Params], dict]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("stronger-rent-sharing", "workers' share of firm rents doubled (xi -> min(2 xi, 1))",
                 lambda p: {"xi": min(2.0 * float(p.xi), 1.0)}),
        Scenario("lower-asset-concentration", "Gini of complementary assets lowered by 0.2 (antitrust, data portability)",
                 lambda p: {"gini_K": max(float(p.gini_K) - 0.2, 0.0)}),
        Scenario("commoditised-ai", "proprietary AI becomes a commodity service (eta0 -> eta0 + eta1, eta1 -> 0)",
                 lambda p: {"eta0": float(p.eta0) + float(p.eta1), "eta1": 0.0}),
        Scenario("open-asset-access", "complementary assets open to every firm: proprietary access no longer "
                 "scales with assets (psi -> 0)", lambda p: {"psi": 0.0}),
    )
}


def run_scenarios(base: Params, draws: Draws, settings: Settings, names: list[str]) -> list[dict]:
    """Every moment and the regime at the base and under each named scenario."""
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ConfigError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}, or all")
    reference = jaxmodel.moments(base, draws, settings)
    ref = reference.to_dict()
    rows = []
    for name in names:
        scenario = SCENARIOS[name]
        changes = scenario.change(base)
        m = jaxmodel.moments(base.replace(**changes), draws, settings).to_dict()
        row = {"scenario": name, "meaning": scenario.meaning, "changes": changes,
               "regime_base": ref["regime"], "regime_scenario": m["regime"]}
        for key in MOMENT_NAMES + ("gini_before", "gini_after", "capital_share_after", "college_share_after"):
            row[f"{key}_base"] = ref[key]
            row[f"{key}_scenario"] = m[key]
            row[f"{key}_change"] = m[key] - ref[key]
        rows.append(row)
    return rows


@dataclasses.dataclass(frozen=True)
class RegimeStudy:
    """What ``levelfield regimes`` computes: the boundary of each structure and two maps.

    Attributes:
        boundaries: one :class:`Boundary` per structure in :data:`STRUCTURES`.
        xi, gini_K, eta1: (G,) grids; plane: (G, G) Delta Gini over (xi, Gini(K));
        technology: (G, G) Delta Gini over (eta1, xi).
    """

    boundaries: list
    xi: np.ndarray
    gini_K: np.ndarray
    eta1: np.ndarray
    plane: np.ndarray
    technology: np.ndarray


def study(params: Params, draws: Draws, settings: Settings, grid: int,
          progress: Callable[[str], None] | None = None) -> RegimeStudy:
    """The boundary Delta Gini = 0 for every structure on a grid of ``grid`` values of xi in
    [0, 0.8], and maps of Delta Gini over (xi, Gini(K) in [0, 0.95]) and (eta1 in [0, 2], xi)."""
    say = progress or (lambda text: None)
    xi = np.linspace(0.0, 0.8, grid)
    gini_K = np.linspace(0.0, 0.95, grid)
    eta1 = np.linspace(0.0, 2.0, grid)
    boundaries = [find_boundary(params, draws, settings, xi, name, eta, progress=say) for name, eta in STRUCTURES.items()]
    say(f"Map of Delta Gini over (xi, Gini(K)), {grid}x{grid}")
    plane = regime_map(params, draws, settings, {"xi": xi, "gini_K": gini_K})
    say(f"Map of Delta Gini over (eta1, xi), {grid}x{grid}")
    technology = regime_map(params, draws, settings, {"eta1": eta1, "xi": xi})
    return RegimeStudy(boundaries, xi, gini_K, eta1, plane, technology)


# --- The regime with its uncertainty ---------------------------------------------------------------

#: Draws of theta for the regime probability (``levelfield calibrate --regime-draws``): the Monte
#: Carlo SE of a probability p from S draws is sqrt(p (1 - p) / S) <= 0.5 / sqrt(S), 0.031 at 256.
REGIME_DRAWS = 256
#: Rounds of rejection sampling (each of 2 S normal draws) before giving up on filling S draws in the box.
MAX_ROUNDS = 50


def delta_gini_se(gradient: np.ndarray, cov: np.ndarray) -> float:
    """Delta-method SE of Delta Gini at the estimate: sqrt(a' V a), a = dDeltaGini/dtheta (k,), V (k, k)."""
    a = np.asarray(gradient, dtype=np.float64)
    return float(np.sqrt(max(float(a @ np.asarray(cov, dtype=np.float64) @ a), 0.0)))


def draws_in_box(key: jax.Array, mean: np.ndarray, cov: np.ndarray, lower, upper, n_draws: int,
                 max_rounds: int = MAX_ROUNDS) -> tuple[np.ndarray, float]:
    """``n_draws`` draws of theta ~ N(mean, cov) restricted to the box [lower, upper] (rejection).

    Draws come in rounds of 2 ``n_draws`` from keys split off ``key`` (the same key, the same
    draws); those outside the box are dropped. The square root of V is the symmetric one
    (eigenvalues clipped at 0), so a V that is only positive semi-definite is fine.

    Args:
        mean: (k,); cov: (k, k); lower, upper: (k,) the search box.

    Returns:
        (draws (S', k) with S' = n_draws unless ``max_rounds`` rounds did not fill it, the share
        of normal draws that fell in the box).
    """
    mean = np.asarray(mean, dtype=np.float64)
    lo, hi = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    values, vectors = np.linalg.eigh((np.asarray(cov, np.float64) + np.asarray(cov, np.float64).T) / 2.0)
    root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    kept, drawn = [], 0
    for _ in range(max_rounds):
        key, sub = jax.random.split(key)
        z = np.asarray(jax.random.normal(sub, (2 * n_draws, mean.size), dtype=jnp.float64))
        theta = mean[None, :] + z @ root
        drawn += theta.shape[0]
        kept.append(theta[((theta >= lo) & (theta <= hi)).all(axis=1)])
        if sum(len(t) for t in kept) >= n_draws:
            break
    draws = np.concatenate(kept)[:n_draws]
    return draws, float(sum(len(t) for t in kept) / drawn)


def regime_probability(values: np.ndarray) -> dict:
    """The share of draws in the concentrating regime (Delta Gini > 0) among those where the model
    is finite, with its Monte Carlo SE sqrt(p (1 - p) / S).

    Args:
        values: (S,) Delta Gini at each draw (NaN or inf where the model overflowed).
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    n = int(finite.sum())
    p = float(np.mean(values[finite] > 0)) if n else float("nan")
    return {"probability_concentrating": p, "monte_carlo_se": float(np.sqrt(p * (1.0 - p) / n)) if n else float("nan"),
            "draws": int(values.size), "finite_draws": n}


def normal_probability(delta_gini: float, se: float) -> float:
    """P(Delta Gini > 0) to first order, Phi(Delta Gini / se) (1 or 0 when se is 0)."""
    from statistics import NormalDist

    if not se > 0:
        return float(delta_gini > 0)
    return float(NormalDist().cdf(delta_gini / se))


def regime_uncertainty(delta_gini: float, gradient: np.ndarray, cov: np.ndarray, theta: np.ndarray, lower, upper,
                       delta_gini_at: Callable[[np.ndarray], np.ndarray], key: jax.Array,
                       n_draws: int = REGIME_DRAWS) -> dict:
    """Delta Gini with its delta-method SE, and the probability of the concentrating regime.

    The probability is the share of ``n_draws`` draws theta ~ N(theta_hat, V) restricted to the
    search box (:func:`draws_in_box`) where Delta Gini(theta) > 0, each draw's Delta Gini from
    ``delta_gini_at`` (one batched program over all draws). Beside it the first-order
    probability Phi(Delta Gini / se): the two agree when Delta Gini is close to linear over the
    spread of the draws and the box does not cut them.

    Args:
        delta_gini: at the estimate; gradient: (k,) its derivative in the free parameters;
        cov: (k, k) V; theta: (k,) the estimate; lower, upper: (k,) the search box;
        delta_gini_at: (S, k) draws -> (S,) Delta Gini; key: the PRNG key of the draws.

    Returns:
        dict with delta_gini, se, probability_normal, probability_concentrating, monte_carlo_se,
        draws, finite_draws, acceptance (share of normal draws inside the box) and method.
    """
    se = delta_gini_se(gradient, cov)
    out = {"delta_gini": float(delta_gini), "se": se, "probability_normal": normal_probability(delta_gini, se)}
    if n_draws <= 0:
        return {**out, "probability_concentrating": None, "monte_carlo_se": None, "draws": 0, "finite_draws": 0,
                "acceptance": None, "method": "no draws (--regime-draws 0)"}
    thetas, acceptance = draws_in_box(key, theta, cov, lower, upper, n_draws)
    values = np.asarray(delta_gini_at(thetas), dtype=np.float64) if len(thetas) else np.zeros(0)
    return {**out, **regime_probability(values), "acceptance": acceptance,
            "method": ("share of draws theta ~ N(theta_hat, V) restricted to the search box with Delta Gini > 0, "
                       "each from the model (one batched program)")}
