"""What the commands print on the terminal, with rich (results on stdout, progress on stderr)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from estimation.output.view import Calibration

console = Console(highlight=False)
progress_console = Console(stderr=True, highlight=False)

#: MODEL.md symbol and a short meaning of each moment.
MOMENT_LABELS: dict[str, tuple[str, str]] = {
    "cv_change": ("m1", "within-task CV change within firms (exposure-weighted)"),
    "productivity_gain": ("m2", "within-task mean output gain"),
    "college_premium_change": ("m3", "change in the college log-wage premium"),
    "credential_reliance_change": ("m4", "change in credential reliance R"),
    "between_firm_share_change": ("m5", "change in between-firm share of log-income variance"),
    "gini_change": ("m6", "change in the Gini over all persons (Delta Gini)"),
}

DIAGNOSTIC_LABELS: dict[str, str] = {
    "cv_within_firms": "within-task CV within firms (exposure-weighted; m1 compares these)",
    "cv_all_workers": "within-task CV over all workers (exposure-weighted)",
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


def _convergence_table(view: Calibration) -> None:
    conv = view.convergence
    table = Table(title="Convergence by starting point")
    for col in ("start", "criterion", "max|grad|", "iterations", "method", "status"):
        table.add_column(col, justify="right" if col in ("criterion", "max|grad|", "iterations") else "left")
    for i, s in enumerate(conv.starts):
        mark = " (best)" if i == conv.best_start else ""
        status = s.status
        if s.at_search_box:
            status += f"; stopped at the search box ({', '.join(s.at_search_box)})"
        table.add_row(f"{i}{mark}", _fmt(s.criterion), f"{s.grad_norm:.1e}", str(s.iterations), s.method, status)
    console.print(table)


def _estimates_table(view: Calibration) -> None:
    table = Table(title="Estimates (sandwich SEs with simulation noise; 95% intervals inside the bounds)")
    for col in ("parameter", "estimate", "se", "95% interval", "interval from", "search box", "at bound"):
        table.add_column(col, justify="right" if col in ("estimate", "se") else "left")
    for e in view.estimates:
        bound = f"[{e.lower_bound:g}, {e.upper_bound:g}]"
        ci = f"[{_fmt(e.ci_lower)}, {_fmt(e.ci_upper)}]"
        at = f"[bold yellow]{e.at_bound}[/]" if e.at_bound else ""
        se = "-" if e.se_note else _fmt(e.se)
        table.add_row(e.parameter, _fmt(e.estimate), se, ci, e.interval.split(" (")[0].replace(" delta method", ""),
                      bound, at)
    console.print(table)
    for e in view.estimates:
        if e.se_note:
            console.print(f"[yellow]{e.parameter}: {e.se_note}.[/]")
    console.print("SEs are on the parameters' natural scale; intervals come from the delta method on the "
                  "optimiser's unconstrained scale (logit or log of the distance to the bounds), so they stay "
                  "inside the search box.")


def _fit_table(view: Calibration) -> None:
    over = f" over the {len(view.moments) - len(view.untargeted)} targeted moments" if view.untargeted else ""
    table = Table(title=f"Fit of the targets (criterion g'Wg{over} = {view.criterion:.4f})")
    for col in ("", "moment", "target", "se", "model", "error / se"):
        table.add_column(col, justify="left" if col in ("", "moment") else "right")
    for m in view.moments:
        error = f"{m.error_in_se:+.2f}" if m.targeted else "[yellow]not targeted[/]"
        table.add_row(m.symbol, m.moment, _fmt(m.target), _fmt(m.se), _fmt(m.model), error)
    console.print(table)


def _j_test_line(view: Calibration) -> None:
    j = view.j_test
    p = "n/a (exactly identified)" if math.isnan(j.p_value) else f"{j.p_value:.3f}"
    console.print(f"Hansen J = {j.J:.3f} with {j.df} degree(s) of freedom, p-value {p} ({j.description}).")


def _identification_lines(view: Calibration) -> None:
    ident = view.identification
    if ident.reason:
        console.print(f"[bold red]No inference: {ident.reason}.[/]")
        return
    cond = "inf" if ident.condition_number == math.inf else f"{ident.condition_number:.3g}"
    sv = ", ".join(f"{x:.3g}" for x in ident.singular_values)
    colour = "green" if ident.identified else "bold red"
    console.print(f"Identification: rank [{colour}]{ident.rank} of {ident.n_params}[/], singular values of "
                  f"W^1/2 G: {sv}; condition number {cond}.")
    for weak in ident.weak_directions:
        console.print(f"  weakly identified direction (singular value {weak.singular_value:.2e}): {weak.text}")
    if not ident.identified:
        console.print("[bold red]The free parameters are not locally identified by these moments: the estimates "
                      "are one point of a set; standard errors, sensitivity and the decomposition are not "
                      "reported.[/]")


def _identified(view: Calibration) -> bool:
    ident = view.identification
    return ident is not None and not ident.reason and ident.identified


def _sensitivity_table(view: Calibration) -> None:
    if not _identified(view) or view.sensitivity is None:
        return
    sens = view.sensitivity
    table = Table(title="Sensitivity Lambda = -(G'WG)^-1 G'W, in parameter SEs per target SE")
    table.add_column("parameter")
    for i, moment in enumerate(sens.moments):
        table.add_column(f"m{i + 1}" + (" (not targeted)" if moment in sens.untargeted else ""), justify="right")
    off = [m in sens.untargeted for m in sens.moments]
    for name, row in zip(sens.parameters, sens.scaled):
        table.add_row(name, *["-" if o else f"{v:+.2f}" for v, o in zip(row, off)])
    console.print(table)


def _delta_gini_tables(view: Calibration) -> None:
    dec = view.decomposition
    if not _identified(view) or dec is None:
        return
    gini = Table(title=f"Delta Gini at the estimate = {dec.delta_gini:+.5f} ({dec.regime}): what moves it")
    for col in ("target", "effect of +1 se", "share", "se to flip sign"):
        gini.add_column(col, justify="left" if col == "target" else "right")
    for t in dec.targets:
        flip = "never (first order)" if not math.isfinite(t.se_to_flip_sign) else f"{t.se_to_flip_sign:+.2f}"
        flip = flip if t.targeted else "not targeted"
        gini.add_row(t.moment, f"{t.effect_of_one_se:+.5f}", f"{100 * t.share_of_total_effect:.0f}%", flip)
    console.print(gini)
    if view.regime_uncertainty is not None:
        console.print(view.regime_uncertainty.text + ".")
    params = Table(title="Delta Gini by parameter")
    for col in ("parameter", "dDeltaGini/dtheta", "effect of +1 se"):
        params.add_column(col, justify="left" if col == "parameter" else "right")
    for p in dec.parameters:
        params.add_row(p.parameter, f"{p.d_delta_gini_d_parameter:+.4f}", f"{p.effect_of_one_se:+.5f}")
    console.print(params)
    for f in view.flip_checks:
        verdict = "flips" if f.sign_flipped else "does not flip"
        console.print(
            f"Check by re-estimation: moving {f.moment} by {f.se_moved:+.2f} se gives Delta Gini "
            f"{f.delta_gini_after_reestimation:+.2e} (was {f.delta_gini_before:+.2e}; sign {verdict}); "
            f"secant estimate of the move that flips it: {f.se_to_flip_sign_secant:+.2f} se."
        )


#: The terminal's rendering of each section of ``estimation.output.sections`` it shows (the summary and
#: the configuration are the page's only).
_CALIBRATION_SECTIONS = {"estimates": _estimates_table, "fit": _fit_table, "j_test": _j_test_line,
                         "identification": _identification_lines, "sensitivity": _sensitivity_table,
                         "delta_gini": _delta_gini_tables, "convergence": _convergence_table}


def calibration_report(result) -> None:
    """Print the tables of a calibration, section by section in the order of report.html: estimates,
    fit, J, identification, sensitivity, Delta Gini, convergence (``result``: a ``Result``, or the view
    of a results folder, ``estimation.output.view.Calibration``)."""
    from estimation.output import sections
    from estimation.output.view import Calibration, calibration_view

    view = result if isinstance(result, Calibration) else calibration_view(result)
    for section in sections.calibration_sections(view):
        show = _CALIBRATION_SECTIONS.get(section.id)
        if show is not None:
            show(view)


class CalibrationProgress:
    """A progress bar for the optimiser (iterations of the batch) plus step messages, on stderr."""

    def __init__(self, max_iter: int, quiet: bool = False):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.quiet = quiet
        self.max_iter = max_iter
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), console=progress_console, transient=False,
        )
        self.tasks: dict = {}

    def __enter__(self):
        self.started = False
        return self

    def __exit__(self, *exc):
        if self.started:
            self.progress.stop()

    def __call__(self, event: str, payload) -> None:
        if self.quiet:
            return
        if not self.started:  # started by the first event: input errors come before any bar
            self.progress.start()
            self.started = True
        if event == "step":
            self.progress.console.print(f"[dim]{payload}[/]")
            return
        import numpy as np

        if event not in self.tasks:
            label = "optimising" if event == "stage1" else "two-step"
            self.tasks[event] = self.progress.add_task(label, total=self.max_iter, info="")
        best = min(h[-1] for h in payload.history)
        active = int((~np.asarray(payload.done)).sum())
        self.progress.update(self.tasks[event], completed=payload.iteration,
                             info=f"best g'Wg {best:.4f}, {active} start(s) active")


def boundary_tables(boundaries) -> None:
    """One table per technology structure: Gini(K)* by xi, its slope, and which side concentrates."""
    from estimation.regimes import Crossing

    for b in boundaries:
        table = Table(title=f"Boundary Delta Gini = 0, {b.structure} AI (eta0={b.eta0:g}, eta1={b.eta1:g}); "
                            "slope = dGini(K)*/dxi by the implicit function theorem")
        for col in ("xi", "Gini(K)*", "|dGini|", "slope", "concentrating when"):
            table.add_column(col, justify="left" if col == "concentrating when" else "right")
        for i, r in enumerate(b.records()):
            if b.status[i] is Crossing.CONVERGED:
                side = "Gini(K) > Gini(K)*" if r["concentrating_side"] == "above" else "Gini(K) < Gini(K)*"
                table.add_row(f"{r['xi']:.3f}", f"{r['gini_K']:.4f}", f"{abs(r['delta_gini_residual']):.0e}",
                              f"{r['slope_dginiK_dxi']:+.3f}", side)
            else:
                regime = "always" if b.status[i] is Crossing.ALWAYS_CONCENTRATING else "never"
                table.add_row(f"{r['xi']:.3f}", "-", "-", "-", f"{regime} (no crossing in [0, 0.98])")
        console.print(table)


def scenario_tables(rows: list[dict]) -> None:
    """One table per scenario: every moment and a few diagnostics, base, scenario and change."""
    from jaxmodel import MOMENT_NAMES

    for r in rows:
        table = Table(title=f"{r['scenario']}: {r['meaning']}")
        for col in ("moment", "base", "scenario", "change"):
            table.add_column(col, justify="left" if col == "moment" else "right")
        for key in MOMENT_NAMES + ("gini_before", "gini_after", "capital_share_after", "college_share_after"):
            table.add_row(key, f"{r[key + '_base']:+.5f}", f"{r[key + '_scenario']:+.5f}", f"{r[key + '_change']:+.5f}")
        table.add_row("regime", r["regime_base"], r["regime_scenario"], "")
        console.print(table)


def oews_tables(study, measures: list[str], years: tuple[int, int]) -> None:
    """The files read, the harmonisation, the measures' coverage, the regressions and the model
    demonstration of ``levelfield oews``."""
    from estimation.empirics import occupations

    first_year, second_year = years
    loader = Table(title="OEWS files read")
    for col in ("year", "rows", "detailed kept", "set aside (total/major/minor/broad)", "special cells in detailed rows"):
        loader.add_column(col)
    for rep in (study.first.report, study.second.report):
        aside = "/".join(str(rep["set_aside"][g]) for g in ("total", "major", "minor", "broad"))
        specials = sum(sum(v.values()) for v in rep["special_cells"].values())
        loader.add_row(str(rep["year"]), str(rep["rows"]), str(rep["detailed_kept"]), aside, str(specials))
    console.print(loader)
    grouping = study.grouping
    console.print(
        f"Harmonised occupations: {grouping['occupations']} ({grouping['common_codes']} identical codes, "
        f"{len(grouping['harmonised_groups'])} groups formed from hybrid or split codes; unmatched: "
        f"{len(grouping['unmatched']['first'])} codes of {first_year}, {len(grouping['unmatched']['second'])} "
        f"of {second_year}).")
    cov = Table(title="Coverage of the exposure measures (harmonised occupations, employment share)")
    for col in ("measure", str(first_year), str(second_year)):
        cov.add_column(col, justify="left" if col == "measure" else "right")
    for name in measures:
        rows = study.coverage[study.coverage["measure"] == name]
        cov.add_row(name, *[f"{int(r.occupations)}/{int(r.of)}, {100 * r.employment_share:.1f}%" for r in rows.itertuples()])
    console.print(cov)
    table = study.table
    for fe in sorted(set(table["fixed_effects"])):
        reg = Table(title=f"Employment-weighted regressions on standardised exposure, {first_year}-{second_year}"
                          + (" (major-group fixed effects)" if fe else "") + "; coefficient (HC1 se)")
        reg.add_column("measure")
        for outcome in occupations.OUTCOMES:
            reg.add_column(outcome, justify="right")
        for name in measures:
            part = table[(table["measure"] == name) & (table["fixed_effects"] == fe)].set_index("outcome")
            reg.add_row(name, *[f"{part.loc[o, 'coef']:+.4f} ({part.loc[o, 'se']:.4f})" for o in occupations.OUTCOMES])
        console.print(reg)
    if study.demonstration is not None:
        console.print(demonstration_table(study.demonstration))
        for line in demonstration_summary(study.demonstration):
            console.print(line)


def demonstration_table(records) -> Table:
    """The regressions on occupations simulated from the model, per configuration pair and regime."""
    table = Table(title="The same regressions on occupations simulated from the model: coefficient on "
                        "standardised exposure (SEs in model_demonstration.csv)")
    for col in ("pair", "regime", "m6 dGini", "m1 CV", "m5 betw.", "dlog median", "dlog mean", "dlog p90/p10"):
        table.add_column(col, justify="left" if col in ("pair", "regime") else "right")
    for r in records:
        m = r["moments"]
        table.add_row(r["pair"], r["side"], f"{m['gini_change']:+.4f}", f"{m['cv_change']:+.3f}",
                      f"{m['between_firm_share_change']:+.4f}", *[f"{t['coef']:+.4f}" for t in r["regressions"].values()])
    return table


def demonstration_summary(records) -> list[str]:
    """Per configuration pair: on how many outcomes the two regimes' coefficients agree in sign."""
    import numpy as np

    lines = []
    for pair in dict.fromkeys(r["pair"] for r in records):
        eq, conc = (next(r for r in records if r["pair"] == pair and r["side"] == side)
                    for side in ("equalizing", "concentrating"))
        same = [o for o in eq["regressions"]
                if np.sign(eq["regressions"][o]["coef"]) == np.sign(conc["regressions"][o]["coef"])]
        lines.append(f"{pair}: Delta Gini {eq['moments']['gini_change']:+.4f} vs {conc['moments']['gini_change']:+.4f}; "
                     f"the occupation-level coefficients agree in sign on {len(same)} of {len(eq['regressions'])} "
                     f"outcomes ({', '.join(same) or 'none'}).")
    return lines


def power_table(study, reps: int) -> None:
    """Panel size for 80% power and the rejection rate with no effect, per hypothesis."""
    import numpy as np

    from estimation.empirics import panel

    table = Table(title=f"Panel size for 80% power (one-sided 5% tests, {reps} replications per size)")
    for col in ("hypothesis", "what it tests", "n for 80%", "rejections with no effect"):
        table.add_column(col, justify="left" if col in ("hypothesis", "what it tests") else "right")
    for h in panel.HYPOTHESES:
        needed = study.needed[h]
        n = "not within the grid" if not np.isfinite(needed) else f"{needed:,.0f}"
        table.add_row(h, panel.DESCRIPTIONS[h], n, ", ".join(f"{100 * x:.1f}%" for x in study.size[h]))
    console.print(table)
