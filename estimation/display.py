"""Terminal output: tables and progress with rich (stderr for progress, stdout for results)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)
progress_console = Console(stderr=True, highlight=False)

#: MODEL.md symbol and a short meaning of each moment.
MOMENT_LABELS: dict[str, tuple[str, str]] = {
    "cv_change": ("m1", "within-task CV change (exposure-weighted)"),
    "productivity_gain": ("m2", "within-task mean output gain"),
    "college_premium_change": ("m3", "change in the college log-wage premium"),
    "credential_reliance_change": ("m4", "change in credential reliance R"),
    "between_firm_share_change": ("m5", "change in between-firm share of log-income variance"),
    "gini_change": ("m6", "change in the Gini over all persons (Delta Gini)"),
}

DIAGNOSTIC_LABELS: dict[str, str] = {
    "gini": "Gini of income, all persons",
    "college_share": "college share (mean P)",
    "between_firm_share": "between-firm share of log-income variance",
    "capital_share": "owners' share of income",
    "diagnostic_variance": "diagnostic variance V_D",
    "college_premium": "college log-wage premium",
    "credential_reliance": "credential reliance R",
    "fp_residual": "fixed-point residual max|P_new - P|",
    "fp_iterations": "fixed-point iterations",
}


@contextlib.contextmanager
def status(message: str, quiet: bool = False) -> Iterator[None]:
    """A spinner on stderr while a block runs (nothing when ``quiet``)."""
    if quiet:
        yield
        return
    with progress_console.status(message):
        yield


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
        return f"{value:.3e}"
    return f"{value:.4f}"


def moments_report(values: dict, settings, seed: int, changed: dict, seconds: float) -> None:
    """Print the six moments, the diagnostics of both states and the regime."""
    header = (
        f"N={settings.n_agents:_} F={settings.n_firms} T={settings.n_tasks} O={settings.n_occupations} "
        f"spec={settings.spec} precision={settings.precision} seed={seed}"
    )
    if changed:
        header += " | changed: " + ", ".join(f"{k}={v:g}" for k, v in changed.items())
    table = Table(title="Moments (after AI minus before)", caption=header)
    table.add_column("", style="bold")
    table.add_column("moment")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    for name, (symbol, meaning) in MOMENT_LABELS.items():
        table.add_row(symbol, name, _fmt(values[name]), meaning)
    console.print(table)

    diag = Table(title="Diagnostics")
    diag.add_column("diagnostic")
    diag.add_column("before AI", justify="right")
    diag.add_column("after AI", justify="right")
    diag.add_column("meaning")
    for name, meaning in DIAGNOSTIC_LABELS.items():
        diag.add_row(name, _fmt(values[f"{name}_before"]), _fmt(values[f"{name}_after"]), meaning)
    console.print(diag)
    regime = values["regime"]
    colour = "red" if regime == "concentrating" else "green"
    console.print(
        f"Regime: [bold {colour}]{regime}[/] (Delta Gini = {values['gini_change']:+.5f}); "
        f"solved in {seconds:.2f} s including compilation."
    )
