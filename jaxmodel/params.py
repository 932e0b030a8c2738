"""Parameters of the model (MODEL.md section 3): a differentiable pytree of floats.

``Params`` holds one float per row of the MODEL.md parameter table, under the code names of that
table. It is a frozen dataclass registered as a JAX pytree, so it can be passed through ``jit``,
``grad``, ``jacfwd``/``jacrev`` and ``vmap``. Every parameter has a domain (:data:`DOMAINS`);
:func:`validate_params` checks concrete values against it and names the parameter, its value and
the domain when one is outside. Values that are tracers (inside a transformation) are not checked.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxmodel.errors import InvalidParameterError


@dataclasses.dataclass(frozen=True)
class Domain:
    """An interval of the real line, optionally open at either end and with one excluded point.

    ``Domain(0.0, None, lo_open=True)`` is (0, inf); ``Domain(None, None, exclude=0.0)`` is the real
    line without 0. The bounds also give the default bounds of an estimation.
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    exclude: float | None = None

    def contains(self, x: float) -> bool:
        """Whether the finite float ``x`` lies in the domain."""
        if not math.isfinite(x):
            return False
        if self.lo is not None and (x < self.lo or (self.lo_open and x == self.lo)):
            return False
        if self.hi is not None and (x > self.hi or (self.hi_open and x == self.hi)):
            return False
        return not (self.exclude is not None and x == self.exclude)

    def __str__(self) -> str:
        if self.lo is None and self.hi is None:
            text = "any real number"
        else:
            left = "(-inf" if self.lo is None else ("(" if self.lo_open else "[") + f"{self.lo:g}"
            right = "inf)" if self.hi is None else f"{self.hi:g}" + (")" if self.hi_open else "]")
            text = f"{left}, {right}"
        if self.exclude is not None:
            text += f" except {self.exclude:g}"
        return text


_POSITIVE = Domain(0.0, None, lo_open=True)
_NONNEGATIVE = Domain(0.0, None)
_UNIT = Domain(0.0, 1.0)
_REAL = Domain()

#: The domain of every parameter (MODEL.md section 3), in table order.
DOMAINS: dict[str, Domain] = {
    "sigma": _POSITIVE,
    "lam": _REAL,
    "A1": _NONNEGATIVE,
    "alpha": _NONNEGATIVE,
    "z_lo": _UNIT,
    "z_hi": _UNIT,
    "w_a": _POSITIVE,
    "sigma_nu": _NONNEGATIVE,
    "mu": _NONNEGATIVE,
    "rho": Domain(exclude=0.0),
    "omega": _UNIT,
    "sigma_theta": _POSITIVE,
    "gamma": Domain(-1.0, None, lo_open=True),
    "c_bar": _REAL,
    "zeta": _REAL,
    "sigma_c": _NONNEGATIVE,
    "tau": _POSITIVE,
    "sigma_eps": _NONNEGATIVE,
    "gini_K": Domain(0.0, 1.0, hi_open=True),
    "r_K": _NONNEGATIVE,
    "eta0": _NONNEGATIVE,
    "eta1": _NONNEGATIVE,
    "psi": _NONNEGATIVE,
    "xi": _UNIT,
    "owner_share": Domain(0.0, 1.0, lo_open=True, hi_open=True),
    "rho_occ": _UNIT,
    "b_occ": _POSITIVE,
    "rho_firm": _UNIT,
}

#: One line per parameter: what it means (MODEL.md section 3).
DESCRIPTIONS: dict[str, str] = {
    "sigma": "elasticity of substitution across tasks (1 = Cobb-Douglas limit)",
    "lam": "slope of human comparative advantage phi(z) = exp(lam z)",
    "A1": "AI capability after adoption",
    "alpha": "AI floor scale (share of an average worker's task output)",
    "z_lo": "lower edge of the band of AI-augmentable tasks",
    "z_hi": "upper edge of the band of AI-augmentable tasks",
    "w_a": "width of the logistic edges of the AI-augmentable band",
    "sigma_nu": "dispersion of the AI contribution, independent of ability",
    "mu": "amplification exponent (spec 'partial_multiplicative')",
    "rho": "power-mean exponent (spec 'ces'; complementary when rho < 0)",
    "omega": "weight of human capital in the power mean (spec 'ces')",
    "sigma_theta": "dispersion of log ability",
    "gamma": "human-capital gain from college, g(1) = 1 + gamma",
    "c_bar": "mean education cost",
    "zeta": "fall of the education cost with log ability",
    "sigma_c": "dispersion of the education cost",
    "tau": "logit smoothing of the college choice",
    "sigma_eps": "noise of the employer's work-sample signal",
    "gini_K": "Gini of complementary assets across firms",
    "r_K": "return to complementary assets",
    "eta0": "commodity AI access (same at every firm)",
    "eta1": "proprietary AI access (scales with the firm's assets)",
    "psi": "asset intensity of proprietary AI",
    "xi": "rent sharing: share of firm rents paid to its workers",
    "owner_share": "owners' share of the population (pi_o)",
    "rho_occ": "ability sorting into occupations",
    "b_occ": "width of an occupation's task bundle",
    "rho_firm": "ability sorting into asset-rich firms",
}

#: The baseline calibration of MODEL.md section 3.
BASELINE: dict[str, float] = {
    "sigma": 1.5,
    "lam": 1.0,
    "A1": 1.0,
    "alpha": 0.6,
    "z_lo": 0.4,
    "z_hi": 0.85,
    "w_a": 0.05,
    "sigma_nu": 0.5,
    "mu": 0.0,
    "rho": -1.0,
    "omega": 0.5,
    "sigma_theta": 0.7,
    "gamma": 0.4,
    "c_bar": 0.6,
    "zeta": 0.3,
    "sigma_c": 0.1,
    "tau": 0.05,
    "sigma_eps": 0.5,
    "gini_K": 0.6,
    "r_K": 0.6,
    "eta0": 0.5,
    "eta1": 0.5,
    "psi": 0.5,
    "xi": 0.15,
    "owner_share": 0.05,
    "rho_occ": 0.7,
    "b_occ": 0.1,
    "rho_firm": 0.5,
}

PARAM_NAMES: tuple[str, ...] = tuple(BASELINE)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Params:
    """The model's parameters: one scalar per MODEL.md table row, a pytree of floats.

    Build it with :func:`baseline` and change it with :meth:`replace`, which validates. Leaves are
    Python floats or 0-d arrays (tracers inside ``jit``/``grad``).
    """

    sigma: Any
    lam: Any
    A1: Any
    alpha: Any
    z_lo: Any
    z_hi: Any
    w_a: Any
    sigma_nu: Any
    mu: Any
    rho: Any
    omega: Any
    sigma_theta: Any
    gamma: Any
    c_bar: Any
    zeta: Any
    sigma_c: Any
    tau: Any
    sigma_eps: Any
    gini_K: Any
    r_K: Any
    eta0: Any
    eta1: Any
    psi: Any
    xi: Any
    owner_share: Any
    rho_occ: Any
    b_occ: Any
    rho_firm: Any

    def replace(self, **changes: Any) -> Params:
        """A copy with some parameters changed, validated (unknown names are refused).

        Raises:
            InvalidParameterError: a name is unknown or a concrete value is outside its domain.
        """
        unknown = sorted(set(changes) - set(PARAM_NAMES))
        if unknown:
            raise InvalidParameterError(
                f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(PARAM_NAMES)}"
            )
        new = dataclasses.replace(self, **changes)
        validate_params(new)
        return new

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a plain ``{name: value}`` dict in table order."""
        return {name: getattr(self, name) for name in PARAM_NAMES}


def baseline() -> Params:
    """The MODEL.md section 3 baseline calibration (every value inside its domain)."""
    params = Params(**BASELINE)
    validate_params(params)
    return params


def params_from_dict(values: Mapping[str, Any], base: Params | None = None) -> Params:
    """``base`` (default: the baseline) with the entries of ``values`` replaced, validated."""
    return (base if base is not None else baseline()).replace(**dict(values))


def _concrete_float(name: str, value: Any) -> float | None:
    """The float value of a concrete scalar leaf, ``None`` for a tracer; refuses non-scalars."""
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        array = np.asarray(value)
    except Exception as exc:  # pragma: no cover - defensive: exotic objects
        raise InvalidParameterError(f"parameter {name}={value!r} is not a number") from exc
    if array.ndim != 0 or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InvalidParameterError(
            f"parameter {name}={value!r} must be one real number (domain {DOMAINS[name]})"
        )
    return float(array)


def validate_params(params: Params) -> None:
    """Check every concrete parameter against :data:`DOMAINS` and z_lo < z_hi.

    Raises:
        InvalidParameterError: naming the parameter, its value and its domain.
    """
    if not isinstance(params, Params):
        raise InvalidParameterError(f"expected a jaxmodel.Params, got {type(params).__name__}")
    values = {}
    for name in PARAM_NAMES:
        value = _concrete_float(name, getattr(params, name))
        if value is None:
            continue
        if not DOMAINS[name].contains(value):
            raise InvalidParameterError(
                f"parameter {name}={value:g} is outside its domain {DOMAINS[name]} "
                f"({DESCRIPTIONS[name]})"
            )
        values[name] = value
    if "z_lo" in values and "z_hi" in values and not values["z_lo"] < values["z_hi"]:
        raise InvalidParameterError(
            f"parameters z_lo={values['z_lo']:g} and z_hi={values['z_hi']:g} must satisfy "
            "0 <= z_lo < z_hi <= 1 (the AI-augmentable band)"
        )
