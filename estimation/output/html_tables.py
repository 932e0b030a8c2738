"""The tables of report.html: pandas Stylers with readable numbers, ready for the page's template.

Numbers have four significant digits (``0.1123``, ``9.316e-05``), errors in SEs and scaled
sensitivities two decimals, missing values an em dash; each ``<table>`` has the id ``T_<name>``.
The formatters are also the template's filters (``estimation.output.html``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable

import pandas as pd
from markupsafe import Markup

from estimation.output.numbers import as_float, significant

DASH = "\u2014"


def fmt(x, digits: int = 4) -> str:
    """A number for an HTML table: four significant digits (``0.1123``, ``9.316e-05``), NaN as a dash."""
    x = as_float(x)
    if math.isnan(x):
        return DASH
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    mantissa, exponent = significant(x, digits)
    return mantissa if exponent is None else f"{mantissa}e{exponent:+03d}"


def fmt_fixed(decimals: int, signed: bool = True) -> Callable[[object], str]:
    """A formatter with ``decimals`` decimals (and a + on positive numbers when ``signed``)."""

    def formatter(x) -> str:
        x = as_float(x)
        if math.isnan(x):
            return DASH
        if round(x, decimals) == 0:
            return f"{0:.{decimals}f}"
        return f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"

    return formatter


def fmt_int(x) -> str:
    """A count with thousands separators, NaN as a dash."""
    x = as_float(x)
    return DASH if math.isnan(x) else f"{int(round(x)):,}"


def fmt_bound(x) -> str:
    """A bound of the search box: ``0.5``, ``∞``."""
    x = as_float(x)
    return DASH if math.isnan(x) else ("∞" if x == math.inf else ("-∞" if x == -math.inf else f"{x:g}"))


def fmt_p_value(x) -> str:
    """A p-value with three decimals, ``< 0.001`` below that."""
    x = as_float(x)
    if math.isnan(x):
        return DASH
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def fmt_share(x) -> str:
    """A share as a whole percentage."""
    return DASH if math.isnan(as_float(x)) else f"{100 * as_float(x):.0f}%"


def _text_classes(frame: pd.DataFrame, text_cols: list, small: tuple, nowrap: tuple) -> pd.DataFrame:
    classes = [(("text small" if c in small else "text") if c in text_cols else "")
               + (" nowrap" if c in nowrap else "") for c in frame.columns]
    return pd.DataFrame([classes] * len(frame), index=frame.index, columns=frame.columns)


def table(frame: pd.DataFrame, name: str, formats: dict | None = None, caption: str | None = None,
          text: tuple = (), small: tuple = (), nowrap: tuple = (), style: Callable | None = None) -> Markup:
    """One table as HTML: a pandas Styler with id ``T_<name>``, no index, text columns escaped.

    ``formats`` maps columns to formatters (default :func:`fmt` for numeric columns); ``text`` and
    ``small`` name left-aligned and small-print columns, ``nowrap`` columns whose cells never wrap;
    ``style`` may restyle the Styler.
    """
    frame = frame.reset_index(drop=True)
    formats = dict(formats or {})
    for col in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col])
        if col not in formats and numeric:
            formats[col] = fmt
    text_cols = [c for c in frame.columns if c in text or c in small or (
        c not in formats and not pd.api.types.is_numeric_dtype(frame[c]))]
    styler = frame.style.hide(axis="index").set_uuid(name).set_table_attributes('class="data"')
    styler = styler.format(formats, escape="html", na_rep=DASH).format_index(escape="html", axis=1)
    if text_cols and len(frame):
        styler = styler.set_td_classes(_text_classes(frame, text_cols, small, nowrap))
    if text_cols:
        styler = styler.set_table_styles(
            [{"selector": f"th.col_heading.col{list(frame.columns).index(c)}", "props": "text-align: left"}
             for c in text_cols], overwrite=False)
    if caption:
        styler = styler.set_caption(html.escape(str(caption), quote=True))
    if style is not None:
        styler = style(styler)
    return Markup(f'<div class="scroll">{styler.to_html(cell_ids=False)}</div>')


def gradient(columns, limit: float = 1.0) -> Callable:
    """Blue-white-red background over ``columns``, symmetric at +-``limit``."""

    import matplotlib

    # Missing values (a parameter without an SE) on a light grey, not the colormap's black.
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#f1f3f5")

    def style(styler):
        return styler.background_gradient(cmap=cmap, vmin=-limit, vmax=limit, subset=list(columns))

    return style


def flag_beyond_two(column: str) -> Callable:
    """Red bold text where ``|value| > 2`` in ``column`` (errors in SEs)."""

    def style(styler):
        return styler.map(lambda v: "color: #b00020; font-weight: 600" if abs(as_float(v)) > 2 else "",
                          subset=[column])

    return style
