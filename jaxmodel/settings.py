"""Static settings (MODEL.md section 1): sizes, the augmentation spec, tolerances, precision.

``Settings`` is frozen and hashable: it is a static argument of every jitted function, so a new
value compiles anew while new parameter values do not.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import jax.numpy as jnp

from jaxmodel.errors import InvalidSettingError

#: The AI augmentation forms S(h) of MODEL.md section 4.
SPECS: tuple[str, ...] = ("additive", "partial_multiplicative", "ces")
#: Floating-point precisions; float64 is the default (and the only one for gradient checks).
PRECISIONS: tuple[str, ...] = ("float64", "float32")
#: Solvers of the education fixed point (``jaxmodel.education``): the same fixed point, other paths.
FP_SOLVERS: tuple[str, ...] = ("newton", "anderson", "damped")
#: Smallest fixed-point tolerance that float32 arithmetic reaches. The residual max|Gamma(P) - P|
#: stalls near 1e-4 in float32 (rounding of N-term aggregates moves every P), so a smaller floor
#: only runs the loop to ``fp_max_iter``, and the moments it would still move lie below float32's
#: own error (about 1e-4).
FLOAT32_TOL_FLOOR = 5e-4
#: Most aggregates 3 O + F for which the fixed point's Jacobian D is assembled and factorised
#: densely (``jaxmodel.feedback``): D takes 8 (3 O + F)^2 bytes (32 MiB at the limit) and its LU
#: (3 O + F)^3 / 1.5 flops. Above it the derivatives' linear systems are solved matrix-free and
#: fp_solver="newton" is refused.
DENSE_LIMIT = 2048
_MAX_INDEX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes and switches of the model; validated on construction.

    Attributes:
        n_agents: N, simulated workers; a multiple of ``n_firms`` and of ``n_occupations``.
        n_firms: F, firms of equal size N/F.
        n_tasks: T, task grid z_k = (k - 1/2)/T with weight 1/T.
        n_occupations: O, occupations of equal size N/O.
        spec: AI augmentation form, one of :data:`SPECS`.
        fp_tol: tolerance of the education fixed point, max |P_new - P|. In float32 it is floored at
            :data:`FLOAT32_TOL_FLOOR` (float32 cannot resolve 1e-10); the residual is reported.
        fp_max_iter: most iterations (passes) of the fixed point.
        fp_solver: "newton" (Newton's method in the space of the 3 O + F aggregates that Gamma
            depends on, with their Jacobian assembled in one pass), "anderson" (Anderson
            acceleration in the same space) or "damped" (MODEL.md's reference iteration on P).
        fp_damping: d in (0, 1]: the damping of the "damped" solver, P <- (1 - d) P + d Gamma(P),
            and of the safeguard steps of the other two.
        fp_tangent_tol: relative tolerance of the implicit-function linear solves where they are
            matrix-free (GMRES; more than ``jaxmodel.education.DENSE_LIMIT`` aggregates), floored at
            ``tol``. Below that size they are solved exactly with the assembled Jacobian.
        precision: "float64" (default) or "float32" (GPU throughput).
    """

    n_agents: int = 100_000
    n_firms: int = 500
    n_tasks: int = 40
    n_occupations: int = 10
    spec: str = "additive"
    fp_tol: float = 1e-10
    fp_max_iter: int = 200
    fp_damping: float = 0.5
    fp_solver: str = "anderson"
    fp_tangent_tol: float = 1e-8
    precision: str = "float64"

    def __post_init__(self) -> None:
        for name in ("n_agents", "n_firms", "n_tasks", "n_occupations", "fp_max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise InvalidSettingError(f"setting {name}={value!r} must be a positive integer")
            object.__setattr__(self, name, int(value))
        n, f, o = self.n_agents, self.n_firms, self.n_occupations
        if n % f or n % o:
            unit = math.lcm(f, o)
            suggestion = max(unit, round(n / unit) * unit)
            raise InvalidSettingError(
                f"setting n_agents={n} must be a multiple of n_firms={f} and of n_occupations={o} "
                f"(firms and occupations have equal sizes); for example n_agents={suggestion}"
            )
        if 2 * n + f > _MAX_INDEX:
            raise InvalidSettingError(f"setting n_agents={n} is too large (2N + F must be < 2^31)")
        if self.spec not in SPECS:
            raise InvalidSettingError(f"setting spec={self.spec!r} is unknown; allowed: {', '.join(SPECS)}")
        if self.precision not in PRECISIONS:
            raise InvalidSettingError(
                f"setting precision={self.precision!r} is unknown; allowed: {', '.join(PRECISIONS)}"
            )
        if self.fp_solver not in FP_SOLVERS:
            raise InvalidSettingError(
                f"setting fp_solver={self.fp_solver!r} is unknown; allowed: {', '.join(FP_SOLVERS)}"
            )
        if self.fp_solver == "newton" and self.n_aggregates > DENSE_LIMIT:
            raise InvalidSettingError(
                f"setting fp_solver='newton' factorises a dense Jacobian of the 3 O + F = {self.n_aggregates} aggregates; "
                f"allowed up to {DENSE_LIMIT} (fewer firms), else use fp_solver='anderson'"
            )
        for name in ("fp_tol", "fp_damping", "fp_tangent_tol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise InvalidSettingError(f"setting {name}={value!r} must be a number")
            object.__setattr__(self, name, float(value))
        if not 0.0 < self.fp_tol < 1.0:
            raise InvalidSettingError(f"setting fp_tol={self.fp_tol:g} must be in (0, 1)")
        if not 0.0 < self.fp_tangent_tol < 1.0:
            raise InvalidSettingError(f"setting fp_tangent_tol={self.fp_tangent_tol:g} must be in (0, 1)")
        if not 0.0 < self.fp_damping <= 1.0:
            raise InvalidSettingError(f"setting fp_damping={self.fp_damping:g} must be in (0, 1]")

    @property
    def dtype(self) -> jnp.dtype:
        """The floating dtype of every computation."""
        return jnp.dtype(self.precision)

    @property
    def tol(self) -> float:
        """The fixed-point tolerance actually used (``fp_tol``, floored in float32)."""
        return max(self.fp_tol, FLOAT32_TOL_FLOOR) if self.precision == "float32" else self.fp_tol

    @property
    def tangent_tol(self) -> float:
        """The relative tolerance of matrix-free derivative solves (``fp_tangent_tol``, at least ``tol``)."""
        return max(self.fp_tangent_tol, self.tol)

    @property
    def n_aggregates(self) -> int:
        """3 O + F: the aggregates the education fixed point lives in (``jaxmodel.education``)."""
        return 3 * self.n_occupations + self.n_firms

    @property
    def agents_per_firm(self) -> int:
        """N/F."""
        return self.n_agents // self.n_firms

    @property
    def agents_per_occupation(self) -> int:
        """N/O."""
        return self.n_agents // self.n_occupations

    def replace(self, **changes) -> Settings:
        """A validated copy with some settings changed."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            allowed = ", ".join(f.name for f in dataclasses.fields(self))
            raise InvalidSettingError(f"unknown setting(s) {', '.join(unknown)}; known: {allowed}")
        return dataclasses.replace(self, **changes)
