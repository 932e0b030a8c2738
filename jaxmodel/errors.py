"""The model layer's errors: one base type, a few precise subclasses, and the root of every error.

Every message names the offending value and what is allowed, so that the CLI can print it on one
line and exit with code 2. :class:`LevelfieldError` is the root of every error levelfield raises,
here and in :mod:`estimation` (which depends on this package, not the reverse): ``except
LevelfieldError`` catches them all.
"""

from __future__ import annotations


class LevelfieldError(Exception):
    """Root of every error raised by levelfield (:mod:`jaxmodel` and :mod:`estimation`)."""


class ModelError(LevelfieldError, ValueError):
    """Base of every error raised by :mod:`jaxmodel` for bad input."""


class InvalidParameterError(ModelError):
    """A parameter is unknown, not a finite number, or outside its domain."""


class InvalidSettingError(ModelError):
    """A static setting (sizes, spec, tolerances, precision) is not allowed."""


class InvalidDrawsError(ModelError):
    """A set of draws does not match the settings it is used with."""
