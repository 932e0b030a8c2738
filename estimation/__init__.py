"""levelfield's estimation layer, by concern.

- ``estimation.msm``: the method of simulated moments (targets, free parameters, the optimiser,
  ``calibrate`` and its typed ``Result``);
- ``estimation.inference``: the pure inference functions of (G, W, Omega);
- ``estimation.regimes``: the boundary Delta Gini = 0, regime maps and policy scenarios;
- ``estimation.empirics``: BLS OEWS data, AI-exposure measures, occupation regressions, panel power;
- ``estimation.output``: results folders, figures, terminal tables, LaTeX and the HTML report;
- ``estimation.cli``: the ``levelfield`` command line.

The Python API mirrors ``levelfield calibrate``: ``calibrate(...) -> Result``.
"""

from estimation.errors import (
    ConfigError,
    DataError,
    EstimationError,
    LevelfieldError,
    NumericalError,
    OutputError,
    TargetsError,
)
from estimation.msm import CalibrationConfig, Result, Targets, calibrate, load_targets

__all__ = [
    "CalibrationConfig",
    "ConfigError",
    "DataError",
    "EstimationError",
    "LevelfieldError",
    "NumericalError",
    "OutputError",
    "Result",
    "Targets",
    "TargetsError",
    "calibrate",
    "load_targets",
]
