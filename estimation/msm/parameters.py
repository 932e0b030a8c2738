"""Free parameters of an estimation: names, bounds, and smooth maps to an unconstrained space.

Each free parameter theta_j has bounds [lo_j, hi_j] (defaults from its MODEL.md domain, which may
be one-sided). The optimiser (``estimation.msm``) works on theta itself with the bounds as a box:
each Levenberg-Marquardt step is a bounded least-squares problem, so a bound that binds is an active
constraint. At an open end of a domain (sigma > 0) the model is not finite, the criterion is +inf
and the step is rejected. An estimate within 0.1% of the range (or of max(1, |bound|)) of a bound
is reported as binding.

The maps to unconstrained coordinates u, the scale of the gradient optimisers (``--optimizer
lbfgs``; ``optimiser.criterion_in_u`` takes u):
- two finite bounds: theta = lo + (hi - lo) sin(u)^2;
- only a lower bound: theta = lo + u^2;
- only an upper bound: theta = hi - u^2;
- none: theta = u.
They reach a bound at a finite u where dtheta/du = 0. (Levenberg-Marquardt works on theta itself:
a Gauss-Newton step through them misbehaves, the flat derivative at a bound sends it far away.)

The starting points of the multistart are drawn in the search box (:func:`starting_points`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from estimation.errors import ConfigError
from jaxmodel import DOMAINS, PARAM_NAMES, Params

#: The default free parameters (MODEL.md section 7).
DEFAULT_FREE: tuple[str, ...] = ("alpha", "sigma_nu", "sigma", "eta1", "xi")
#: The default search box of every parameter: where the optimiser looks when no --bound is given.
#: It is finite (a one-sided domain is no search region: a start can run off to infinity) and inside
#: the domain, which still validates user input and --bound. Two-sided domains are their own box
#: (open ends moved in: Gini(K) < 1, owners' share in (0, 1)); rho's box keeps it complementary
#: (its domain excludes 0).
SEARCH_BOX: dict[str, tuple[float, float]] = {
    "sigma": (0.2, 10.0),
    "lam": (-5.0, 5.0),
    "A1": (0.0, 5.0),
    "alpha": (0.0, 5.0),
    "z_lo": (0.0, 1.0),
    "z_hi": (0.0, 1.0),
    "w_a": (0.005, 0.5),
    "sigma_nu": (0.0, 3.0),
    "mu": (0.0, 3.0),
    "rho": (-10.0, -0.01),
    "omega": (0.0, 1.0),
    "sigma_theta": (0.05, 3.0),
    "gamma": (-0.9, 3.0),
    "c_bar": (-5.0, 5.0),
    "zeta": (-5.0, 5.0),
    "sigma_c": (0.0, 3.0),
    "tau": (0.001, 1.0),
    "sigma_eps": (0.0, 3.0),
    "gini_K": (0.0, 0.98),
    "r_K": (0.0, 5.0),
    "eta0": (0.0, 5.0),
    "eta1": (0.0, 5.0),
    "psi": (0.0, 3.0),
    "xi": (0.0, 1.0),
    "owner_share": (0.001, 0.5),
    "rho_occ": (0.0, 1.0),
    "b_occ": (0.01, 1.0),
    "rho_firm": (0.0, 1.0),
}

#: A parameter is reported as at its bound when within this share of its range (two-sided) or of
#: max(1, |bound|) (one-sided).
BINDING_SHARE = 1e-3


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FreeArrays:
    """The free parameters as data (a pytree), so that one compiled optimiser serves every free set
    of the same size k.

    Attributes:
        index: (k,) int32 position of each free parameter in PARAM_NAMES.
        lower, upper: (k,) bounds (+-inf where none).
        kind: (k,) int32: 0 no bound, 1 lower only, 2 upper only, 3 both.
    """

    index: jax.Array
    lower: jax.Array
    upper: jax.Array
    kind: jax.Array


def theta_of_u(u: jax.Array, free: FreeArrays) -> jax.Array:
    """theta(u) elementwise by bound kind (see the module docstring): (k,) from (k,).

    Every branch is evaluated on finite inputs (bounds replaced by 0 where absent, exponents
    clipped), so that the branches not taken never put inf or nan into the derivative.
    """
    lo = jnp.where(jnp.isfinite(free.lower), free.lower, 0.0)
    hi = jnp.where(jnp.isfinite(free.upper), free.upper, 0.0)
    both = lo + (hi - lo) * jnp.sin(u) ** 2
    lower_only = lo + u**2
    upper_only = hi - u**2
    return jnp.select([free.kind == 3, free.kind == 1, free.kind == 2], [both, lower_only, upper_only], u)


def params_with(base: Params, theta: jax.Array, free: FreeArrays) -> Params:
    """``base`` with the free parameters set to theta, differentiable in theta."""
    vector = jnp.stack([jnp.asarray(getattr(base, n), dtype=theta.dtype) for n in PARAM_NAMES])
    vector = vector.at[free.index].set(theta)
    return Params(**{n: vector[i] for i, n in enumerate(PARAM_NAMES)})


@dataclasses.dataclass(frozen=True)
class FreeParameters:
    """Names and bounds of the estimated parameters (static and hashable).

    Attributes:
        names: free parameter names in estimation order.
        lower: lower bounds (-inf where none).
        upper: upper bounds (inf where none).
    """

    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]

    @property
    def size(self) -> int:
        return len(self.names)

    def arrays(self) -> FreeArrays:
        """The free parameters as a pytree of arrays for jitted code."""
        lo, hi = np.asarray(self.lower), np.asarray(self.upper)
        kind = np.isfinite(lo).astype(np.int32) + 2 * np.isfinite(hi).astype(np.int32)
        return FreeArrays(
            index=jnp.asarray([PARAM_NAMES.index(n) for n in self.names], dtype=jnp.int32),
            lower=jnp.asarray(lo), upper=jnp.asarray(hi), kind=jnp.asarray(kind, dtype=jnp.int32),
        )

    def to_theta(self, u) -> jax.Array:
        """theta(u): (k,) bounded parameters from (k,) unconstrained coordinates."""
        return theta_of_u(jnp.asarray(u, dtype=jnp.float64), self.arrays())

    def to_u(self, theta) -> np.ndarray:
        """u(theta), the inverse map (the branch with u >= 0); theta must lie inside the bounds."""
        theta = np.asarray(theta, dtype=np.float64)
        u = np.empty_like(theta)
        for j in range(self.size):
            a, b, t = self.lower[j], self.upper[j], theta[j]
            if math.isfinite(a) and math.isfinite(b):
                u[j] = math.asin(math.sqrt(min(max((t - a) / (b - a), 0.0), 1.0)))
            elif math.isfinite(a):
                u[j] = math.sqrt(max(t - a, 0.0))
            elif math.isfinite(b):
                u[j] = math.sqrt(max(b - t, 0.0))
            else:
                u[j] = t
        return u

    def inside(self, theta, margin: float = 1e-6) -> np.ndarray:
        """Clip theta into the interior: at least ``margin`` of the range (or of 1) from each bound."""
        theta = np.array(theta, dtype=np.float64)
        for j in range(self.size):
            a, b = self.lower[j], self.upper[j]
            width = (b - a) if math.isfinite(a) and math.isfinite(b) else 1.0
            lo = a + margin * width if math.isfinite(a) else -np.inf
            hi = b - margin * width if math.isfinite(b) else np.inf
            theta[j] = min(max(theta[j], lo), hi)
        return theta

    def binding(self, theta) -> list[str | None]:
        """For each parameter: whether the estimate presses on a bound: "lower" or "upper" for a
        bound of the parameter's domain, "lower (search box)" or "upper (search box)" for a bound of
        the search box that is not the domain's (widen it with --bound), or None."""
        out: list[str | None] = []
        for j, t in enumerate(np.asarray(theta, dtype=np.float64)):
            a, b = self.lower[j], self.upper[j]
            domain = DOMAINS[self.names[j]]
            two_sided = math.isfinite(a) and math.isfinite(b)
            if math.isfinite(a) and t - a <= BINDING_SHARE * ((b - a) if two_sided else max(1.0, abs(a))):
                out.append("lower" if domain.lo is not None and a == domain.lo else "lower (search box)")
            elif math.isfinite(b) and b - t <= BINDING_SHARE * ((b - a) if two_sided else max(1.0, abs(b))):
                out.append("upper" if domain.hi is not None and b == domain.hi else "upper (search box)")
            else:
                out.append(None)
        return out

    def params(self, base: Params, theta) -> Params:
        """``base`` with the free parameters set to theta (differentiable in theta)."""
        return params_with(base, jnp.asarray(theta), self.arrays())


def parse_bound(text: str) -> tuple[str, float, float]:
    """``"alpha=0.1:2"`` -> ("alpha", 0.1, 2.0); either end may be empty for 'no bound'."""
    name, sep, rest = text.partition("=")
    lo_text, colon, hi_text = rest.partition(":")
    if not sep or not colon or not name.strip():
        raise ConfigError(f"--bound {text!r} must look like NAME=LOW:HIGH, e.g. --bound alpha=0.05:3")
    try:
        lo = float(lo_text) if lo_text.strip() else -math.inf
        hi = float(hi_text) if hi_text.strip() else math.inf
    except ValueError:
        raise ConfigError(f"--bound {text!r}: LOW and HIGH must be numbers (or empty)") from None
    name = name.strip()
    if name not in PARAM_NAMES:
        raise ConfigError(f"--bound {name}: unknown parameter; known: {', '.join(PARAM_NAMES)}")
    if math.isnan(lo) or math.isnan(hi):
        raise ConfigError(f"--bound {text!r}: LOW and HIGH must be numbers, not nan")
    if not lo < hi:
        raise ConfigError(f"--bound {name}={lo:g}:{hi:g}: the lower bound must be below the upper bound")
    return name, lo, hi


def free_parameters(
    names: Sequence[str] | None = None, bounds: Mapping[str, tuple[float, float]] | None = None
) -> FreeParameters:
    """Validated free parameters: default set and domain bounds unless overridden.

    Raises:
        ConfigError: unknown or repeated names, bounds outside the domain, empty or reversed bounds.
    """
    names = tuple(DEFAULT_FREE if names is None else names)
    bounds = dict(bounds or {})
    if not names:
        raise ConfigError("at least one free parameter is needed")
    unknown = [n for n in names if n not in PARAM_NAMES]
    if unknown:
        raise ConfigError(f"--free: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(PARAM_NAMES)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--free: parameter(s) {', '.join(repeated)} given twice")
    stray = [n for n in bounds if n not in names]
    if stray:
        raise ConfigError(f"--bound given for {', '.join(stray)}, which is not free; free: {', '.join(names)}")
    lower, upper = [], []
    for n in names:
        domain = DOMAINS[n]
        d_lo = -math.inf if domain.lo is None else domain.lo
        d_hi = math.inf if domain.hi is None else domain.hi
        lo, hi = bounds.get(n, SEARCH_BOX[n])
        if any(math.isnan(x) for x in (lo, hi)):
            raise ConfigError(f"--bound {n}: bounds must be numbers, got {lo}:{hi}")
        if lo < d_lo or hi > d_hi:
            raise ConfigError(f"--bound {n}={lo:g}:{hi:g} leaves the parameter's domain {domain}")
        if not lo < hi:
            raise ConfigError(f"--bound {n}={lo:g}:{hi:g}: the lower bound must be below the upper bound")
        if domain.exclude is not None and lo < domain.exclude < hi:
            raise ConfigError(
                f"--bound {n}={lo:g}:{hi:g} contains {domain.exclude:g}, which the domain {domain} excludes"
            )
        lower.append(float(lo))
        upper.append(float(hi))
    if "z_lo" in names and "z_hi" in names:
        raise ConfigError("z_lo and z_hi cannot both be free (their order constraint is not a box)")
    return FreeParameters(names=names, lower=tuple(lower), upper=tuple(upper))


#: How the starting points are drawn (recorded in report.json).
START_DESIGN = ("the baseline (moved inside the box), then a scrambled Sobol sequence (scipy.stats.qmc) "
                "over the middle 90% of the search box, seeded by the run's seed")


def starting_points(free: FreeParameters, base: Params, n_starts: int, seed: int) -> np.ndarray:
    """n_starts starting values of theta in the search box: (n_starts, k).

    The first is the base (baseline) value, moved inside the search box; the others are the first
    points of a scrambled Sobol sequence (space-filling, seeded by ``seed``) mapped to the middle
    90% of the box, which is finite for every parameter (:data:`SEARCH_BOX` or --bound).
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
