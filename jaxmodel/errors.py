"""The model layer's errors: one base type, a few precise subclasses.

Every message names the offending value and what is allowed, so that the CLI can print it on one
line and exit with code 2.
"""

from __future__ import annotations


class ModelError(ValueError):
    """Base of every error raised by :mod:`jaxmodel` for bad input."""


class InvalidParameterError(ModelError):
    """A parameter is unknown, not a finite number, or outside its domain."""


class InvalidSettingError(ModelError):
    """A static setting (sizes, spec, tolerances, precision) is not allowed."""


class InvalidDrawsError(ModelError):
    """A set of draws does not match the settings it is used with."""
