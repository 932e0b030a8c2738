"""What a calibration produced: ``Result`` (report.json's schema) and the typed parts it is made of.

Each part is a frozen dataclass whose ``to_dict()`` is its JSON form in report.json (field order is
key order); the presentation (``estimation.output``) reads these types, never status strings.
"""

from __future__ import annotations

import dataclasses
import json
import time
from importlib import metadata
from pathlib import Path

import jax
import numpy as np

import jaxmodel
from estimation.errors import ConfigError
from estimation.msm.config import CalibrationConfig
from estimation.msm.optimiser import StartRecord, optimiser_record
from estimation.msm.parameters import START_DESIGN, FreeParameters
from estimation.msm.targets import Targets
from jaxmodel import MOMENT_NAMES, Params, Settings


class _Plain:
    """``to_dict()``: the fields in order, as plain JSON values."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class JTest(_Plain):
    """Hansen's J at the estimate (``inference.j_test``): chi-squared with df = m - k under the
    model, p-value None when exactly identified; ``form`` says which statistic J is (g' Sigma^-1 g
    under two-step optimal weights, the generalised g' S^+ g under any other) and ``weights`` which
    weighting the estimate used."""

    J: float
    df: int
    p_value: float | None
    form: str
    weights: str


@dataclasses.dataclass(frozen=True)
class Identification(_Plain):
    """Local identification from the singular values of W^1/2 G (``inference.identification``);
    ``reason`` says why there is no inference when the Jacobian itself is unusable."""

    singular_values: list
    condition_number: float
    rank: int
    n_params: int
    identified: bool
    weak_directions: list
    reason: str | None = None

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if self.reason is None:
            del out["reason"]
        return out


@dataclasses.dataclass(frozen=True)
class Decomposition(_Plain):
    """First-order decomposition of Delta Gini (``sensitivity.delta_gini_decomposition``): per
    parameter and per target (its effect, share and the SEs it must move to flip the sign)."""

    delta_gini: float
    regime: str
    parameters: list
    targets: list


@dataclasses.dataclass(frozen=True)
class RegimeUncertainty(_Plain):
    """Delta Gini at the estimate with its delta-method SE sqrt(a'Va), and the probability of the
    concentrating regime: first order, Phi(Delta Gini / se), and from ``draws`` draws of theta ~
    N(theta_hat, V) restricted to the search box, each draw's Delta Gini from the model
    (``estimation.regimes.regime_uncertainty``), with its Monte Carlo SE; ``key`` names the PRNG key."""

    delta_gini: float
    se: float
    probability_normal: float
    probability_concentrating: float | None
    monte_carlo_se: float | None
    draws: int
    finite_draws: int
    acceptance: float | None
    method: str
    key: str


@dataclasses.dataclass(frozen=True)
class FlipCheck(_Plain):
    """A re-estimation with one target moved by its first-order sign-flipping shift."""

    moment: str
    se_moved: float
    shift: float
    delta_gini_before: float
    delta_gini_after_reestimation: float
    remaining_share: float
    sign_flipped: bool
    se_to_flip_sign_secant: float
    theta: dict


@dataclasses.dataclass(frozen=True)
class SecondStep(_Plain):
    """The two-step re-estimation with optimal weights W2 = (Sigma_targets + Omega_sim1)^-1, with
    Omega_sim1 (6 x 6, ``omega_sim_first_step``) the simulation noise at the first-step estimate:
    W2 is recomputed from the folder as inv(diag(se^2) + omega_sim_first_step.csv), the inverse
    taken over the targeted moments (0 in the rows and columns of the others)."""

    first_step_theta: list
    status: str
    iterations: int
    criterion: float
    start: int
    omega_sim_first_step: list


@dataclasses.dataclass(frozen=True)
class FixedPoint(_Plain):
    """Convergence of the education fixed point at the estimate (both states), and during the
    optimisation (mean iterations per evaluation)."""

    tol: float
    max_iter: int
    solver: str
    states: dict
    optimisation: dict | None = None

    @property
    def warnings(self) -> list[str]:
        return [f"the education fixed point {state} AI did not converge at the estimate: residual "
                f"{info['residual']:.2e} after {info['iterations']} iterations (tolerance {self.tol:.0e}); "
                "its moments and derivatives are approximate"
                for state, info in self.states.items() if not info["converged"]]


def fixed_point_report(m, settings: Settings, optimisation: dict | None = None) -> FixedPoint:
    """Convergence of the education fixed point in both states at one parameter value."""
    states = {}
    for name, state in (("before", m.before), ("after", m.after)):
        residual, iterations = float(state["fp_residual"]), int(state["fp_iterations"])
        states[name] = {"residual": residual, "iterations": iterations,
                        "converged": bool(np.isfinite(residual) and residual <= settings.tol)}
    return FixedPoint(tol=settings.tol, max_iter=settings.fp_max_iter, solver=settings.fp_solver, states=states,
                      optimisation=optimisation)


def versions() -> dict:
    out = {}
    for pkg in ("levelfield", "jax", "jaxlib", "optax", "numpy", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    out["backend"] = jax.default_backend()
    return out


def load_report(folder: str | Path) -> dict:
    """The report.json of a calibration's results folder, checked to be one.

    Raises:
        ConfigError: no report.json there, or not one written by ``levelfield calibrate``.
    """
    path = Path(folder) / "report.json"
    try:
        report = json.loads(path.read_text("utf-8"))
        report["config"], report["estimates"]  # noqa: B018 - the keys every use needs
    except FileNotFoundError:
        raise ConfigError(f"--from {folder}: no report.json there (a folder written by levelfield calibrate)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--from {folder}: report.json is not a levelfield calibration report ({exc})") from None
    return report


def estimated_params(folder: str | Path) -> tuple[Params, dict]:
    """Parameters (the baseline, the run's fixed changes and its estimates) and the configuration
    of a calibration's results folder."""
    report = load_report(folder)
    config = report["config"]
    try:
        estimates = {row["parameter"]: float(row["estimate"]) for row in report["estimates"]}
        fixed = {k: float(v) for k, v in config.get("fixed", {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"--from {folder}: report.json is not a levelfield calibration report ({exc})") from None
    return jaxmodel.baseline().replace(**fixed, **estimates), config


@dataclasses.dataclass
class Result:
    """Everything a calibration produced (``to_report()`` gives the JSON of report.json)."""

    config: CalibrationConfig
    targets: Targets
    free: FreeParameters
    estimates: np.ndarray  # (k,)
    se: np.ndarray  # (k,) sandwich SE on the natural scale; NaN where withheld (at a bound)
    ci_lower: np.ndarray  # (k,) 95% interval inside the bounds (inference.bounded_intervals)
    ci_upper: np.ndarray
    interval_method: list  # k strings: how each interval was made
    se_note: list  # k strings: why an SE is withheld ("" where it is given)
    binding: list
    cov: np.ndarray  # (k, k)
    jac: np.ndarray  # (6, k)
    weights: np.ndarray  # (6, 6)
    omega_sim: np.ndarray  # (6, 6)
    moments_cov: np.ndarray  # (6, 6) Omega + Omega_sim
    model_moments: np.ndarray  # (6,)
    sensitivity: np.ndarray  # (k, 6) Lambda
    criterion: float
    j_test: JTest
    identification: Identification
    decomposition: Decomposition | None
    flip_checks: list[FlipCheck]
    starts: list[StartRecord]
    best_start: int
    stage2: SecondStep | None
    fixed_point: FixedPoint
    inputs: dict
    seconds: float
    versions: dict
    regime_uncertainty: RegimeUncertainty | None = None
    timing: dict = dataclasses.field(default_factory=dict)

    def timing_record(self) -> dict:
        """What timing.json holds: the wall time, and per stage its compile and run time."""
        return {"seconds": self.seconds, "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **self.timing}

    @property
    def errors(self) -> np.ndarray:
        """(6,) model - target (NaN where the targets file gives no target; for an untargeted
        moment with a target, its distance to it, which the estimate did not weigh)."""
        return self.model_moments - self.targets.values

    @property
    def regime(self) -> str:
        return "concentrating" if self.model_moments[MOMENT_NAMES.index("gini_change")] > 0 else "equalizing"

    def estimates_table(self) -> list[dict]:
        return [
            {"parameter": n, "estimate": float(self.estimates[j]), "se": float(self.se[j]),
             "ci_lower": float(self.ci_lower[j]), "ci_upper": float(self.ci_upper[j]),
             "interval": self.interval_method[j],
             "lower_bound": self.free.lower[j], "upper_bound": self.free.upper[j],
             "at_bound": self.binding[j] or "", "start": float(self.starts[self.best_start].start[j]),
             "se_note": self.se_note[j]}
            for j, n in enumerate(self.free.names)
        ]

    def moments_table(self) -> list[dict]:
        """The rows of moments.csv: each moment's target, SE, model value, error, error in SEs,
        simulation SD, source and whether the estimation targeted it."""
        sim_sd = np.sqrt(np.diag(self.omega_sim))
        return [
            {"moment": n, "symbol": f"m{i + 1}", "target": float(self.targets.values[i]),
             "se": float(self.targets.se[i]), "model": float(self.model_moments[i]),
             "error": float(self.errors[i]), "error_in_se": float(self.errors[i] / self.targets.se[i]),
             "simulation_sd": float(sim_sd[i]), "source": self.targets.sources[i],
             "targeted": bool(self.targets.targeted[i])}
            for i, n in enumerate(MOMENT_NAMES)
        ]

    def to_report(self) -> dict:
        names = list(self.free.names)
        return {
            "levelfield_report": 1,
            "config": self.config.to_dict(),
            "targets": self.targets.to_records(),
            "targeted_moments": list(self.targets.used),
            "free_parameters": names,
            "estimates": self.estimates_table(),
            "moments": self.moments_table(),
            "criterion": self.criterion,
            "regime": self.regime,
            "j_test": self.j_test.to_dict(),
            "identification": self.identification.to_dict(),
            "delta_gini": {"decomposition": None if self.decomposition is None else self.decomposition.to_dict(),
                           "uncertainty": None if self.regime_uncertainty is None else self.regime_uncertainty.to_dict(),
                           "flip_checks": [f.to_dict() for f in self.flip_checks]},
            "jacobian": {"rows": list(MOMENT_NAMES), "columns": names, "values": self.jac.tolist()},
            "weights": self.weights.tolist(),
            "omega_sim": self.omega_sim.tolist(),
            "moments_cov": self.moments_cov.tolist(),
            "cov": self.cov.tolist(),
            "sensitivity": {"rows": names, "columns": list(MOMENT_NAMES), "values": self.sensitivity.tolist()},
            "convergence": {
                "best_start": self.best_start,
                "starts": [
                    {"start": dict(zip(names, map(float, r.start))), "end": dict(zip(names, map(float, r.theta))),
                     "criterion": r.value, "grad_norm": r.grad_norm, "iterations": r.iterations,
                     "status": r.status_text, "method": r.method, "history": r.history,
                     "at_bound": {n: b for n, b in zip(names, self.free.binding(r.theta)) if b}}
                    for r in self.starts
                ],
                "stage2": None if self.stage2 is None else self.stage2.to_dict(),
                "start_design": START_DESIGN,
                "optimizer": optimiser_record(self.config.optimizer, self.config.tolerances()),
            },
            "fixed_point": self.fixed_point.to_dict(),
            "inputs": self.inputs,
            "versions": self.versions,
        }

    @property
    def warnings(self) -> list[str]:
        """What a reader of the estimate must know: non-converged fixed points, unidentified parameters."""
        out = list(self.fixed_point.warnings)
        if not self.identification.identified:
            reason = self.identification.reason or "the free parameters are not locally identified"
            out.append(f"{reason}: no standard errors")
        return out
