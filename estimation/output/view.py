"""The typed view of a results folder: what a run wrote, read once from its files (or from a run in memory).

:func:`read_folder` reads a folder of ``levelfield calibrate``, ``regimes`` or ``oews`` into a
:class:`ResultsFolder`: its kind, its name, its PNGs and the view of its numbers
(:class:`Calibration`, :class:`Regimes` or :class:`Oews`). :func:`calibration_view` makes the
same :class:`Calibration` from a ``Result`` in memory, through the report the run writes, so that
the view of a folder rebuilt from its files equals the view its run produced. The presentation (the
terminal tables, the LaTeX tables, ``report.html`` and the calibration's figures) renders from these
types and computes nothing; the scaled sensitivity comes from ``estimation.msm.sensitivity``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from estimation.errors import OutputError
from estimation.output.numbers import as_float
from estimation.msm.sensitivity import scaled_sensitivity

#: Files that identify each kind of results folder (all must be present).
KIND_FILES = {
    "calibrate": ("estimates.csv", "moments.csv", "report.json"),
    "regimes": ("boundary.csv", "regimes.json"),
    "oews": ("regressions.csv", "coverage.csv"),
}


def sentence(text: str) -> str:
    """``text`` with a capital first letter and a final full stop."""
    text = str(text).strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def _text(value) -> str:
    """A text cell: '' for a missing one (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _flag(value, default: bool = True) -> bool:
    """A boolean cell (True/False from a CSV or JSON, or their text); ``default`` where missing
    (files written before the column existed)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


# --- a calibration -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Estimate:
    """One row of ``estimates.csv``: a free parameter's estimate, SE (NaN where withheld) and interval."""

    parameter: str
    estimate: float
    se: float
    ci_lower: float
    ci_upper: float
    interval: str  # how the interval was formed ('' in files older than the column)
    lower_bound: float
    upper_bound: float
    at_bound: str  # 'lower', 'upper' or ''
    start: float  # the best start's starting value
    se_note: str  # why the SE is withheld ('' where it is given)

    @property
    def note(self) -> str:
        """The note on this estimate ('' if none), as a sentence.

        Without a standard error: the reason in ``se_note`` (or "Standard error not available.");
        with one at a binding bound (files written before ``se_note`` existed): that it assumes an
        interior optimum.
        """
        if math.isnan(self.se):
            return sentence(self.se_note or "standard error not available")
        if self.at_bound:
            bound = self.lower_bound if self.at_bound == "lower" else self.upper_bound
            return (f"At its {self.at_bound} bound ({bound:g}): the standard error assumes an interior "
                    "optimum and is not valid there.")
        return ""

    @property
    def se_reason(self) -> str:
        """Why there is no standard error, as a sentence ('' where there is one)."""
        return sentence(self.se_note or "standard error not available") if math.isnan(self.se) else ""

    @classmethod
    def from_record(cls, row: dict) -> Estimate:
        return cls(parameter=str(row["parameter"]), estimate=as_float(row.get("estimate")), se=as_float(row.get("se")),
                   ci_lower=as_float(row.get("ci_lower")), ci_upper=as_float(row.get("ci_upper")),
                   interval=_text(row.get("interval")), lower_bound=as_float(row.get("lower_bound")),
                   upper_bound=as_float(row.get("upper_bound")), at_bound=_text(row.get("at_bound")),
                   start=as_float(row.get("start")), se_note=_text(row.get("se_note")))


@dataclasses.dataclass(frozen=True)
class Moment:
    """One row of ``moments.csv``: a target, its SE, the model's value and the error in target SEs."""

    moment: str
    symbol: str  # m1 ... m6
    target: float
    se: float
    model: float
    error: float  # model - target
    error_in_se: float
    simulation_sd: float
    source: str
    targeted: bool = True  # False: weight 0 in the estimation (--moments, or no row in the targets file)

    @classmethod
    def from_record(cls, row: dict) -> Moment:
        return cls(moment=str(row["moment"]), symbol=_text(row.get("symbol")), target=as_float(row.get("target")),
                   se=as_float(row.get("se")), model=as_float(row.get("model")), error=as_float(row.get("error")),
                   error_in_se=as_float(row.get("error_in_se")), simulation_sd=as_float(row.get("simulation_sd")),
                   source=_text(row.get("source")), targeted=_flag(row.get("targeted")))


@dataclasses.dataclass(frozen=True)
class JTest:
    """Hansen's J at the estimate; ``p_value`` NaN when exactly identified (no test); ``form`` the
    statistic (g' Sigma^-1 g or the generalised g' S^+ g; '' in a report written before it was recorded)."""

    J: float
    df: int | None
    p_value: float
    weights: str
    form: str = ""

    @property
    def description(self) -> str:
        """The weighting and, where recorded, the form of J: "diagonal weights, J = g' S^+ g"."""
        if not self.form:
            return self.weights
        return f"{self.weights} weights, J = {self.form}"

    @property
    def verdict(self) -> str:
        if math.isnan(self.p_value):
            return "no over-identifying restriction: no test"
        if self.p_value < 0.05:
            return "the over-identifying restrictions are rejected at 5%"
        return "the over-identifying restrictions are not rejected at 5%"


@dataclasses.dataclass(frozen=True)
class WeakDirection:
    """A combination of parameters the moments hardly move (a small singular value of W^1/2 G)."""

    singular_value: float
    text: str


@dataclasses.dataclass(frozen=True)
class Identification:
    """Local identification from the singular values of W^1/2 G; ``reason`` why there is no inference."""

    singular_values: tuple[float, ...]
    condition_number: float
    rank: int | None
    n_params: int | None
    identified: bool
    weak_directions: tuple[WeakDirection, ...]
    reason: str  # '' when the Jacobian is usable

    @property
    def relative_singular_values(self) -> tuple[float, ...]:
        """Each singular value over the largest (NaN when the largest is 0)."""
        top = max(self.singular_values) if self.singular_values else 1.0
        return tuple(v / top if top else math.nan for v in self.singular_values)


@dataclasses.dataclass(frozen=True, eq=False)
class Sensitivity:
    """Andrews-Gentzkow-Shapiro Lambda = -(G'WG)^-1 G'W (``sensitivity.csv``) and Lambda scaled by the SEs."""

    parameters: tuple[str, ...]
    moments: tuple[str, ...]
    raw: np.ndarray  # (k, m) parameter units per target unit
    scaled: np.ndarray  # (k, m) Lambda_pm se_m / se_p: parameter SEs per target SE, NaN without an SE
    # and in the columns of untargeted moments (weight 0: Lambda is 0 there)
    untargeted: tuple[str, ...] = ()

    def scaled_frame(self) -> pd.DataFrame:
        """``scaled`` with the parameters as index and the moments as columns."""
        return pd.DataFrame(self.scaled, index=list(self.parameters), columns=list(self.moments))


@dataclasses.dataclass(frozen=True)
class TargetEffect:
    """What one target does to Delta Gini (first order): the rows of ``delta_gini.csv``."""

    moment: str
    d_delta_gini_d_target: float
    effect_of_one_se: float
    share_of_total_effect: float
    se_to_flip_sign: float  # inf when the target cannot flip the sign (first order)
    shift_to_flip_sign: float
    targeted: bool = True  # False: the moment has weight 0 and moves nothing


@dataclasses.dataclass(frozen=True)
class ParameterEffect:
    """What one parameter does to Delta Gini: its derivative and the effect of a one-SE move."""

    parameter: str
    d_delta_gini_d_parameter: float
    effect_of_one_se: float


@dataclasses.dataclass(frozen=True)
class Decomposition:
    """First-order decomposition of Delta Gini at the estimate, by target and by parameter."""

    delta_gini: float
    regime: str
    targets: tuple[TargetEffect, ...]
    parameters: tuple[ParameterEffect, ...]


@dataclasses.dataclass(frozen=True)
class RegimeUncertainty:
    """Delta Gini's delta-method SE and the probability of the concentrating regime (first order,
    and from ``draws`` draws of theta ~ N(theta_hat, V) in the search box; NaN when not drawn)."""

    delta_gini: float
    se: float
    probability_normal: float
    probability_concentrating: float
    monte_carlo_se: float
    draws: int
    acceptance: float

    @property
    def text(self) -> str:
        """One line: 'Delta Gini +0.00090 (se 0.00040); P(concentrating) 0.98 (MC se 0.01, 256 draws; first order 0.99)'."""
        first = f"first order {self.probability_normal:.2f}"
        if math.isnan(self.probability_concentrating):
            prob = first
        else:
            prob = (f"{self.probability_concentrating:.2f} (Monte Carlo se {self.monte_carlo_se:.2f}, "
                    f"{self.draws} draws of theta in the search box; {first})")
        return f"Delta Gini {self.delta_gini:+.5f} (se {self.se:.5f}); P(concentrating) {prob}"


def _regime_uncertainty(u: dict | None) -> RegimeUncertainty | None:
    if not u:
        return None
    return RegimeUncertainty(delta_gini=as_float(u.get("delta_gini")), se=as_float(u.get("se")),
                             probability_normal=as_float(u.get("probability_normal")),
                             probability_concentrating=as_float(u.get("probability_concentrating")),
                             monte_carlo_se=as_float(u.get("monte_carlo_se")), draws=int(u.get("draws") or 0),
                             acceptance=as_float(u.get("acceptance")))


@dataclasses.dataclass(frozen=True)
class FlipCheck:
    """A re-estimation with one target moved by its first-order sign-flipping shift."""

    moment: str
    se_moved: float
    delta_gini_before: float
    delta_gini_after_reestimation: float
    sign_flipped: bool
    se_to_flip_sign_secant: float


@dataclasses.dataclass(frozen=True)
class Start:
    """One starting point of the optimiser: where it started and ended, and how it stopped."""

    start: dict  # parameter -> starting value
    end: dict  # parameter -> end value
    criterion: float
    grad_norm: float
    iterations: int | None
    status: str
    method: str
    at_bound: dict  # parameter -> which bound it stopped at

    @property
    def at_search_box(self) -> list[str]:
        """The parameters that stopped at the search box."""
        return [n for n, b in self.at_bound.items() if "search box" in b]


@dataclasses.dataclass(frozen=True)
class SecondStep:
    """The two-step re-estimation with optimal weights."""

    start: object
    iterations: object
    criterion: float
    status: str


@dataclasses.dataclass(frozen=True)
class FixedPointState:
    """Convergence of the education fixed point in one AI state at the estimate."""

    state: str
    residual: float
    iterations: int | None
    converged: bool


@dataclasses.dataclass(frozen=True)
class Convergence:
    """How the optimiser and the education fixed point converged."""

    starts: tuple[Start, ...]
    best_start: int | None
    stage2: SecondStep | None
    fixed_point_solver: str
    fixed_point_tol: float
    fixed_point: tuple[FixedPointState, ...]


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The view of a calibration's results folder: estimates, moments, inference, identification,
    decomposition and convergence (``None`` for a part the folder does not have)."""

    config: dict  # the run's configuration, as report.json records it
    versions: dict
    free_parameters: tuple[str, ...]
    criterion: float
    regime: str
    estimates: tuple[Estimate, ...]
    moments: tuple[Moment, ...]
    j_test: JTest | None
    identification: Identification | None
    sensitivity: Sensitivity | None
    decomposition: Decomposition | None
    flip_checks: tuple[FlipCheck, ...]
    convergence: Convergence
    regime_uncertainty: RegimeUncertainty | None = None  # None in a report written before it was computed

    @property
    def untargeted(self) -> tuple[str, ...]:
        """The moments the estimation did not target (weight 0; still simulated and reported)."""
        return tuple(m.moment for m in self.moments if not m.targeted)

    @property
    def symbols(self) -> dict[str, str]:
        """moment name -> its symbol (m1 ... m6), for the moments that have one."""
        return {m.moment: m.symbol for m in self.moments if m.symbol}

    def estimate(self, parameter: str) -> Estimate | None:
        return next((e for e in self.estimates if e.parameter == parameter), None)


def _int_or_none(value) -> int | None:
    x = as_float(value)
    return None if math.isnan(x) else int(x)


def _j_test(j: dict) -> JTest | None:
    if not j:
        return None
    df = j.get("df")
    return JTest(J=as_float(j.get("J")), df=df, p_value=as_float(j.get("p_value")), weights=_text(j.get("weights")),
                 form=_text(j.get("form")))


def _identification(ident: dict) -> Identification | None:
    if not ident:
        return None
    weak = tuple(WeakDirection(as_float(w.get("singular_value")), _text(w.get("text")))
                 for w in ident.get("weak_directions") or [])
    return Identification(singular_values=tuple(as_float(v) for v in ident.get("singular_values") or []),
                          condition_number=as_float(ident.get("condition_number")), rank=ident.get("rank"),
                          n_params=ident.get("n_params"), identified=bool(ident.get("identified")),
                          weak_directions=weak, reason=_text(ident.get("reason")))


def _decomposition(dec: dict | None) -> Decomposition | None:
    if not dec:
        return None
    targets = tuple(TargetEffect(moment=str(t["moment"]), **{f: as_float(t.get(f)) for f in (
        "d_delta_gini_d_target", "effect_of_one_se", "share_of_total_effect", "se_to_flip_sign",
        "shift_to_flip_sign")}, targeted=_flag(t.get("targeted"))) for t in dec.get("targets") or [])
    params = tuple(ParameterEffect(parameter=str(p["parameter"]),
                                   d_delta_gini_d_parameter=as_float(p.get("d_delta_gini_d_parameter")),
                                   effect_of_one_se=as_float(p.get("effect_of_one_se")))
                   for p in dec.get("parameters") or [])
    return Decomposition(delta_gini=as_float(dec.get("delta_gini")), regime=_text(dec.get("regime")),
                         targets=targets, parameters=params)


def _flip_checks(flips: list) -> tuple[FlipCheck, ...]:
    return tuple(FlipCheck(moment=_text(f.get("moment")), se_moved=as_float(f.get("se_moved")),
                           delta_gini_before=as_float(f.get("delta_gini_before")),
                           delta_gini_after_reestimation=as_float(f.get("delta_gini_after_reestimation")),
                           sign_flipped=bool(f.get("sign_flipped")),
                           se_to_flip_sign_secant=as_float(f.get("se_to_flip_sign_secant")))
                 for f in flips or [])


def _convergence(conv: dict, fp: dict) -> Convergence:
    starts = tuple(Start(start={n: as_float(v) for n, v in (s.get("start") or {}).items()},
                         end={n: as_float(v) for n, v in (s.get("end") or {}).items()},
                         criterion=as_float(s.get("criterion")), grad_norm=as_float(s.get("grad_norm")),
                         iterations=_int_or_none(s.get("iterations")), status=_text(s.get("status")),
                         method=_text(s.get("method")), at_bound=dict(s.get("at_bound") or {}))
                   for s in conv.get("starts") or [])
    stage2 = conv.get("stage2")
    second = None if not stage2 else SecondStep(start=stage2.get("start"), iterations=stage2.get("iterations"),
                                                criterion=as_float(stage2.get("criterion")),
                                                status=_text(stage2.get("status")))
    states = tuple(FixedPointState(state=k, residual=as_float(v.get("residual")),
                                   iterations=_int_or_none(v.get("iterations")), converged=bool(v.get("converged")))
                   for k, v in (fp.get("states") or {}).items())
    return Convergence(starts=starts, best_start=conv.get("best_start"), stage2=second,
                       fixed_point_solver=_text(fp.get("solver")), fixed_point_tol=as_float(fp.get("tol")),
                       fixed_point=states)


def _sensitivity(parameters, moments, raw, estimates, moment_rows) -> Sensitivity:
    """Lambda with its scaled form, the SEs looked up by name (NaN for a name without one, and in
    the columns of the untargeted moments)."""
    param_se = {e.parameter: e.se for e in estimates}
    target_se = {m.moment: m.se for m in moment_rows}
    untargeted = tuple(m.moment for m in moment_rows if not m.targeted)
    raw = np.asarray(raw, dtype=float).reshape(len(parameters), len(moments))
    scaled = scaled_sensitivity(raw, np.array([target_se.get(m, math.nan) for m in moments], dtype=float),
                                np.array([param_se.get(p, math.nan) for p in parameters], dtype=float))
    if untargeted:
        scaled[:, [m in untargeted for m in moments]] = np.nan
    return Sensitivity(parameters=tuple(parameters), moments=tuple(moments), raw=raw, scaled=scaled,
                       untargeted=untargeted)


def calibration_from_report(report: dict, estimates: list[dict] | None = None, moments: list[dict] | None = None,
                            sensitivity: tuple | None = None) -> Calibration:
    """The view from a report (report.json's dict, inf and nan as strings or floats).

    ``estimates``, ``moments`` (records) and ``sensitivity`` ((parameters, moments, (k, m) values))
    replace the report's own where given (a folder's CSVs); otherwise the report's are used.
    """
    est = tuple(Estimate.from_record(r) for r in (report.get("estimates") or [] if estimates is None else estimates))
    mom = tuple(Moment.from_record(r) for r in (report.get("moments") or [] if moments is None else moments))
    if sensitivity is None and report.get("sensitivity"):
        s = report["sensitivity"]
        sensitivity = (s["rows"], s["columns"], [[as_float(v) for v in row] for row in s["values"]])
    sens = None if sensitivity is None else _sensitivity(*sensitivity, est, mom)
    dec = report.get("delta_gini") or {}
    return Calibration(
        config=dict(report.get("config") or {}), versions=dict(report.get("versions") or {}),
        free_parameters=tuple(report.get("free_parameters", [e.parameter for e in est])),
        criterion=as_float(report.get("criterion")), regime=_text(report.get("regime")), estimates=est, moments=mom,
        j_test=_j_test(report.get("j_test") or {}), identification=_identification(report.get("identification") or {}),
        sensitivity=sens, decomposition=_decomposition(dec.get("decomposition")),
        flip_checks=_flip_checks(dec.get("flip_checks")), regime_uncertainty=_regime_uncertainty(dec.get("uncertainty")),
        convergence=_convergence(report.get("convergence") or {}, report.get("fixed_point") or {}))


def calibration_view(result) -> Calibration:
    """The view of a calibration ``Result`` in memory: the one its folder's files give back."""
    from estimation.output.runfiles import to_jsonable

    return calibration_from_report(to_jsonable(result.to_report()))


def _records(path: Path, text_columns: tuple[str, ...]) -> list[dict]:
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={c: str for c in text_columns})
    return frame.to_dict("records")


def read_report(folder: Path) -> dict:
    """``report.json`` of a results folder as a dict (its 'inf'/'nan' strings left as they are)."""
    path = Path(folder) / "report.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: not a readable report.json ({exc})") from exc


def read_calibration(folder: Path) -> Calibration:
    """The view of a calibration's folder from ``estimates.csv``, ``moments.csv``, ``sensitivity.csv``
    (where present) and ``report.json``; every other part from report.json."""
    folder = Path(folder)
    report = read_report(folder)
    estimates = _records(folder / "estimates.csv", ("parameter", "se_note", "at_bound", "interval"))
    moments = _records(folder / "moments.csv", ("moment", "symbol", "source"))
    sensitivity = None
    path = folder / "sensitivity.csv"
    if path.is_file():
        lam = pd.read_csv(path, index_col=0)
        sensitivity = ([str(p) for p in lam.index], [str(c) for c in lam.columns], lam.to_numpy(dtype=float))
    return calibration_from_report(report, estimates, moments, sensitivity)


# --- regimes and oews ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Regimes:
    """The view of a ``levelfield regimes`` folder: regimes.json, the boundary and the maps' grids."""

    origin: str
    seed: object
    settings: dict
    params: dict
    structures: dict
    seconds: float | None
    boundary: pd.DataFrame  # boundary.csv: one row per (structure, xi)
    maps: dict  # "map_xi_gini_K" / "map_eta1_xi" -> its CSV (long: row, column, delta_gini), where present


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=["", "nan", "NaN"])


def read_regimes(folder: Path) -> Regimes:
    folder = Path(folder)
    info = _read_json(folder / "regimes.json")
    maps = {name: _read_csv(folder / f"{name}.csv") for name in ("map_xi_gini_K", "map_eta1_xi")
            if (folder / f"{name}.csv").is_file()}
    return Regimes(origin=info.get("origin", ""), seed=info.get("seed", ""), settings=info.get("settings") or {},
                   params=info.get("params") or {}, structures=info.get("structures") or {},
                   seconds=as_float(info["seconds"]) if "seconds" in info else None,
                   boundary=_read_csv(folder / "boundary.csv"), maps=maps)


@dataclasses.dataclass(frozen=True, eq=False)
class Oews:
    """The view of a ``levelfield oews`` folder: report.json, the regressions, coverage and the model's."""

    years: list
    files: dict  # year -> the OEWS file read
    harmonisation: dict
    loader: list  # one report per file read
    regressions: pd.DataFrame  # regressions.csv
    coverage: pd.DataFrame  # coverage.csv
    demonstration: pd.DataFrame | None  # model_demonstration.csv, where present


def read_oews(folder: Path) -> Oews:
    folder = Path(folder)
    info = _read_json(folder / "report.json")
    cover = _read_csv(folder / "coverage.csv")
    demo = folder / "model_demonstration.csv"
    return Oews(years=info.get("years") or sorted(cover["year"].unique().tolist()), files=info.get("files") or {},
                harmonisation=info.get("harmonisation") or {}, loader=info.get("loader") or [],
                regressions=_read_csv(folder / "regressions.csv"), coverage=cover,
                demonstration=_read_csv(demo) if demo.is_file() else None)


# --- any folder ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class ResultsFolder:
    """A results folder read once: its kind, name, PNGs (name -> bytes, sorted) and the view of its numbers."""

    kind: str  # "calibrate", "regimes" or "oews"
    name: str
    figures: dict
    view: Calibration | Regimes | Oews


def folder_kind(folder: Path) -> str:
    """``"calibrate"``, ``"regimes"`` or ``"oews"``, from the files in ``folder``.

    Raises:
        OutputError: the folder does not exist or holds none of the kinds' files (names them).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OutputError(f"{folder}: not a folder (report needs a results folder of levelfield "
                          "calibrate, regimes or oews)")
    for kind, files in KIND_FILES.items():
        if all((folder / name).is_file() for name in files):
            return kind
    expected = "; ".join(f"{kind}: {', '.join(files)}" for kind, files in KIND_FILES.items())
    raise OutputError(f"{folder}: not a levelfield results folder (expected the files of one kind: {expected})")


_READERS = {"calibrate": read_calibration, "regimes": read_regimes, "oews": read_oews}


def read_folder(folder: Path) -> ResultsFolder:
    """The results folder read once (see :class:`ResultsFolder`).

    Raises:
        OutputError: the folder is missing or is not a results folder of one of the three kinds.
    """
    folder = Path(folder)
    kind = folder_kind(folder)
    figures = {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}
    return ResultsFolder(kind=kind, name=folder.name, figures=figures, view=_READERS[kind](folder))
