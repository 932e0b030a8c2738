"""levelfield's model core: the model of MODEL.md as pure, jit-compiled JAX functions.

Importing this package turns on float64 in JAX (``jax_enable_x64``) for the whole process, not only
for levelfield: the model's default precision is float64 on every device, and any other JAX code
in the process then defaults to 64-bit types too. ``Settings(precision="float32")`` selects float32
for GPU throughput. To keep JAX's 32-bit default, opt out after the import with the one line
``jax.config.update("jax_enable_x64", False)`` and use ``Settings(precision="float32")`` (JAX
truncates the float64 settings to float32 then, with a warning).

Importing it also appends the XLA options of :mod:`jaxmodel.compilation` to ``XLA_FLAGS`` (on a
jaxlib known to have them; ``LEVELFIELD_XLA_OPTIONS=off`` leaves ``XLA_FLAGS`` alone): XLA:CPU's
YNNPACK library fusions off, which makes the model's programs faster on the CPU. Like x64, this holds
for the whole process, from the start of its first JAX backend.
"""

from jaxmodel import compilation

compilation.apply()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from jaxmodel.draws import Draws, make_draws  # noqa: E402
from jaxmodel.errors import (  # noqa: E402
    InvalidDrawsError,
    InvalidParameterError,
    InvalidSettingError,
    LevelfieldError,
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
    "LevelfieldError",
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
