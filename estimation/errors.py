"""The estimation layer's errors: one base type, a few precise subclasses.

Messages name what is wrong and what is allowed; the CLI prints them on one line, exit code 2.
Every one derives from :class:`jaxmodel.errors.LevelfieldError`, the root of levelfield's errors
(re-exported here and by :mod:`estimation`).
"""

from __future__ import annotations

from jaxmodel.errors import LevelfieldError

__all__ = ["ConfigError", "DataError", "EstimationError", "LevelfieldError", "NumericalError", "OutputError",
           "TargetsError"]


class EstimationError(LevelfieldError, ValueError):
    """Base of every error raised by :mod:`estimation` for bad input."""


class ConfigError(EstimationError):
    """A command-line option, parameter assignment or configuration value is not allowed."""


class TargetsError(EstimationError):
    """A targets file is missing, unreadable or malformed."""


class OutputError(EstimationError):
    """A results folder exists, is incomplete, or cannot be written."""


class DataError(EstimationError):
    """A data file (OEWS, exposure measure, crosswalk) is missing, unreadable or malformed."""


class NumericalError(EstimationError):
    """The model is not finite (or its fixed point does not converge) where the estimation must go."""
