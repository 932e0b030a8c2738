"""levelfield's estimation layer: MSM, inference, sensitivity, regimes, data and the CLI.

The Python API mirrors ``levelfield calibrate``: ``calibrate(...) -> Result``, with the small pure
inference functions of (G, W, Omega) in :mod:`estimation.inference`.
"""

from estimation.calibration import CalibrationConfig, Result, calibrate
from estimation.errors import ConfigError, EstimationError, OutputError, TargetsError
from estimation.targets import Targets, load_targets

__all__ = [
    "CalibrationConfig",
    "ConfigError",
    "EstimationError",
    "OutputError",
    "Result",
    "Targets",
    "TargetsError",
    "calibrate",
    "load_targets",
]
