"""Numbers of the results files for display: a file's value as a float, rounded to significant digits.

Shared by the LaTeX tables (``estimation.output.latex``) and the HTML page
(``estimation.output.html_tables``), so both print the same digits.
"""

from __future__ import annotations

import math


def as_float(value) -> float:
    """A number from a CSV cell or report.json value: None, '' and 'nan' are NaN; 'inf' is inf."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def significant(x, digits: int = 4) -> tuple[str, int | None]:
    """``x`` to ``digits`` significant digits: (mantissa, exponent), exponent None in fixed notation.

    Fixed notation for 1e-4 <= |x| < 1e5 (``0.0009316``, ``254.8``, ``13320``), scientific otherwise
    (``("9.316", -5)``); zero is ``("0", None)``. NaN and inf are the caller's to handle.
    """
    x = float(x)
    if x == 0:
        return "0", None
    mag = math.floor(math.log10(abs(x)))
    if -4 <= mag < 5:
        decimals = max(0, digits - 1 - mag)
        text = f"{x:.{decimals}f}"
        # Rounding can carry into a new digit (9.9996 -> 10.000): drop the extra decimal.
        if decimals > 0 and len(text.lstrip("-").replace(".", "").lstrip("0")) > digits:
            text = f"{x:.{decimals - 1}f}"
        return text, None
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return mantissa, int(exponent)
