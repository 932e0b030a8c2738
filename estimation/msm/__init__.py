"""The method of simulated moments: targets, free parameters, the optimiser, the calibration.

``calibrate`` (``estimation.msm.calibrate``) runs the named stages; ``Result`` and its typed parts
are in ``estimation.msm.result``; the configuration in ``estimation.msm.config``.
"""

from estimation.msm.calibrate import calibrate, reestimate
from estimation.msm.config import CalibrationConfig, load_weight_matrix
from estimation.msm.noise import simulated_moments, simulation_noise
from estimation.msm.optimiser import OPTIMISERS, Problem, Status, Tolerances, evaluate
from estimation.msm.result import (
    Decomposition,
    FixedPoint,
    FlipCheck,
    Identification,
    JTest,
    Result,
    SecondStep,
    estimated_params,
    load_report,
)
from estimation.msm.targets import Targets, load_targets

__all__ = [
    "CalibrationConfig",
    "Decomposition",
    "FixedPoint",
    "FlipCheck",
    "Identification",
    "JTest",
    "OPTIMISERS",
    "Problem",
    "Result",
    "SecondStep",
    "Status",
    "Targets",
    "Tolerances",
    "calibrate",
    "estimated_params",
    "evaluate",
    "load_report",
    "load_targets",
    "load_weight_matrix",
    "reestimate",
    "simulated_moments",
    "simulation_noise",
]
