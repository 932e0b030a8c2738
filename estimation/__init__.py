"""levelfield's estimation layer: MSM, inference, sensitivity, regimes, data and the CLI."""

from estimation.errors import ConfigError, EstimationError

__all__ = ["ConfigError", "EstimationError"]
