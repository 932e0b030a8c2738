"""The inputs of a calibration, checked before any heavy work: ``CalibrationConfig``, its weights and files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from typing import NamedTuple
from pathlib import Path

import numpy as np

import jaxmodel
from estimation.errors import ConfigError
from estimation.msm.optimiser import DEFAULT_OPTIMIZER, OPTIMISERS, Tolerances
from estimation.msm.parameters import DEFAULT_FREE, FreeParameters, free_parameters
from estimation.msm.targets import Targets, load_targets
from jaxmodel import MOMENT_NAMES, Params, Settings

WEIGHTINGS = ("diagonal", "identity", "optimal")

#: The configuration's fields that are the model's static settings (``jaxmodel.Settings``).
MODEL_SETTINGS = ("n_agents", "n_firms", "n_occupations", "n_tasks", "spec", "precision", "fp_damping", "fp_solver")


def model_settings(config: Mapping) -> Settings:
    """``jaxmodel.Settings`` from a configuration's JSON form (report.json's "config" or
    ``CalibrationConfig.to_dict()``); a field missing from an older report takes Settings' default."""
    return Settings(**{name: config[name] for name in MODEL_SETTINGS if name in config})


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
        optimizer: the optimiser, a name in ``optimiser.OPTIMISERS`` ("lm", Levenberg-Marquardt;
            "lm-box", the same with the box-only step; "lbfgs", optax's L-BFGS; "adam").
        n_sim: independent draw sets for Omega_sim.
        flip_checks: how many of the closest sign flips to check by re-estimation.
        regime_draws: draws of theta ~ N(theta_hat, V) for the probability of the concentrating
            regime (default 0: the first-order probability Phi(Delta Gini / SE) only, which needs no
            more model runs; ``estimation.regimes.regime_uncertainty``).
        moments: the targeted moments (``--moments``; code names or m1..m6), or None for every
            moment the targets file gives. The others get weight 0 and are still simulated and
            reported. ``calibrate`` records the resolved names here when they are fewer than six;
            ``to_dict`` leaves the key out when None.
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
    optimizer: str = DEFAULT_OPTIMIZER
    n_sim: int = 20
    flip_checks: int = 2
    regime_draws: int = 0
    moments: tuple[str, ...] | None = None

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["free"] = list(self.free)
        if self.moments is None:  # all the file's moments: the key of older reports' configurations
            del out["moments"]
        else:
            out["moments"] = list(self.moments)
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
            elif key == "moments":
                if value is not None and (not isinstance(value, (list, tuple))
                                          or not all(isinstance(n, str) for n in value)):
                    fail(key, "a list of moment names or null")
                out[key] = None if value is None else tuple(value)
            elif key == "bounds":
                if not isinstance(value, Mapping) or not all(
                        isinstance(v, (list, tuple)) and len(v) == 2 for v in value.values()):
                    fail(key, "an object {name: [low, high]}")
                out[key] = {str(k): (number(key, v[0]), number(key, v[1])) for k, v in value.items()}
            elif key == "fixed":
                if not isinstance(value, Mapping):
                    fail(key, "an object {name: value}")
                out[key] = {str(k): number(key, v) for k, v in value.items()}
            elif key in ("weights", "spec", "precision", "fp_solver", "optimizer"):
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
        return Settings(**{name: getattr(self, name) for name in MODEL_SETTINGS})

    def tolerances(self) -> Tolerances:
        return Tolerances(gtol=self.gtol, ftol=self.ftol, max_iter=self.max_iter)


class Inputs(NamedTuple):
    """A configuration's inputs, validated: the targets (``targets.targeted``: the moments the
    estimation targets), the free parameters, the model settings, the fixed parameters and the
    first-step weighting matrix (6, 6), 0 in the rows and columns of untargeted moments."""

    targets: Targets
    free: FreeParameters
    settings: Settings
    base: Params
    weights: np.ndarray


def validate(config: CalibrationConfig) -> Inputs:
    """Everything checked before any heavy work."""
    for name, lo in (("n_starts", 1), ("max_iter", 1), ("n_sim", 2), ("flip_checks", 0), ("regime_draws", 0)):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ConfigError(f"{name}={value!r} must be an integer >= {lo}")
    for name in ("gtol", "ftol"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{name}={value!r} must be a positive number")
    if config.optimizer not in OPTIMISERS:
        raise ConfigError(f"optimizer={config.optimizer!r} is not one of {', '.join(OPTIMISERS)}")
    settings = config.settings()
    targets = load_targets(config.targets)
    free = free_parameters(config.free, config.bounds)
    overlap = sorted(set(config.fixed) & set(free.names))
    if overlap:
        raise ConfigError(f"--set {', '.join(overlap)}: a free parameter cannot also be fixed")
    targets = restrict_targets(targets, config.moments, free.names)
    base = jaxmodel.baseline().replace(**dict(config.fixed))
    return Inputs(targets, free, settings, base, restrict_weights(_weights(config.weights, targets), targets.mask))


def moment_subset(text, free: tuple[str, ...]) -> tuple[str, ...]:
    """The moments named in ``--moments`` (a comma-separated string or a sequence of names; code
    names or m1..m6, any case), in MODEL.md order; all six for None. Raises ConfigError for an
    unknown or repeated name, none at all, or fewer moments than free parameters (no rank
    condition can hold)."""
    from estimation.msm.targets import ALIASES

    if text is None:
        return tuple(MOMENT_NAMES)
    items = [text] if isinstance(text, str) else list(text)
    given = [n.strip() for item in items for n in str(item).split(",") if n.strip()]
    names = []
    for raw in given:
        name = ALIASES.get(raw.lower(), raw.lower())
        if name not in MOMENT_NAMES:
            raise ConfigError(f"--moments: unknown moment {raw!r}; allowed: {', '.join(MOMENT_NAMES)} (or m1..m6)")
        if name in names:
            raise ConfigError(f"--moments: {name} is given twice")
        names.append(name)
    if not names:
        raise ConfigError("--moments: no moment named; give at least one of " + ", ".join(MOMENT_NAMES))
    if len(names) < len(free):
        raise ConfigError(f"--moments: {len(names)} moment(s) cannot identify {len(free)} free parameters "
                          f"({', '.join(free)}); free at most as many parameters as moments")
    return tuple(n for n in MOMENT_NAMES if n in names)


def restrict_targets(targets: Targets, moments, free: tuple[str, ...]) -> Targets:
    """``targets`` restricted to ``moments`` (:func:`moment_subset`; None: the moments ``targets``
    already targets, which for a file just read are those it gives). Raises ConfigError for a
    named moment that is not among those, or fewer targeted moments than free parameters."""
    available = targets.used
    if moments is None:
        used = available
    else:
        used = moment_subset(moments, free)
        absent = [n for n in used if n not in available]
        if absent:
            raise ConfigError(f"--moments: no target for {', '.join(absent)} in {targets.origin} "
                              f"(its targeted moments: {', '.join(available)})")
    if len(used) < len(free):
        raise ConfigError(f"{targets.origin}: {len(used)} targeted moment(s) ({', '.join(used)}) cannot identify "
                          f"{len(free)} free parameters ({', '.join(free)}); free at most as many parameters "
                          "as moments, or target more (--moments)")
    return targets.restricted(used)


def restrict_weights(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """W with 0 in the rows and columns of the moments where ``mask`` is False; W itself (the same
    array) when every moment is targeted."""
    mask = np.asarray(mask, dtype=bool)
    if mask.all():
        return weights
    return np.where(mask[:, None] & mask[None, :], weights, 0.0)


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


def diagonal_weights(targets: Targets) -> np.ndarray:
    """W = diag(1/se^2) (6, 6), 0 where the targets file gives no SE."""
    return np.diag(np.where(np.isfinite(targets.se), 1.0 / targets.se**2, 0.0))


def _weights(kind: str, targets: Targets) -> np.ndarray:
    """The first-step weighting matrix (6, 6) before the restriction to the targeted moments;
    "optimal" starts from diagonal weights (0 where the file gives no SE)."""
    if kind in ("diagonal", "optimal"):
        return diagonal_weights(targets)
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
