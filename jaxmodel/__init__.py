"""levelfield's model core: the model of MODEL.md as pure, jit-compiled JAX functions.

Importing this package turns on float64 in JAX (``jax_enable_x64``): the model's default precision
is float64 on every device; ``Settings(precision="float32")`` selects float32 for GPU throughput.
"""

import jax

jax.config.update("jax_enable_x64", True)

from jaxmodel.draws import Draws, make_draws  # noqa: E402
from jaxmodel.errors import (  # noqa: E402
    InvalidDrawsError,
    InvalidParameterError,
    InvalidSettingError,
    ModelError,
)
from jaxmodel.inequality import between_group_share, weighted_gini  # noqa: E402
from jaxmodel.outcomes import MOMENT_NAMES, STATE_DIAGNOSTICS, Moments, State, assign, moments, solve  # noqa: E402
from jaxmodel.workers import Assignment  # noqa: E402
from jaxmodel.params import BASELINE, DESCRIPTIONS, DOMAINS, PARAM_NAMES, Domain, Params, baseline  # noqa: E402
from jaxmodel.settings import PRECISIONS, SPECS, Settings  # noqa: E402

__all__ = [
    "Assignment",
    "BASELINE",
    "DESCRIPTIONS",
    "DOMAINS",
    "Domain",
    "Draws",
    "InvalidDrawsError",
    "InvalidParameterError",
    "InvalidSettingError",
    "MOMENT_NAMES",
    "ModelError",
    "Moments",
    "PARAM_NAMES",
    "PRECISIONS",
    "Params",
    "SPECS",
    "STATE_DIAGNOSTICS",
    "Settings",
    "State",
    "assign",
    "baseline",
    "between_group_share",
    "make_draws",
    "moments",
    "solve",
    "weighted_gini",
]
