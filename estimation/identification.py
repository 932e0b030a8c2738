"""Identification of the free parameters by the six moments, at a point and over the search box.

In the manner of Dynare's ``identification`` (Iskrev 2010; Ratto and Iskrev), with exact Jacobians
G = dm/dtheta from ``jax.jacfwd`` of ``jaxmodel``'s moments through the education fixed point.
Shapes: m moments (6), k free parameters, S sample points. Every diagnostic is a pure NumPy
function of (G, W, Omega, theta); the model is evaluated only by :func:`jacobians` and
:func:`moment_values`, each one compiled program over a whole batch of parameter points.

Definitions (the numbers ``levelfield identify`` reports):

- **Scaled Jacobian** J = W^{1/2} G (m, k), W^{1/2} the symmetric square root; its singular values
  and right singular vectors are reported as they are (natural units of the parameters).
- **Zero column**: parameter j has no effect when ||J_j|| * width_j <= :data:`ZERO_COLUMN_TOL`:
  moving theta_j across its whole search box moves the weighted moments by less than 1e-8 (in target
  SEs under diagonal weights), to first order. Under "additive", S(h) = 1 and mu, rho, omega never
  enter the model, so their columns are exactly 0.
- **Null space**: computed on J with each non-zero column scaled to unit length and zero columns
  set to exactly 0 (so it does not depend on the parameters' units). Its directions are the right
  singular vectors whose singular value is at most :data:`NULL_REL_TOL` times the largest (plus
  k - m directions when k > m). A tolerance of 1e-6 lies far above the error of the exact
  Jacobian (about fp_tol relative; 1e-8, ``Settings.tangent_tol``, where its solves are matrix-free) and far below any effect a user would call
  "weak but there" (those show up in the condition number). The same tolerance defines the rank in
  report.json (``estimation.inference.identification``). Each null direction is also given in
  natural units, d theta = D^{-1} v with D the column norms (normalised to unit length): moving the
  parameters along it leaves every moment unchanged to first order. When alpha and A1 enter only
  through their product, it is proportional to (alpha, -A1).
- **Null weight** of parameter j: the length of the projection of e_j on the null space (0: none,
  1: the parameter alone is a null direction).
- **Collinearity** (Iskrev 2010): the multiple correlation (uncentred, as Dynare's ``cosn``) of
  column J_j with the span of the other columns, R_j = ||P_{-j} J_j|| / ||J_j||; the most collinear
  partner (largest |cos|) and pair of partners (largest R on two columns) of each parameter, and the
  most collinear pair and triple overall. Undefined (NaN) for a zero column.
- **Identified**: a parameter is identified at a point when its column is not zero, its null weight
  is at most :data:`NULL_WEIGHT_TOL` and its collinearity is below :data:`COLLINEARITY_TOL` (0.99).
- **Condition number**: s_max / s_min of the column-normalised J (scale-free; inf with a zero
  column or an exact null direction); ``condition_number_natural`` is that of J itself, as in
  report.json.
- **Strength**: |theta_j| / se_j, and se_j / width_j (the SE as a share of the search box, the
  measure to read for a parameter near 0: |theta_j| < :data:`NEAR_ZERO_SHARE` of its box width).
  se from the sandwich V = (G'WG)^{-1} G'W Omega W G (G'WG)^{-1}. The parameters that are not
  identified by the null-space rule get se = inf, and V is computed with them held fixed (their
  columns dropped), so that the others still have an SE.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from estimation.inference import cov_robust, standard_errors, symmetric_sqrt
from estimation.msm.parameters import FreeParameters, params_with
from jaxmodel import MOMENT_NAMES, Settings
from jaxmodel.outcomes import cold, moments_at

#: Singular values at most this times the largest span the null space (column-normalised J).
NULL_REL_TOL = 1e-6
#: A parameter with more than this weight in the null space is not identified.
NULL_WEIGHT_TOL = 0.1
#: A parameter whose column has a multiple correlation with the others at or above this is not identified.
COLLINEARITY_TOL = 0.99
#: ||W^{1/2} G_j|| times the search-box width at most this: the parameter has no effect.
ZERO_COLUMN_TOL = 1e-8
#: A parameter is near 0 when |theta| is below this share of its search-box width; a moment is
#: near 0 when |m| is below its target SE (the heatmap shows SE-scaled derivatives there).
NEAR_ZERO_SHARE = 0.05
#: Quantiles of the condition number reported over the sample.
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


# --- The model, batched ----------------------------------------------------------------------------


def _moments_and_jacobian(theta, start, base, free, draws, assigned, settings: Settings):
    """G (m, k), m (m,), the larger fixed-point residual of the two states and their aggregates
    (2, 3 O + F) at theta (k,), the fixed points started from ``start`` (2, 3 O + F; NaN: cold)."""

    def f(t):
        out = moments_at(params_with(base, t, free), draws, settings, start, assigned)
        v = out.vector()
        return v, (v, jnp.maximum(out.before["fp_residual"], out.after["fp_residual"]), out.aggregates)

    G, (v, residual, aggregates) = jax.jacfwd(f, has_aux=True)(theta)
    return G, v, residual, aggregates


def _moments_only(theta, start, base, free, draws, assigned, settings: Settings):
    out = moments_at(params_with(base, theta, free), draws, settings, start, assigned)
    return out.vector(), jnp.maximum(out.before["fp_residual"], out.after["fp_residual"]), out.aggregates


def _chained(point, thetas, start, tol):
    """``point(theta, start)`` at every row of thetas (n, b, k), ``lax.scan`` over the n steps and
    ``vmap`` over the b lanes; returns its outputs stacked (n, b, ...).

    Each lane's fixed points start from the aggregates (the last output of ``point``) of the lane's
    previous point where those converged (finite, residual <= tol), else from where that point
    started; the first from ``start`` (b, 2, 3 O + F). The same fixed points to fp_tol as cold starts,
    in fewer iterations when consecutive points are near (:func:`chain_order`).
    """

    def lanes(theta, begin):
        if theta.shape[0] == 1:  # one lane: no vmap around the fixed-point loops
            return jax.tree_util.tree_map(lambda x: x[None], point(theta[0], begin[0]))
        return jax.vmap(point)(theta, begin)

    def step(begin, theta):
        out = lanes(theta, begin)
        residual, aggregates = out[-2], out[-1]
        good = jnp.all(jnp.isfinite(aggregates), axis=(1, 2)) & (residual <= tol)
        return jnp.where(good[:, None, None], aggregates, begin), out

    return jax.lax.scan(step, start, thetas)[1]


@functools.partial(jax.jit, static_argnames=("settings",))
def _jacobians(thetas, start, base, free, draws, assigned, settings: Settings):
    return _chained(lambda t, s: _moments_and_jacobian(t, s, base, free, draws, assigned, settings), thetas, start,
                    settings.tol)


@functools.partial(jax.jit, static_argnames=("settings",))
def _moment_values(thetas, start, base, free, draws, assigned, settings: Settings):
    return _chained(lambda t, s: _moments_only(t, s, base, free, draws, assigned, settings), thetas, start,
                    settings.tol)


def chain_order(thetas: np.ndarray, widths: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray:
    """(S,) an order of the rows of thetas (S, k) in which each is near the one before: greedy nearest
    neighbour in the box-scaled distance sum_j ((theta_j - theta'_j) / width_j)^2, from the row nearest
    ``origin`` (k,) (default: row 0). Deterministic (ties go to the lower row)."""
    scaled = np.asarray(thetas, dtype=np.float64) / np.asarray(widths, dtype=np.float64)
    n = scaled.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    here = scaled[0] if origin is None else np.asarray(origin, dtype=np.float64) / widths
    left = np.ones(n, dtype=bool)
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        d = np.where(left, np.sum((scaled - here) ** 2, axis=1), np.inf)
        j = int(np.argmin(d))
        order[i], left[j], here = j, False, scaled[j]
    return order


#: Bytes of working memory per (agent x point x tangent+1) of the batched Jacobian program, an upper
#: bound read off the CPU's resident memory (``benchmarks/bench_identify.py``).
_BYTES_PER_AGENT_POINT = 1400
#: The memory a batch may use when the device does not say (the CPU).
DEFAULT_BATCH_MEMORY = 4e9


def batch_size(n_agents: int, k: int, n_points: int, memory: float | None = None) -> int:
    """Points per vmapped batch (the lanes of :func:`_chained`) so that one batch fits in ``memory`` bytes.

    The whole sample is one vmap when it fits (a GPU with its memory); otherwise ``lax.scan`` runs
    batches of that many points in one compiled program. ``memory`` defaults to 60% of the
    device's limit where the device reports one. On the CPU (no ``memory`` given) the batch is
    one point: there a vmapped batch costs its points one after the other anyway, and runs every
    point of it for as many fixed-point iterations as its slowest one needs (measured with
    ``benchmarks/bench_identify.py`` at N = 2x10^4: 2.7x one evaluate per point in batches of 23,
    against 0.65-1.5x one point at a time, as the 2-core machine's load varied).
    """
    if memory is None and jax.default_backend() == "cpu":
        return 1
    if memory is None:
        memory = DEFAULT_BATCH_MEMORY
        try:
            stats = jax.devices()[0].memory_stats() or {}
            if stats.get("bytes_limit"):
                memory = 0.6 * float(stats["bytes_limit"])
        except Exception:  # pragma: no cover - a backend without memory_stats
            pass
    per_point = _BYTES_PER_AGENT_POINT * n_agents * (k + 1)
    return int(max(1, min(n_points, memory // per_point)))


@dataclasses.dataclass(frozen=True)
class Model:
    """What the batched programs need: settings, the fixed parameters, the free set and the draws.

    ``assigned`` is the workers' assignment (``jaxmodel.assign``) when neither rho_occ nor rho_firm
    is free (computed once), else None. ``start`` (2, 3 O + F) warm-starts the fixed points of
    :func:`moment_values` (e.g. the aggregates at an estimate, for draws around it); None: cold.
    The same fixed point to ``fp_tol`` either way, reached in fewer iterations.
    """

    settings: Settings
    base: object  # jaxmodel.Params
    free: FreeParameters
    draws: object  # jaxmodel.Draws
    assigned: object | None
    start: object | None = None


class _Layout(NamedTuple):
    """S points laid out for :func:`_chained`: ``grid`` (n, b, k), lane j walking the stretch
    j n .. (j + 1) n - 1 of the chain order ``order`` (S,), padded with copies of its last point to
    n b rows (batches of equal size share one compiled body)."""

    grid: np.ndarray
    order: np.ndarray
    n_points: int
    batch: int

    @classmethod
    def of(cls, thetas, batch: int, widths: np.ndarray, origin: np.ndarray | None) -> _Layout:
        thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
        n_points, k = thetas.shape
        widths = np.where(np.isfinite(widths) & (widths > 0), widths, 1.0)
        order = chain_order(thetas, widths, origin)
        steps = -(-n_points // max(1, min(batch, n_points)))
        b = -(-n_points // steps)
        chained = thetas[order]
        padded = np.vstack([chained, np.repeat(chained[-1:], steps * b - n_points, axis=0)])
        return cls(padded.reshape(b, steps, k).transpose(1, 0, 2), order, n_points, b)

    def start(self, model: Model) -> jax.Array:
        """(b, 2, 3 O + F) every lane's first start: the model's warm start, or cold."""
        first = cold(model.settings) if model.start is None else jnp.asarray(model.start, model.settings.dtype)
        return jnp.broadcast_to(first, (self.batch, *first.shape))

    def back(self, out: jax.Array) -> np.ndarray:
        """An output (n, b, ...) of :func:`_chained` as (S, ...) in the order of the points given."""
        out = np.asarray(out, dtype=np.float64)
        rows = np.swapaxes(out, 0, 1).reshape(-1, *out.shape[2:])[: self.n_points]
        back = np.empty_like(rows)
        back[self.order] = rows
        return back


def _widths(free: FreeParameters) -> np.ndarray:
    """(k,) the search box's width of each free parameter."""
    return np.asarray(free.upper, dtype=np.float64) - np.asarray(free.lower, dtype=np.float64)


def _run(program_fn, model: Model, layout: _Layout) -> tuple[tuple, float, float]:
    args = (jnp.asarray(layout.grid, dtype=model.settings.dtype), layout.start(model), model.base, model.free.arrays(),
            model.draws, model.assigned)
    start = time.perf_counter()
    program = program_fn.lower(*args, settings=model.settings).compile()
    compiled = time.perf_counter()
    out = jax.block_until_ready(program(*args))
    return out, compiled - start, time.perf_counter() - compiled


def jacobians(model: Model, thetas: np.ndarray, batch: int | None = None) -> dict:
    """G (S, m, k), moments (S, m), fixed-point residuals (S,) and aggregates (S, 2, 3 O + F) at S
    points thetas (S, k), in one compiled program; also its compile and run time (seconds) and the
    batch size used. The points run in :func:`chain_order` from row 0, each lane's fixed points
    starting from its previous point's (:func:`_chained`), the first from ``model.start`` or cold."""
    thetas = np.atleast_2d(thetas)
    layout = _Layout.of(thetas, batch or batch_size(model.settings.n_agents, model.free.size, len(thetas)),
                        _widths(model.free), None)
    (G, m, residual, aggregates), compile_s, run_s = _run(_jacobians, model, layout)
    return {"jacobian": layout.back(G), "moments": layout.back(m), "fp_residual": layout.back(residual),
            "aggregates": layout.back(aggregates), "batch_size": layout.batch, "compile_s": compile_s, "run_s": run_s}


def moment_values(model: Model, thetas: np.ndarray, batch: int | None = None, origin: np.ndarray | None = None) -> dict:
    """Moments (S, m) and fixed-point residuals (S,) at thetas (S, k), one compiled program.

    The points run in :func:`chain_order` from the one nearest ``origin`` (k,), the point where
    ``model.start`` was solved (default: row 0), each lane's fixed points from its previous point's.
    """
    thetas = np.atleast_2d(thetas)
    layout = _Layout.of(thetas, batch or batch_size(model.settings.n_agents, 0, len(thetas)), _widths(model.free), origin)
    (m, residual, _), compile_s, run_s = _run(_moment_values, model, layout)
    return {"moments": layout.back(m), "fp_residual": layout.back(residual), "batch_size": layout.batch,
            "compile_s": compile_s, "run_s": run_s}


# --- Diagnostics at one point (pure NumPy) --------------------------------------------------------


def scaled_jacobian(jac: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """J = W^{1/2} G: (m, k) from G (m, k) and W (m, m)."""
    return symmetric_sqrt(np.asarray(weights, dtype=np.float64)) @ np.asarray(jac, dtype=np.float64)


def zero_columns(scaled: np.ndarray, widths: np.ndarray, tol: float = ZERO_COLUMN_TOL) -> np.ndarray:
    """(k,) bool: ||J_j|| * width_j <= tol (the parameter has no effect across its box)."""
    return np.linalg.norm(scaled, axis=0) * np.asarray(widths, dtype=np.float64) <= tol


def normalised_columns(scaled: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """J with each non-zero column scaled to unit length and zero columns set to 0: (m, k)."""
    norms = np.linalg.norm(scaled, axis=0)
    return np.where(zero[None, :], 0.0, scaled / np.where(zero | (norms == 0), 1.0, norms)[None, :])


def singular(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values (k,) in descending order, padded with zeros when m < k, and the right
    singular vectors as rows (k, k), each signed so that its largest entry is positive."""
    k = matrix.shape[1]
    _, s, vt = np.linalg.svd(matrix, full_matrices=True)
    s = np.concatenate([s, np.zeros(max(0, k - s.size))])
    signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
    return s, vt * np.where(signs == 0, 1.0, signs)[:, None]


def null_space(normed: np.ndarray, rel_tol: float = NULL_REL_TOL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(basis (k, r) of the null space of the column-normalised J, its singular values (k,), the
    right singular vectors (k, k)); a direction is null when s <= rel_tol * s_max (all are, when
    J is 0)."""
    s, vt = singular(normed)
    top = float(s[0]) if s.size else 0.0
    null = s <= rel_tol * top if top > 0 else np.ones_like(s, dtype=bool)
    return vt[null].T, s, vt


def natural_direction(v: np.ndarray, scaled: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """A null direction v of the column-normalised J in natural units: D^{-1} v, unit length, its
    largest entry positive (D the column norms of J, 1 for zero columns)."""
    norms = np.linalg.norm(scaled, axis=0)
    d = v / np.where(zero | (norms == 0), 1.0, norms)
    d = d / (np.linalg.norm(d) or 1.0)
    return d * (np.sign(d[np.argmax(np.abs(d))]) or 1.0)


def multiple_correlation(columns: np.ndarray, j: int, others: Sequence[int]) -> float:
    """Uncentred multiple correlation of column j with the span of ``others``: ||P x_j|| / ||x_j||
    (NaN for a zero column; 0 with no others)."""
    x = columns[:, j]
    nx = float(np.linalg.norm(x))
    if nx == 0.0:
        return math.nan
    if not others:
        return 0.0
    X = columns[:, list(others)]
    b, *_ = np.linalg.lstsq(X, x, rcond=None)
    return float(min(1.0, np.linalg.norm(X @ b) / nx))


def collinearity(scaled: np.ndarray, zero: np.ndarray) -> dict:
    """Iskrev's collinearity of each column of J with the others (zero columns left out as partners).

    Returns:
        dict of (k,) arrays ``with_all`` (R with every other non-zero column), ``pair`` (largest
        |cos| with one other column) and ``pair_with`` (its index, -1 when none), ``triple``
        (largest R on two other columns) and ``triple_with`` (k, 2) indices; and ``most_pair``
        ((i, j), |cos|) and ``most_triple`` ((i, j, l), R of i on j, l) over all parameters.
    """
    k = scaled.shape[1]
    live = [j for j in range(k) if not zero[j]]
    out = {"with_all": np.full(k, np.nan), "pair": np.full(k, np.nan), "pair_with": np.full(k, -1),
           "triple": np.full(k, np.nan), "triple_with": np.full((k, 2), -1)}
    most_pair, most_triple = (None, math.nan), (None, math.nan)
    for j in live:
        others = [i for i in live if i != j]
        out["with_all"][j] = multiple_correlation(scaled, j, others)
        for i in others:
            r = multiple_correlation(scaled, j, [i])
            if not r <= out["pair"][j]:  # also when NaN (the first)
                out["pair"][j], out["pair_with"][j] = r, i
            if not r <= most_pair[1]:
                most_pair = ((min(i, j), max(i, j)), r)
        for i, l in itertools.combinations(others, 2):
            r = multiple_correlation(scaled, j, [i, l])
            if not r <= out["triple"][j]:
                out["triple"][j], out["triple_with"][j] = r, (i, l)
            if not r <= most_triple[1]:
                most_triple = ((j, i, l), r)
    out["most_pair"], out["most_triple"] = most_pair, most_triple
    return out


def sandwich_se(jac: np.ndarray, weights: np.ndarray, moments_cov: np.ndarray, held: np.ndarray) -> np.ndarray:
    """se_j = sqrt(V_jj) of the sandwich V with the parameters ``held`` (k,) bool fixed (their
    columns dropped; their se is inf); inf for all when the rest is still singular."""
    k = jac.shape[1]
    se = np.full(k, math.inf)
    keep = np.flatnonzero(~np.asarray(held, dtype=bool))
    if keep.size == 0:
        return se
    sub = jac[:, keep]
    gwg = sub.T @ weights @ sub
    if np.linalg.cond(gwg) > 1e14:
        return se
    se[keep] = standard_errors(cov_robust(sub, weights, moments_cov))
    return se


@dataclasses.dataclass(frozen=True)
class PointDiagnostics:
    """Identification at one point (the module docstring defines each entry). Arrays are (k,)
    unless said; indices refer to ``names``."""

    names: tuple[str, ...]
    theta: np.ndarray
    singular_values: np.ndarray  # of W^{1/2} G (natural units)
    right_vectors: np.ndarray  # (k, k) rows: right singular vectors of W^{1/2} G
    normalised_singular_values: np.ndarray  # of the column-normalised J
    null_directions: np.ndarray  # (r, k) rows: null directions in natural units
    null_normalised: np.ndarray  # (r, k) rows: the same in the column-normalised coordinates
    null_weight: np.ndarray
    zero_column: np.ndarray  # bool
    collinearity: np.ndarray  # R with all others
    pair: np.ndarray
    pair_with: np.ndarray
    triple: np.ndarray
    triple_with: np.ndarray  # (k, 2)
    most_pair: tuple
    most_triple: tuple
    se: np.ndarray
    strength: np.ndarray  # |theta| / se
    se_box_share: np.ndarray  # se / width
    near_zero: np.ndarray  # bool
    identified: np.ndarray  # bool
    condition_number: float  # column-normalised
    condition_number_natural: float
    rank: int

    def combination_text(self, d: np.ndarray, select: np.ndarray | None = None, cutoff: float = 0.05) -> str:
        """'0.51 alpha - 0.86 A1': the loadings of the natural-units direction ``d`` of the
        parameters whose loading in ``select`` (the same direction with unit-length columns, by
        default ``d`` itself) is at least ``cutoff`` in absolute value: a parameter that matters
        to the combination is named even when its natural-units loading is small."""
        select = d if select is None else select
        terms = [(v, n) for v, w, n in zip(d, select, self.names) if abs(w) >= cutoff]
        text = " ".join(f"{'+' if v >= 0 else '-'} {abs(v):.3g} {n}" for v, n in terms)
        return text[2:] if text.startswith("+ ") else text

    @property
    def null_space_text(self) -> list[str]:
        return [self.combination_text(d, w) for d, w in zip(self.null_directions, self.null_normalised)]

    def parameter_records(self) -> list[dict]:
        """One row per parameter (point.csv)."""
        name = lambda i: self.names[i] if i >= 0 else ""  # noqa: E731
        return [{
            "parameter": n, "value": float(self.theta[j]), "identified": bool(self.identified[j]),
            "zero_column": bool(self.zero_column[j]), "null_weight": float(self.null_weight[j]),
            "collinearity": float(self.collinearity[j]),
            "pair_partner": name(int(self.pair_with[j])), "pair_collinearity": float(self.pair[j]),
            "triple_partners": "+".join(name(int(i)) for i in self.triple_with[j] if i >= 0),
            "triple_collinearity": float(self.triple[j]),
            "se": float(self.se[j]), "strength": float(self.strength[j]),
            "se_box_share": float(self.se_box_share[j]), "near_zero": bool(self.near_zero[j]),
        } for j, n in enumerate(self.names)]

    def to_dict(self) -> dict:
        names = list(self.names)
        pair, triple = self.most_pair, self.most_triple
        return {
            "parameters": self.parameter_records(),
            "singular_values": self.singular_values.tolist(),
            "right_singular_vectors": [dict(zip(names, map(float, v))) for v in self.right_vectors],
            "normalised_singular_values": self.normalised_singular_values.tolist(),
            "condition_number": self.condition_number,
            "condition_number_natural": self.condition_number_natural,
            "rank": self.rank,
            "n_params": len(names),
            "identified": bool(self.identified.all()),
            "null_space": [{"direction": dict(zip(names, map(float, d))),
                            "normalised": dict(zip(names, map(float, v))), "text": t}
                           for d, v, t in zip(self.null_directions, self.null_normalised, self.null_space_text)],
            "most_collinear_pair": None if pair[0] is None else
            {"parameters": [names[i] for i in pair[0]], "collinearity": pair[1]},
            "most_collinear_triple": None if triple[0] is None else
            {"parameter": names[triple[0][0]], "with": [names[i] for i in triple[0][1:]], "collinearity": triple[1]},
        }


def _condition(s: np.ndarray) -> float:
    return math.inf if s.size == 0 or s[-1] <= 0 else float(s[0] / s[-1])


def diagnose(jac: np.ndarray, weights: np.ndarray, moments_cov: np.ndarray, theta: np.ndarray,
             names: Sequence[str], widths: np.ndarray, collinear: bool = True) -> PointDiagnostics:
    """Every diagnostic at one point.

    Args:
        jac: (m, k) G = dm/dtheta; weights: (m, m) W; moments_cov: (m, m) Omega of the moment
            errors (for the sandwich); theta: (k,) the point; names: k parameter names;
            widths: (k,) search-box widths.
        collinear: compute the pair and triple searches (k^3 small regressions); with False only
            the multiple correlation with all others.
    """
    jac = np.asarray(jac, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    widths = np.asarray(widths, dtype=np.float64)
    J = scaled_jacobian(jac, weights)
    zero = zero_columns(J, widths)
    normed = normalised_columns(J, zero)
    _, s_norm, _ = null_space(normed)
    # Zero columns are null directions of their own (e_j); the rest of the null space is that of
    # the other columns, so that the two are never mixed into one combination.
    live = np.flatnonzero(~zero)
    basis = np.zeros((theta.size, 0))
    if live.size:
        sub, _, _ = null_space(normed[:, live])
        basis = np.zeros((theta.size, sub.shape[1]))
        basis[live] = sub
    basis = np.hstack([np.eye(theta.size)[:, np.flatnonzero(zero)], basis])
    s_nat, vt_nat = singular(J)
    weight = np.sqrt(np.sum(basis**2, axis=1)) if basis.size else np.zeros(theta.size)
    if collinear:
        col = collinearity(J, zero)
    else:
        live = [j for j in range(theta.size) if not zero[j]]
        col = {"with_all": np.array([multiple_correlation(J, j, [i for i in live if i != j]) if not zero[j]
                                     else math.nan for j in range(theta.size)])}
    with np.errstate(invalid="ignore"):
        identified = (~zero) & (weight <= NULL_WEIGHT_TOL) & (col["with_all"] < COLLINEARITY_TOL)
    se = sandwich_se(jac, weights, np.asarray(moments_cov, dtype=np.float64), weight > NULL_WEIGHT_TOL)
    with np.errstate(divide="ignore", invalid="ignore"):
        strength = np.abs(theta) / se
    nulls = basis.T
    k = theta.size
    empty_k = np.full(k, np.nan)
    return PointDiagnostics(
        names=tuple(names), theta=theta, singular_values=s_nat, right_vectors=vt_nat,
        normalised_singular_values=s_norm,
        null_directions=np.array([natural_direction(v, J, zero) for v in nulls]).reshape(-1, k),
        null_normalised=nulls.reshape(-1, k), null_weight=weight, zero_column=zero,
        collinearity=col["with_all"], pair=col.get("pair", empty_k), pair_with=col.get("pair_with", np.full(k, -1)),
        triple=col.get("triple", empty_k), triple_with=col.get("triple_with", np.full((k, 2), -1)),
        most_pair=col.get("most_pair", (None, math.nan)), most_triple=col.get("most_triple", (None, math.nan)),
        se=se, strength=strength, se_box_share=se / widths, near_zero=np.abs(theta) < NEAR_ZERO_SHARE * widths,
        identified=identified, condition_number=_condition(s_norm), condition_number_natural=_condition(s_nat),
        rank=int(k - nulls.shape[0]),
    )


def elasticities(jac: np.ndarray, moments: np.ndarray, theta: np.ndarray, target_se: np.ndarray,
                 widths: np.ndarray) -> dict:
    """The heatmap's numbers: (m, k) arrays ``elasticity`` d log m / d log theta = G theta / m,
    ``se_scaled`` G width / se_m (target SEs the moment moves when theta crosses its box, to first
    order) and ``scaled`` (bool: the moment or the parameter is near 0, where the elasticity is
    not meaningful and the SE-scaled derivative is shown), and ``shown``."""
    jac = np.asarray(jac, dtype=np.float64)
    m = np.asarray(moments, dtype=np.float64)[:, None]
    theta = np.asarray(theta, dtype=np.float64)[None, :]
    widths = np.asarray(widths, dtype=np.float64)[None, :]
    se_m = np.asarray(target_se, dtype=np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        elasticity = jac * theta / m
    se_scaled = jac * widths / se_m
    scaled = (np.abs(m) < se_m) | (np.abs(theta) < NEAR_ZERO_SHARE * widths) | ~np.isfinite(elasticity)
    return {"elasticity": elasticity, "se_scaled": se_scaled, "scaled": scaled,
            "shown": np.where(scaled, se_scaled, elasticity)}


# --- The sample ------------------------------------------------------------------------------------

#: How the sample is drawn (recorded in identification.json).
SAMPLE_DESIGN = ("the first S points of a scrambled Sobol sequence (scipy.stats.qmc.Sobol, 2^ceil(log2 S) drawn), "
                 "seeded by --seed, mapped to the whole search box of the free parameters; the others held at the point")


def sobol_points(free: FreeParameters, n_points: int, seed: int) -> np.ndarray:
    """(S, k) points of a scrambled Sobol sequence over the search box (open: no point on a bound)."""
    from scipy.stats import qmc

    sobol = qmc.Sobol(d=free.size, scramble=True, seed=np.random.default_rng([seed, 20260422]))
    u = sobol.random_base2(int(math.ceil(math.log2(max(n_points, 2)))))[:n_points]
    lo, hi = np.asarray(free.lower), np.asarray(free.upper)
    return lo + (hi - lo) * u


def finite_points(jac: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """(S,) bool: every moment and every Jacobian entry finite (else the model overflowed)."""
    return np.isfinite(moments).all(axis=1) & np.isfinite(jac).all(axis=(1, 2))


def main_effects(coords: np.ndarray, y: np.ndarray, degree: int = 3) -> np.ndarray:
    """Share of the variance of y (S,) explained by a cubic in each coordinate alone (adjusted R^2,
    k,): the two largest name the directions the figure of the condition number uses."""
    coords = np.asarray(coords, dtype=np.float64)
    out = np.zeros(coords.shape[1])
    var = float(np.var(y))
    if y.size < degree + 2 or var == 0.0:
        return out
    n = y.size
    for j in range(coords.shape[1]):
        x = coords[:, j]
        x = (x - x.mean()) / (x.std() or 1.0)
        X = np.vander(x, degree + 1)
        b, *_ = np.linalg.lstsq(X, y, rcond=None)
        r2 = 1.0 - float(np.var(y - X @ b)) / var
        out[j] = max(0.0, 1.0 - (1.0 - r2) * (n - 1) / (n - degree - 1))  # adjusted R^2
    return out


#: Condition numbers above this are plotted (and ranked as drivers) at this value.
CONDITION_CAP = 1e16


@dataclasses.dataclass(frozen=True)
class SampleDiagnostics:
    """Identification over the sample (arrays over S points; NaN at points that overflowed)."""

    names: tuple[str, ...]
    thetas: np.ndarray  # (S, k)
    jacobians: np.ndarray  # (S, m, k)
    moments: np.ndarray  # (S, m)
    fp_residual: np.ndarray  # (S,)
    finite: np.ndarray  # (S,) bool
    identified: np.ndarray  # (S, k) bool (False where not finite)
    zero_column: np.ndarray  # (S, k) bool
    null_weight: np.ndarray  # (S, k)
    collinearity: np.ndarray  # (S, k)
    condition_number: np.ndarray  # (S,) column-normalised
    condition_number_natural: np.ndarray  # (S,)
    rank: np.ndarray  # (S,) int (-1 where not finite)
    null_space: list  # S lists of texts
    drivers: np.ndarray  # (k,) main-effect shares of log10 condition number

    @property
    def n_points(self) -> int:
        return int(self.thetas.shape[0])

    def share_identified(self) -> dict:
        """Per parameter: share of the finite points where it is identified, and of all points
        (a point that overflowed counts as not identified)."""
        n_finite = int(self.finite.sum())
        return {n: {"finite_points": float(self.identified[self.finite, j].mean()) if n_finite else math.nan,
                    "all_points": float(self.identified[:, j].mean()),
                    "zero_column": float(self.zero_column[self.finite, j].mean()) if n_finite else math.nan,
                    "null_weight_above_tol": float((self.null_weight[self.finite, j] > NULL_WEIGHT_TOL).mean())
                    if n_finite else math.nan,
                    "collinear": float((~(self.collinearity[self.finite, j] < COLLINEARITY_TOL)).mean())
                    if n_finite else math.nan,
                    "median_collinearity": float(np.nanmedian(self.collinearity[self.finite, j]))
                    if n_finite and np.isfinite(self.collinearity[self.finite, j]).any() else math.nan}
                for j, n in enumerate(self.names)}

    def condition_quantiles(self) -> dict:
        """Quantiles of the (column-normalised) condition number over the finite points (no
        interpolation, so inf is a value like any other)."""
        c = self.condition_number[self.finite]
        if c.size == 0:
            return {f"q{int(round(100 * q)):02d}": math.nan for q in QUANTILES}
        return {f"q{int(round(100 * q)):02d}": float(np.quantile(c, q, method="inverted_cdf")) for q in QUANTILES}

    def driver_pair(self) -> tuple[int, ...]:
        """Indices of the two parameters the log condition number depends on most (one when k = 1)."""
        order = np.argsort(-self.drivers, kind="stable")
        return tuple(int(i) for i in order[: min(2, len(order))])

    def worst(self, n: int = 20) -> np.ndarray:
        """Indices of the n finite points with the largest condition number (inf first)."""
        idx = np.flatnonzero(self.finite)
        order = np.argsort(-np.nan_to_num(self.condition_number[idx], nan=-1.0, posinf=np.inf), kind="stable")
        return idx[order[:n]]

    def point_records(self) -> list[dict]:
        """One row per point (sample.csv): its coordinates, status, condition numbers, rank, the
        parameters not identified there and the null space."""
        rows = []
        for s in range(self.n_points):
            row = {"point": s, **{n: float(self.thetas[s, j]) for j, n in enumerate(self.names)},
                   "status": "ok" if self.finite[s] else "overflow",
                   "condition_number": float(self.condition_number[s]),
                   "condition_number_natural": float(self.condition_number_natural[s]),
                   "rank": int(self.rank[s]), "fp_residual": float(self.fp_residual[s]),
                   "not_identified": " ".join(n for j, n in enumerate(self.names)
                                              if self.finite[s] and not self.identified[s, j]),
                   "null_space": "; ".join(self.null_space[s])}
            for j, n in enumerate(self.names):
                row[f"identified_{n}"] = bool(self.identified[s, j])
                row[f"collinearity_{n}"] = float(self.collinearity[s, j])
                row[f"null_weight_{n}"] = float(self.null_weight[s, j])
            rows.append(row)
        return rows


def diagnose_sample(thetas: np.ndarray, jac: np.ndarray, moments: np.ndarray, fp_residual: np.ndarray,
                    weights: np.ndarray, moments_cov: np.ndarray, names: Sequence[str],
                    widths: np.ndarray, lower: np.ndarray) -> SampleDiagnostics:
    """The point diagnostics at every sample point (pair and triple searches left out).

    Args:
        thetas: (S, k); jac: (S, m, k); moments: (S, m); fp_residual: (S,); lower: (k,) the box's
            lower bounds (the drivers are ranked on box coordinates).
    """
    S, k = thetas.shape
    finite = finite_points(jac, moments)
    out = {key: np.full((S, k), np.nan) for key in ("null_weight", "collinearity")}
    identified = np.zeros((S, k), dtype=bool)
    zero = np.zeros((S, k), dtype=bool)
    cond, cond_nat, rank = np.full(S, np.nan), np.full(S, np.nan), np.full(S, -1)
    nulls: list[list[str]] = [[] for _ in range(S)]
    for s in np.flatnonzero(finite):
        d = diagnose(jac[s], weights, moments_cov, thetas[s], names, widths, collinear=False)
        out["null_weight"][s], out["collinearity"][s] = d.null_weight, d.collinearity
        identified[s], zero[s] = d.identified, d.zero_column
        cond[s], cond_nat[s], rank[s] = d.condition_number, d.condition_number_natural, d.rank
        nulls[s] = d.null_space_text
    y = np.log10(np.minimum(cond[finite], CONDITION_CAP))
    coords = (thetas[finite] - lower[None, :]) / widths[None, :]
    return SampleDiagnostics(
        names=tuple(names), thetas=thetas, jacobians=jac, moments=moments, fp_residual=fp_residual,
        finite=finite, identified=identified, zero_column=zero, null_weight=out["null_weight"],
        collinearity=out["collinearity"], condition_number=cond, condition_number_natural=cond_nat,
        rank=rank, null_space=nulls, drivers=main_effects(coords, y),
    )


# --- Criterion slices ------------------------------------------------------------------------------


def slice_design(free: FreeParameters, theta: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(about k (n + 1), k) points: each parameter across its search box (n points, bounds
    included, and its value at theta), the others at theta; and the index of the parameter each
    row moves."""
    rows, which = [], []
    for j in range(free.size):
        for v in np.unique(np.append(np.linspace(free.lower[j], free.upper[j], n), theta[j])):
            t = np.array(theta, dtype=np.float64)
            t[j] = v
            rows.append(t)
            which.append(j)
    return np.array(rows).reshape(-1, free.size), np.array(which, dtype=int)


def contour_design(free: FreeParameters, theta: np.ndarray, pair: tuple[int, int], n: int) -> np.ndarray:
    """(n n, k) points on an n x n grid over the search boxes of ``pair`` = (a, b), bounds included
    (row r has x_a = grid_a[r // n], x_b = grid_b[r % n]), the others at theta."""
    a, b = pair
    xa = np.linspace(free.lower[a], free.upper[a], n)
    xb = np.linspace(free.lower[b], free.upper[b], n)
    ga, gb = np.meshgrid(xa, xb, indexing="ij")
    out = np.tile(np.asarray(theta, dtype=np.float64), (n * n, 1))
    out[:, a], out[:, b] = ga.ravel(), gb.ravel()
    return out


def criterion(moments: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Q = g'Wg with g = m - m_data, for each row of moments (S, m): (S,) (inf where not finite).
    A moment without a target (NaN in ``targets``; its weight is 0) contributes 0."""
    targets = np.asarray(targets, dtype=np.float64)
    g = np.asarray(moments, dtype=np.float64) - np.where(np.isnan(targets), 0.0, targets)[None, :]
    q = np.einsum("si,ij,sj->s", g, weights, g)
    return np.where(np.isfinite(q), q, np.inf)


# --- The whole study -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Study:
    """Everything ``levelfield identify`` computes (``estimation.output.identify_files`` writes it)."""

    free: FreeParameters
    theta: np.ndarray  # (k,)
    targets: np.ndarray  # (m,)
    target_se: np.ndarray  # (m,)
    weights: np.ndarray  # (m, m)
    moments_cov: np.ndarray  # (m, m)
    jacobian: np.ndarray  # (m, k) at the point
    moments: np.ndarray  # (m,) at the point
    fp_residual: float
    point: PointDiagnostics
    heatmap: dict
    sample: SampleDiagnostics | None
    slices: dict | None  # {"which": (k n,), "thetas": (k n, k), "Q": (k n,), "n": n}
    contour: dict | None  # {"pair": (a, b), "thetas": (n n, k), "Q": (n n,), "n": n}
    timing: dict
    regime: dict | None = None  # Delta Gini's SE and the regime probability (``regime_cov`` given)

    def share_concentrating(self) -> float:
        """Share of the finite Sobol points with Delta Gini > 0: the concentrating share of the
        search box (uniform over it), NaN without a sample."""
        if self.sample is None or not self.sample.finite.any():
            return math.nan
        return float(np.mean(self.sample.moments[self.sample.finite, MOMENT_NAMES.index("gini_change")] > 0))

    @property
    def widths(self) -> np.ndarray:
        return _widths(self.free)


def study(model: Model, theta: np.ndarray, targets: np.ndarray, target_se: np.ndarray, weights: np.ndarray,
          moments_cov: np.ndarray, n_points: int, seed: int, slice_points: int = 21, grid: int = 15,
          batch: int | None = None, progress: Callable[[str], None] | None = None,
          regime_cov: np.ndarray | None = None, regime_draws: int = 0, regime_key: jax.Array | None = None) -> Study:
    """The diagnostics at ``theta`` (k,), over ``n_points`` Sobol points and the criterion slices.

    The point and the sample go through one compiled Jacobian program (the point is row 0 of the
    batch); the slices, the contour and the regime draws through one compiled moments program.
    ``slice_points`` 0 leaves the slices out, ``grid`` 0 the contour. With ``regime_cov`` V (k, k),
    the covariance of an estimate at theta (a calibration's cov.csv), ``regime_draws`` draws of
    theta ~ N(theta, V) in the search box give the probability of the concentrating regime
    (``estimation.regimes``; key ``regime_key``, by default ``fold_in(key(seed), 2)``: a calibration's
    own draws of theta when ``seed`` is its seed).
    """
    say = progress or (lambda text: None)
    free = model.free
    names = free.names
    widths = _widths(free)
    theta = np.asarray(theta, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    timing: dict = {}
    sample_thetas = sobol_points(free, n_points, seed) if n_points else np.zeros((0, free.size))
    say(f"Exact Jacobians at the point and {n_points} Sobol points (one compiled program)")
    run = jacobians(model, np.vstack([theta[None], sample_thetas]), batch)
    timing["jacobians"] = {k: run[k] for k in ("compile_s", "run_s", "batch_size")}
    timing["jacobians"]["points"] = 1 + n_points
    G, m = run["jacobian"][0], run["moments"][0]
    if finite_points(G[None], m[None])[0]:
        point = diagnose(G, weights, moments_cov, theta, names, widths)
    else:
        from estimation.errors import EstimationError

        raise EstimationError(f"the model overflows at the point ({dict(zip(names, theta.tolist()))}): "
                              "non-finite moments or Jacobian")
    heat = elasticities(G, m, theta, target_se, widths)
    sample = None
    t0 = time.perf_counter()
    if n_points:
        say("Diagnostics at every point of the sample")
        sample = diagnose_sample(sample_thetas, run["jacobian"][1:], run["moments"][1:], run["fp_residual"][1:],
                                 weights, moments_cov, names, widths, np.asarray(free.lower))
    timing["sample_diagnostics_s"] = time.perf_counter() - t0
    slices = contour = regime = None
    rows, pair = [], None
    if slice_points:
        s_thetas, which = slice_design(free, theta, slice_points)
        rows.append(s_thetas)
    if grid and free.size >= 2:
        pair = point.most_pair[0] or (0, 1)
        rows.append(contour_design(free, theta, pair, grid))
    regime_thetas = acceptance = None
    if regime_cov is not None and regime_draws > 0:
        from estimation import regimes

        key = jax.random.fold_in(jax.random.key(seed), 2) if regime_key is None else regime_key
        regime_thetas, acceptance = regimes.draws_in_box(key, theta,
                                                         regime_cov, free.lower, free.upper, regime_draws)
    if rows or regime_thetas is not None:
        say("Criterion slices and contour (one compiled program)")
        n_regime = 0 if regime_thetas is None else len(regime_thetas)
        # Their fixed points start from the point's (the same fixed points to fp_tol, in fewer
        # iterations: every slice and contour point differs from it in one or two parameters).
        near = model if model.start is not None else dataclasses.replace(model, start=run["aggregates"][0])
        values = moment_values(near, np.vstack(rows + ([regime_thetas] if n_regime else [])), batch, origin=theta)
        timing["slices"] = {k: values[k] for k in ("compile_s", "run_s", "batch_size")}
        q = criterion(values["moments"][:len(values["moments"]) - n_regime], targets, weights)
        cut = 0
        if slice_points:
            cut = len(which)
            slices = {"which": which, "thetas": s_thetas, "Q": q[:cut], "n": slice_points}
        if pair is not None:
            contour = {"pair": pair, "thetas": rows[-1], "Q": q[cut:], "n": grid}
        if regime_thetas is not None:
            regime = _regime(G, m, regime_cov, values["moments"][len(q):], acceptance)
    return Study(free=free, theta=theta, targets=np.asarray(targets, dtype=np.float64),
                 target_se=np.asarray(target_se, dtype=np.float64), weights=weights,
                 moments_cov=np.asarray(moments_cov, dtype=np.float64), jacobian=G, moments=m,
                 fp_residual=float(run["fp_residual"][0]), point=point, heatmap=heat, sample=sample,
                 slices=slices, contour=contour, regime=regime, timing=timing)


def _regime(G: np.ndarray, m: np.ndarray, cov: np.ndarray, draws_moments: np.ndarray, acceptance: float) -> dict:
    """Delta Gini at the point with its delta-method SE, and the share of the regime draws (their
    moments (S, m)) in the concentrating regime (``estimation.regimes``)."""
    from estimation import regimes

    gini = MOMENT_NAMES.index("gini_change")
    se = regimes.delta_gini_se(G[gini], cov)
    return {"delta_gini": float(m[gini]), "se": se, "probability_normal": regimes.normal_probability(m[gini], se),
            **regimes.regime_probability(draws_moments[:, gini]), "acceptance": acceptance}


__all__ = [
    "COLLINEARITY_TOL", "NULL_REL_TOL", "NULL_WEIGHT_TOL", "ZERO_COLUMN_TOL", "MOMENT_NAMES",
    "Model", "PointDiagnostics", "SampleDiagnostics", "Study", "batch_size", "collinearity", "criterion",
    "diagnose", "diagnose_sample", "elasticities", "jacobians", "moment_values", "multiple_correlation",
    "null_space", "sandwich_se", "scaled_jacobian", "sobol_points", "study",
]
