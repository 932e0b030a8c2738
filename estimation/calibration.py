"""``calibrate``: the whole MSM estimation, from targets to inference, files and figures.

The steps: validate every input; simulate the draws; minimise g'Wg from several starts
(Levenberg-Marquardt with exact Jacobians, ``estimation.msm``, checkpointed after every iteration);
optionally re-weight optimally and re-estimate (two-step); then, at the estimate, the Jacobian G
by forward-mode autodiff (the optimiser's own program), the
simulation noise Omega_sim over independent draw sets, the sandwich covariance, the J test,
Andrews-Gentzkow-Shapiro sensitivity, local identification and the Delta Gini decomposition,
whose two closest sign flips are checked by re-estimation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxmodel
from estimation import inference, msm, sensitivity
from estimation.errors import ConfigError, NumericalError, OutputError
from estimation.parameters import DEFAULT_FREE, FreeParameters, free_parameters
from estimation.runfiles import RunFolder
from estimation.timing import StageClock
from estimation.targets import Targets, load_targets
from jaxmodel import MOMENT_NAMES, Settings

WEIGHTINGS = ("diagonal", "identity", "optimal")


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    """Every input of a calibration; recorded in report.json and enough to replay it.

    Attributes:
        targets: path of a CSV/TOML targets file, or None for the shipped MODEL.md scenario.
        free: names of the estimated parameters.
        bounds: {name: (low, high)} overriding the domain bounds of free parameters.
        weights: "diagonal" (1/se^2), "identity", "optimal" (two-step) or a path to a CSV matrix.
        fixed: {name: value} changes to the baseline for parameters that are not estimated.
        n_agents, n_firms, n_occupations, n_tasks, spec, precision, fp_damping, fp_solver: model settings.
        seed: PRNG seed of the estimation's draws (simulation-noise draws use other keys).
        n_starts: starting points of the multistart.
        max_iter: most optimiser iterations (evaluations) per start; gtol, ftol: stopping rules (msm.Tolerances).
        n_sim: independent draw sets for Omega_sim.
        flip_checks: how many of the closest sign flips to check by re-estimation.
    """

    targets: str | None = None
    free: tuple[str, ...] = DEFAULT_FREE
    bounds: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    weights: str = "diagonal"
    fixed: Mapping[str, float] = dataclasses.field(default_factory=dict)
    n_agents: int = 20_000
    n_firms: int = 100
    n_occupations: int = 10
    n_tasks: int = 40
    spec: str = "additive"
    precision: str = "float64"
    fp_damping: float = 0.5
    fp_solver: str = "anderson"
    seed: int = 0
    n_starts: int = 3
    max_iter: int = 100
    gtol: float = 1e-5
    ftol: float = 1e-6
    n_sim: int = 20
    flip_checks: int = 2

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["free"] = list(self.free)
        out["bounds"] = {k: [float(v[0]), float(v[1])] for k, v in dict(self.bounds).items()}
        out["fixed"] = {k: float(v) for k, v in dict(self.fixed).items()}
        if self.targets is not None:
            out["targets"] = str(Path(self.targets).expanduser().absolute())
        def plain(x):
            """JSON-safe: infinite bounds as the strings "inf" / "-inf" (what from_dict reads)."""
            if isinstance(x, float) and math.isinf(x):
                return "inf" if x > 0 else "-inf"
            if isinstance(x, dict):
                return {str(k): plain(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [plain(v) for v in x]
            return x

        return json.loads(json.dumps(plain(out), default=str))

    @classmethod
    def from_dict(cls, values: Mapping) -> CalibrationConfig:
        """A configuration from its JSON form (``report.json``'s "config"), every value type-checked.

        Raises:
            ConfigError: not a mapping, unknown keys, or a value of the wrong type; values of the
                right type are validated by :func:`calibrate` as usual.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"a configuration must be a JSON object, not {type(values).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown configuration key(s) {', '.join(map(str, unknown))}; known: {', '.join(sorted(known))}")

        def fail(key, expected):
            raise ConfigError(f"configuration {key}={values[key]!r} must be {expected}")

        def number(key, x):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                if x in ("inf", "-inf"):  # how to_dict writes infinite bounds
                    return float(x)
                fail(key, "a number")
            return float(x)

        out = {}
        for key, value in values.items():
            if key == "targets":
                if value is not None and not isinstance(value, str):
                    fail(key, "a file path or null")
                out[key] = value
            elif key == "free":
                if not isinstance(value, (list, tuple)) or not all(isinstance(n, str) for n in value):
                    fail(key, "a list of parameter names")
                out[key] = tuple(value)
            elif key == "bounds":
                if not isinstance(value, Mapping) or not all(
                        isinstance(v, (list, tuple)) and len(v) == 2 for v in value.values()):
                    fail(key, "an object {name: [low, high]}")
                out[key] = {str(k): (number(key, v[0]), number(key, v[1])) for k, v in value.items()}
            elif key == "fixed":
                if not isinstance(value, Mapping):
                    fail(key, "an object {name: value}")
                out[key] = {str(k): number(key, v) for k, v in value.items()}
            elif key in ("weights", "spec", "precision", "fp_solver"):
                if not isinstance(value, str):
                    fail(key, "a string")
                out[key] = value
            elif known[key].type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, int):
                    fail(key, "a whole number")
                out[key] = value
            else:
                out[key] = number(key, value)
        return cls(**out)

    def settings(self) -> Settings:
        return Settings(
            n_agents=self.n_agents, n_firms=self.n_firms, n_occupations=self.n_occupations,
            n_tasks=self.n_tasks, spec=self.spec, precision=self.precision, fp_damping=self.fp_damping,
            fp_solver=self.fp_solver,
        )

    def tolerances(self) -> msm.Tolerances:
        return msm.Tolerances(gtol=self.gtol, ftol=self.ftol, max_iter=self.max_iter)


def _validate(config: CalibrationConfig):
    """Everything checked before any heavy work: returns (targets, free, settings, base, W or kind)."""
    for name, lo in (("n_starts", 1), ("max_iter", 1), ("n_sim", 2), ("flip_checks", 0)):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ConfigError(f"{name}={value!r} must be an integer >= {lo}")
    for name in ("gtol", "ftol"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{name}={value!r} must be a positive number")
    settings = config.settings()
    targets = load_targets(config.targets)
    free = free_parameters(config.free, config.bounds)
    overlap = sorted(set(config.fixed) & set(free.names))
    if overlap:
        raise ConfigError(f"--set {', '.join(overlap)}: a free parameter cannot also be fixed")
    base = jaxmodel.baseline().replace(**dict(config.fixed))
    weights = _weights(config.weights, targets)
    return targets, free, settings, base, weights


def input_files(config: CalibrationConfig) -> dict:
    """The files a run reads, with their SHA-256: {"targets": {...} | None, "weights": {...} | None}.

    Recorded in report.json, so that ``--replay`` can refuse a file that changed since the run.
    """
    def record(path):
        path = Path(path).expanduser().absolute()
        return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

    weights_file = config.weights not in WEIGHTINGS
    return {"targets": record(config.targets) if config.targets is not None else None,
            "weights": record(config.weights) if weights_file else None}


def check_inputs_unchanged(recorded: Mapping, config: CalibrationConfig) -> None:
    """Raise ConfigError when a file recorded in a report.json differs from the file there now."""
    for kind, entry in (recorded or {}).items():
        if not entry:
            continue
        path = Path(entry["path"])
        if not path.is_file():
            raise ConfigError(f"--replay: the {kind} file {path} of the recorded run no longer exists")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            raise ConfigError(
                f"--replay: the {kind} file {path} changed since the recorded run (sha256 {digest[:12]}... "
                f"instead of {entry['sha256'][:12]}...); restore it to replay the run"
            )


def _weights(kind: str, targets: Targets) -> np.ndarray:
    """The first-step weighting matrix (6, 6); "optimal" starts from diagonal weights."""
    if kind in ("diagonal", "optimal"):
        return np.diag(1.0 / targets.se**2)
    if kind == "identity":
        return np.eye(len(MOMENT_NAMES))
    return load_weight_matrix(kind)


def load_weight_matrix(path: str | Path) -> np.ndarray:
    """A user weighting matrix from CSV: a header row and six rows, both naming the moments.

    Raises:
        ConfigError: unreadable file, wrong labels, non-numeric, non-finite, asymmetric or not
            positive definite.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"--weights {path}: not one of {', '.join(WEIGHTINGS)} and not an existing CSV file"
        )
    try:
        frame = pd.read_csv(path, index_col=0)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--weights {path}: cannot read a CSV matrix ({exc})") from None
    names = list(MOMENT_NAMES)
    if sorted(map(str, frame.index)) != sorted(names) or sorted(map(str, frame.columns)) != sorted(names):
        raise ConfigError(f"--weights {path}: rows and columns must be labelled with the six moments {', '.join(names)}")
    try:
        matrix = frame.loc[names, names].to_numpy(dtype=float)
    except ValueError:
        raise ConfigError(f"--weights {path}: every entry must be a number") from None
    if not np.isfinite(matrix).all():
        raise ConfigError(f"--weights {path}: every entry must be finite")
    if not np.allclose(matrix, matrix.T, rtol=1e-10, atol=1e-12):
        raise ConfigError(f"--weights {path}: the weighting matrix must be symmetric")
    if np.linalg.eigvalsh(matrix).min() <= 0:
        raise ConfigError(f"--weights {path}: the weighting matrix must be positive definite")
    return matrix


@dataclasses.dataclass
class Result:
    """Everything a calibration produced (``to_report()`` gives the JSON of report.json)."""

    config: CalibrationConfig
    targets: Targets
    free: FreeParameters
    estimates: np.ndarray  # (k,)
    se: np.ndarray
    ci_lower: np.ndarray
    ci_upper: np.ndarray
    binding: list
    cov: np.ndarray  # (k, k)
    jac: np.ndarray  # (6, k)
    weights: np.ndarray  # (6, 6)
    omega_sim: np.ndarray  # (6, 6)
    moments_cov: np.ndarray  # (6, 6) Omega + Omega_sim
    model_moments: np.ndarray  # (6,)
    sensitivity: np.ndarray  # (k, 6) Lambda
    criterion: float
    j_test: dict
    identification: dict
    decomposition: dict | None
    flip_checks: list
    starts: list
    best_start: int
    stage2: dict | None
    fixed_point: dict
    inputs: dict
    seconds: float
    versions: dict
    timing: dict = dataclasses.field(default_factory=dict)

    def timing_record(self) -> dict:
        """What timing.json holds: the wall time, and per stage its compile and run time."""
        return {"seconds": self.seconds, "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **self.timing}

    @property
    def errors(self) -> np.ndarray:
        return self.model_moments - self.targets.values

    @property
    def regime(self) -> str:
        return "concentrating" if self.model_moments[MOMENT_NAMES.index("gini_change")] > 0 else "equalizing"

    def estimates_table(self) -> list[dict]:
        return [
            {"parameter": n, "estimate": float(self.estimates[j]), "se": float(self.se[j]),
             "ci_lower": float(self.ci_lower[j]), "ci_upper": float(self.ci_upper[j]),
             "lower_bound": self.free.lower[j], "upper_bound": self.free.upper[j],
             "at_bound": self.binding[j] or "", "start": float(self.starts[self.best_start].start[j])}
            for j, n in enumerate(self.free.names)
        ]

    def moments_table(self) -> list[dict]:
        sim_sd = np.sqrt(np.diag(self.omega_sim))
        return [
            {"moment": n, "symbol": f"m{i + 1}", "target": float(self.targets.values[i]),
             "se": float(self.targets.se[i]), "model": float(self.model_moments[i]),
             "error": float(self.errors[i]), "error_in_se": float(self.errors[i] / self.targets.se[i]),
             "simulation_sd": float(sim_sd[i]), "source": self.targets.sources[i]}
            for i, n in enumerate(MOMENT_NAMES)
        ]

    def to_report(self) -> dict:
        names = list(self.free.names)
        return {
            "levelfield_report": 1,
            "config": self.config.to_dict(),
            "targets": self.targets.to_records(),
            "free_parameters": names,
            "estimates": self.estimates_table(),
            "moments": self.moments_table(),
            "criterion": self.criterion,
            "regime": self.regime,
            "j_test": self.j_test,
            "identification": self.identification,
            "delta_gini": {"decomposition": self.decomposition, "flip_checks": self.flip_checks},
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
                     "status": r.status, "method": r.method, "history": r.history}
                    for r in self.starts
                ],
                "stage2": self.stage2,
            },
            "fixed_point": self.fixed_point,
            "inputs": self.inputs,
            "versions": self.versions,
        }

    @property
    def warnings(self) -> list[str]:
        """What a reader of the estimate must know: non-converged fixed points, unidentified parameters."""
        out = []
        for state, info in self.fixed_point["states"].items():
            if not info["converged"]:
                out.append(f"the education fixed point {state} AI did not converge at the estimate: residual "
                           f"{info['residual']:.2e} after {info['iterations']} iterations (tolerance "
                           f"{self.fixed_point['tol']:.0e}); its moments and derivatives are approximate")
        if not self.identification["identified"]:
            reason = self.identification.get("reason", "the free parameters are not locally identified")
            out.append(f"{reason}: no standard errors")
        return out


def fixed_point_report(m, settings: Settings) -> dict:
    """Convergence of the education fixed point in both states at one parameter value."""
    states = {}
    for name, state in (("before", m.before), ("after", m.after)):
        residual, iterations = float(state["fp_residual"]), int(state["fp_iterations"])
        states[name] = {"residual": residual, "iterations": iterations,
                        "converged": bool(np.isfinite(residual) and residual <= settings.tol)}
    return {"tol": settings.tol, "max_iter": settings.fp_max_iter, "solver": settings.fp_solver, "states": states}


def versions() -> dict:
    out = {}
    for pkg in ("levelfield", "jax", "jaxlib", "optax", "numpy", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    out["backend"] = jax.default_backend()
    return out


class _Checkpointer:
    """Saves and restores the optimiser batch of one stage inside a run folder."""

    def __init__(self, folder: RunFolder | None):
        self.folder = folder
        self.meta: dict = {}

    def load(self):
        if self.folder is None:
            return None
        loaded = self.folder.load_checkpoint()
        if loaded is None:
            return None
        arrays, self.meta = loaded
        return arrays

    def save(self, stage: str, batch: msm.BatchState | None, extra: dict | None = None) -> None:
        if self.folder is None:
            return
        if extra:
            self.meta.update(extra)
        arrays = {}
        if batch is not None:
            arrays = batch.arrays()
            self.meta[f"{stage}_batch"] = {"iteration": batch.iteration, "status": batch.status, "history": batch.history}
        self.meta["stage"] = stage
        self.folder.save_checkpoint(arrays, self.meta)

    @staticmethod
    def restore(arrays: dict, meta: dict) -> msm.BatchState:
        fields = {name: np.array(arrays[name]) for name in msm.BatchState.ARRAYS}
        fields["done"] = fields["done"].astype(bool)
        return msm.BatchState(**fields, status=list(meta["status"]), history=[list(h) for h in meta["history"]],
                              iteration=int(meta["iteration"]))


def _optimise(stage: str, theta0: np.ndarray, starts: np.ndarray, free: FreeParameters, data, problem, tol,
              checkpointer: _Checkpointer, arrays: dict | None, progress: Callable | None) -> list[msm.StartRecord]:
    """Run (or resume) one stage of the optimisation; returns one record per start."""
    meta = checkpointer.meta.get(f"{stage}_batch")
    if arrays is not None and meta is not None and checkpointer.meta.get("stage") == stage:
        batch = _Checkpointer.restore(arrays, meta)
    else:
        batch = msm.new_batch(theta0, data, problem)
        checkpointer.save(stage, batch)

    def on_iteration(b: msm.BatchState) -> None:
        checkpointer.save(stage, b)
        if progress is not None:
            progress(stage, b)

    batch = msm.run_batch(batch, data, problem, free, tol, on_iteration)
    return msm.finish_starts(batch, starts, free, data)


def _record_to_json(r: msm.StartRecord) -> dict:
    return {"start": r.start.tolist(), "theta": r.theta.tolist(), "u": r.u.tolist(), "value": r.value,
            "grad_norm": r.grad_norm, "iterations": r.iterations, "status": r.status, "method": r.method,
            "history": r.history, "fp_iterations": r.fp_iterations}


def _record_from_json(d: dict) -> msm.StartRecord:
    return msm.StartRecord(start=np.array(d["start"]), theta=np.array(d["theta"]), u=np.array(d["u"]),
                           value=float(d["value"]), grad_norm=float(d["grad_norm"]), iterations=int(d["iterations"]),
                           status=d["status"], method=d["method"], history=list(d["history"]),
                           fp_iterations=int(d.get("fp_iterations", 0)))


def reestimate(starts: np.ndarray, targets: np.ndarray, free: FreeParameters, data, problem, tol,
               aggregates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Re-estimate from each row of ``starts`` (c, k) with the targets of the same row (c, m).

    Rows run as one batch without pruning (their targets differ); their fixed points start from
    ``aggregates`` (those at the estimate). Returns the estimates (c, k) and the model moments
    there (c, m).
    """
    theta0 = np.stack([free.inside(row, margin=1e-9) for row in starts])
    batch = msm.new_batch(theta0, data, problem, T=targets, start=aggregates)
    batch = msm.run_batch(batch, data, problem, free, tol, prune=False)
    records = msm.finish_starts(batch, theta0, free, data)
    return np.stack([r.theta for r in records]), batch.M.copy()


def calibrate(
    config: CalibrationConfig | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    progress: Callable | None = None,
    **overrides,
) -> Result:
    """Estimate the model by MSM; with ``out``, write the results folder (see ``estimation.results``).

    Args:
        config: the inputs (default: the shipped targets and the default free parameters); keyword
            ``overrides`` replace its fields, e.g. ``calibrate(n_agents=10_000, free=("xi",))``.
        out: results folder; never overwritten unless ``force``; ``resume`` continues an interrupted
            run that wrote to the same folder (same configuration required).
        progress: called as progress(event, payload) with ``("stage1" | "stage2", BatchState)`` after
            every optimiser iteration and ``("step", text)`` between post-estimation steps.

    Returns:
        The :class:`Result`.

    Raises:
        EstimationError / ModelError subclasses for bad input, before any heavy work.
    """
    config = dataclasses.replace(config or CalibrationConfig(), **overrides)
    targets, free, settings, base, weights = _validate(config)
    inputs = input_files(config)
    folder = RunFolder(out) if out is not None else None
    if folder is not None:
        resumed = folder.prepare(config.to_dict(), resume=resume, force=force)
    elif resume:
        raise OutputError("--resume needs the results folder (--out) of the interrupted run")
    else:
        resumed = False
    started = time.perf_counter()
    clock = StageClock()
    clock.switch("draws")
    say = (lambda text: progress("step", text)) if progress is not None else (lambda text: None)

    problem = msm.Problem(settings=settings)
    draws = jaxmodel.make_draws(jax.random.key(config.seed), settings)
    # Who works where depends on the draws and on rho_occ, rho_firm only: sorted once unless free.
    assigned = None if {"rho_occ", "rho_firm"} & set(free.names) else jaxmodel.assign(base, draws, settings)
    data = msm.ProblemData(base=base, free=free.arrays(), draws=draws, targets=jnp.asarray(targets.values),
                           weights=jnp.asarray(weights), assigned=assigned)
    tol = config.tolerances()
    starts = msm.starting_points(free, base, config.n_starts, config.seed)

    clock.switch("optimisation")
    checkpointer = _Checkpointer(folder)
    arrays = checkpointer.load() if resumed else None
    if "stage1_records" in checkpointer.meta:
        records = [_record_from_json(d) for d in checkpointer.meta["stage1_records"]]
    else:
        say(f"Optimising from {config.n_starts} start(s), N = {settings.n_agents:_}")
        records = _optimise("stage1", starts, starts, free, data, problem, tol, checkpointer, arrays, progress)
        checkpointer.save("stage1_done", None, {"stage1_records": [_record_to_json(r) for r in records]})
    finite = [i for i, r in enumerate(records) if np.isfinite(r.value)]
    if not finite:
        if folder is not None:
            folder.discard()  # nothing to resume: the same inputs fail the same way
        where = "; ".join(", ".join(f"{n}={v:.4g}" for n, v in zip(free.names, r.start)) for r in records)
        raise NumericalError(
            "every start ended with a non-finite criterion (the model's moments are not finite there): "
            f"starts {where}. Narrow the region with --bound or change the fixed parameters"
        )
    best = min(finite, key=lambda i: records[i].value)
    theta = records[best].theta
    sim_key = jax.random.fold_in(jax.random.key(config.seed), 1)

    stage2 = None
    if config.weights == "optimal":
        clock.switch("two-step")
        say("Two-step: optimal weights from the first-step estimate")
        omega_sim1 = msm.simulation_noise(free.params(base, jnp.asarray(theta)), sim_key, settings, config.n_sim)
        weights = np.linalg.inv(targets.covariance + omega_sim1)
        data = dataclasses.replace(data, weights=jnp.asarray(weights))
        if "stage2_records" in checkpointer.meta:
            records2 = [_record_from_json(d) for d in checkpointer.meta["stage2_records"]]
        else:
            # Every first-step end point starts the second step (same batch size: no recompilation).
            starts2 = np.stack([free.inside(r.theta, margin=1e-9) for r in records])
            arrays2 = arrays if checkpointer.meta.get("stage") == "stage2" else None
            records2 = _optimise("stage2", starts2, starts2, free, data, problem, tol, checkpointer, arrays2, progress)
            checkpointer.save("stage2_done", None, {"stage2_records": [_record_to_json(r) for r in records2]})
        finite2 = [i for i, r in enumerate(records2) if np.isfinite(r.value)]
        best2 = min(finite2, key=lambda i: records2[i].value)
        rec2 = records2[best2]
        stage2 = {"first_step_theta": theta.tolist(), "status": rec2.status, "iterations": rec2.iterations,
                  "criterion": rec2.value, "start": best2}
        theta = rec2.theta

    clock.switch("inference")
    say("Jacobian, simulation noise and inference at the estimate")
    theta_j = jnp.asarray(theta)
    params_hat = free.params(base, theta_j)
    # The moments and G at the estimate from one cold evaluation (the optimiser's own program).
    at_estimate = msm.evaluate(theta_j, jaxmodel.outcomes.cold(settings), data, problem)
    model = at_estimate.moments
    fixed_point = fixed_point_report(at_estimate, settings)
    evaluations = sum(r.iterations for r in records)
    fixed_point["optimisation"] = {
        "evaluations": evaluations,
        "mean_iterations_per_evaluation": sum(r.fp_iterations for r in records) / (2 * max(evaluations, 1)),
        "note": "fixed-point iterations per state and evaluation in stage 1, warm-started from the last accepted point",
    }
    jac = at_estimate.jacobian
    omega_sim = msm.simulation_noise(params_hat, sim_key, settings, config.n_sim)
    moments_cov = targets.covariance + omega_sim
    errors = model - targets.values
    criterion_value = float(errors @ weights @ errors)
    if np.isfinite(jac).all():
        ident = inference.identification(jac, weights, list(free.names))
    else:  # no inference from a Jacobian that is not finite; the estimate itself is still reported
        ident = {"singular_values": [], "condition_number": math.inf, "rank": 0, "n_params": free.size,
                 "identified": False, "weak_directions": [],
                 "reason": "the Jacobian of the moments is not finite at the estimate"}
    k = free.size
    if ident["identified"]:
        cov = inference.cov_robust(jac, weights, moments_cov)
        lam = inference.sensitivity_to_bias(jac, weights)
    else:
        cov = np.full((k, k), np.nan)
        lam = np.full((k, len(MOMENT_NAMES)), np.nan)
    se = inference.standard_errors(cov) if ident["identified"] else np.full(k, np.nan)
    lo, hi = inference.confidence_intervals(theta, se)
    j_test = inference.j_statistic(errors, moments_cov, k)
    j_test["weights"] = "optimal" if config.weights == "optimal" else f"{config.weights} (J uses optimal weights)"

    decomposition, flips = None, []
    if ident["identified"]:
        decomposition = sensitivity.delta_gini_decomposition(model, jac, lam, targets.se, list(free.names), se)
        gini = MOMENT_NAMES.index("gini_change")
        checks = sensitivity.closest_flips(decomposition, config.flip_checks)
        if checks:
            clock.switch("flip checks")
            say("Re-estimating with the targets that flip Delta Gini soonest: "
                + ", ".join(f"{t['moment']} {t['se_to_flip_sign']:+.2f} se" for t in checks))
            idx = [MOMENT_NAMES.index(t["moment"]) for t in checks]
            shifts = np.array([t["shift_to_flip_sign"] for t in checks])
            shifted = np.tile(targets.values, (len(checks), 1))
            shifted[np.arange(len(checks)), idx] += shifts
            # Each starts from its first-order prediction theta_hat - Lambda[:, i] shift.
            predicted = np.stack([theta - lam[:, i] * d for i, d in zip(idx, shifts)])
            thetas, flipped_moments = reestimate(predicted, shifted, free, data, problem, tol,
                                                 aggregates=at_estimate.aggregates)
            m6_0 = float(model[gini])
            for t, i, d, theta_f, m_f in zip(checks, idx, shifts, thetas, flipped_moments):
                m6 = float(m_f[gini])
                # Secant through (0, m6_0) and (shift, m6): where Delta Gini crosses 0.
                secant = d * m6_0 / (m6_0 - m6) if m6 != m6_0 else math.inf
                flips.append({
                    "moment": t["moment"], "se_moved": t["se_to_flip_sign"], "shift": float(d),
                    "delta_gini_before": m6_0, "delta_gini_after_reestimation": m6,
                    "remaining_share": m6 / m6_0 if m6_0 else math.nan,
                    "sign_flipped": bool(np.sign(m6) != np.sign(m6_0)),
                    "se_to_flip_sign_secant": secant / targets.se[i] if math.isfinite(secant) else math.inf,
                    "theta": dict(zip(free.names, map(float, theta_f))),
                })

    result = Result(
        config=config, targets=targets, free=free, estimates=np.asarray(theta), se=se, ci_lower=lo, ci_upper=hi,
        binding=free.binding(theta), cov=cov, jac=jac, weights=weights, omega_sim=omega_sim,
        moments_cov=moments_cov, model_moments=model, sensitivity=lam, criterion=criterion_value, j_test=j_test,
        identification=ident, decomposition=decomposition, flip_checks=flips, starts=records, best_start=best,
        stage2=stage2, fixed_point=fixed_point, inputs=inputs, seconds=time.perf_counter() - started,
        versions=versions(),
    )
    if folder is not None:
        from estimation import results as results_io

        clock.switch("files")
        say(f"Writing {folder.out}")
        folder.staging.mkdir(parents=True, exist_ok=True)
        results_io.write_results(result, folder.staging)
        folder.publish()
    clock.stop()
    result.timing = clock.to_dict()
    result.seconds = time.perf_counter() - started
    if folder is not None:
        from estimation.runfiles import atomic_write_json

        # timing.json holds the wall time and is the one file that differs between repeated runs.
        atomic_write_json(Path(folder.out) / "timing.json", result.timing_record())
    return result
