"""``levelfield identify``: which free parameters the six moments identify, at a point and over the box."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from estimation import memory
from estimation.cli.options import (
    add_from_option,
    add_model_options,
    add_results_options,
    base_and_settings,
    default_out,
    positive_int,
)
from estimation.errors import ConfigError


def register(commands) -> None:
    parser = commands.add_parser(
        "identify",
        help="identification of the free parameters: at a point and over the search box",
        description=(
            "Identification analysis with exact Jacobians (Iskrev 2010, as Dynare's identification): at the "
            "point, the singular values of W^1/2 G, each parameter's strength and collinearity, the null space "
            "named as parameter combinations and a heatmap of elasticities; over S scrambled-Sobol points of the "
            "search box, the share of points where each parameter is identified and the condition number; and "
            "slices of the criterion g'Wg along each parameter. The point, free set, targets and weights come "
            "from a calibration (--from DIR) or are the baseline, the shipped targets and weights 1/se^2. --seed "
            "seeds the Sobol sequence, and the draws too without --from (with it, the calibration's draws are used)."
        ),
    )
    add_from_option(parser, "a calibration's results folder: its estimates, free set, settings, seed, targets, "
                            "weights and moments_cov.csv")
    ident = parser.add_argument_group("identification")
    ident.add_argument("--free", action="append", metavar="NAMES",
                       help="free parameters, comma-separated or repeated (default: the calibration's with --from, "
                            "else alpha,sigma_nu,sigma,eta1,xi)")
    ident.add_argument("--bound", action="append", default=[], metavar="NAME=LOW:HIGH",
                       help="search box of a free parameter (default: the calibration's bounds, else the search box)")
    ident.add_argument("--targets", metavar="FILE",
                       help="targets CSV/TOML without --from (default: the shipped MODEL.md scenario)")
    ident.add_argument("--moments", metavar="NAMES",
                       help="the moments to identify with, comma-separated (code names or m1..m6; default all six): "
                            "the others get weight 0")
    ident.add_argument("--points", type=positive_int, default=256, metavar="S",
                       help="Sobol points over the search box (default 256, at least 2)")
    ident.add_argument("--slice-points", type=int, default=21, metavar="N",
                       help="points of each criterion slice across the box (default 21; 0: no slices)")
    ident.add_argument("--grid", type=int, default=15, metavar="N",
                       help="points per axis of the criterion contour of the most collinear pair (default 15; 0: none)")
    ident.add_argument("--regime-draws", type=int, default=256, metavar="S",
                       help="with --from: draws of theta ~ N(estimate, V) in the search box (V: the calibration's "
                            "cov.csv) for the probability of the concentrating regime (default 256, regimes.REGIME_DRAWS; 0: none)")
    ident.add_argument("--batch", type=positive_int, metavar="B",
                       help="points per vmapped batch (default: as many as fit in memory)")
    runs = parser.add_argument_group("results")
    add_results_options(runs, "identify")
    runs.add_argument("--quiet", action="store_true", help="no progress and no tables")
    add_model_options(parser, agents=20_000, firms=100)
    parser.set_defaults(run=run)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What the analysis starts from (every check done)."""

    params: object  # jaxmodel.Params
    settings: object  # jaxmodel.Settings
    seed: int  # the draws' seed
    origin: str
    free: object  # FreeParameters
    targets: object  # numpy (6,)
    target_se: object  # numpy (6,)
    weights: object  # numpy (6, 6)
    weights_origin: str
    moments_cov: object  # numpy (6, 6)
    omega_note: str
    moments: tuple = ()  # the moments used (W is 0 in the rows and columns of the others)
    regime_cov: object = None  # numpy (k, k): the calibration's cov.csv, when it applies to the free set
    regime_note: str = ""


def _matrix(folder: Path, name: str, required: bool):
    import numpy as np
    import pandas as pd

    from jaxmodel import MOMENT_NAMES

    path = folder / name
    if not path.is_file():
        if required:
            raise ConfigError(f"--from {folder}: no {name} there (a folder written by levelfield calibrate)")
        return None
    try:
        frame = pd.read_csv(path, index_col=0)
        frame = frame.loc[list(MOMENT_NAMES), list(MOMENT_NAMES)]
        matrix = frame.to_numpy(dtype=np.float64)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--from {folder}: {name} is not a 6 x 6 matrix of the moments ({exc})") from None
    if not np.isfinite(matrix).all() or not np.allclose(matrix, matrix.T, rtol=1e-10, atol=0.0):
        raise ConfigError(f"--from {folder}: {name} must be a finite symmetric matrix")
    return matrix


def _free_names(args) -> tuple[str, ...] | None:
    if not args.free:
        return None
    return tuple(n.strip() for item in args.free for n in item.split(",") if n.strip())


def resolve(args: argparse.Namespace) -> Inputs:
    """The point, free set, targets, weights and Omega from the options; raises ConfigError (exit
    2) on bad input before any computation. The moments used are ``--moments`` (default: every
    moment the targets give, or that the calibration of ``--from`` targeted); W is 0 in the rows
    and columns of the others."""
    import numpy as np

    from estimation.msm.config import diagonal_weights, restrict_targets, restrict_weights
    from estimation.msm.parameters import free_parameters, parse_bound
    from estimation.msm.targets import load_targets
    from jaxmodel import MOMENT_NAMES

    if args.points < 2:
        raise ConfigError(f"--points {args.points} must be at least 2")
    if args.slice_points < 0 or args.slice_points == 1:
        raise ConfigError(f"--slice-points {args.slice_points} must be 0 (no slices) or at least 2")
    if args.grid < 0 or args.grid == 1:
        raise ConfigError(f"--grid {args.grid} must be 0 (no contour) or at least 2")
    if args.regime_draws < 0:
        raise ConfigError(f"--regime-draws {args.regime_draws} must be 0 (none) or more")
    bounds = {}
    for item in args.bound:
        name, lo, hi = parse_bound(item)
        if name in bounds:
            raise ConfigError(f"--bound {name} is given twice")
        bounds[name] = (lo, hi)
    names = _free_names(args)
    saved_free = None
    if args.from_dir is not None:
        source = _from_calibration(args, names, bounds)
        names, bounds, saved_free = source["names"], source["bounds"], source["saved_free"]
        params, settings, seed, origin = source["base"]
        t, weights, omega = source["targets"], source["weights"], source["omega"]
        weights_origin, omega_note = source["weights_origin"], source["omega_note"]
    else:
        params, settings, seed, origin = base_and_settings(args)
        t = load_targets(args.targets)
        weights = diagonal_weights(t)
        weights_origin = "diagonal 1/se^2"
        omega = t.covariance
        omega_note = ("diag(se^2) of the targets; the simulation noise Omega_sim is left out "
                      "(pass --from a calibration to include it)")
    free = free_parameters(names, bounds)
    t = restrict_targets(t, args.moments, free.names)
    used = t.used
    if len(used) < len(MOMENT_NAMES):
        weights = restrict_weights(weights, t.mask)
        how = "--moments" if args.moments is not None else "the moments targeted"
        weights_origin += f", restricted to {', '.join(used)} ({how}; the others weight 0)"
    regime_cov, regime_note = None, "no regime probability: it needs --from a calibration (its cov.csv)"
    if args.from_dir is not None:
        regime_cov, regime_note = _regime_cov(Path(args.from_dir), free.names, saved_free)
    return Inputs(params=params, settings=settings, seed=seed, origin=origin, free=free, targets=t.values,
                  target_se=t.se, weights=weights, weights_origin=weights_origin, moments_cov=omega,
                  omega_note=omega_note, regime_cov=regime_cov, regime_note=regime_note, moments=used)


def _from_calibration(args: argparse.Namespace, names, bounds: dict) -> dict:
    """What ``--from DIR`` gives: the point and settings (``base``), the free set and bounds (the
    calibration's unless given), its targets (as ``Targets``, targeting what the calibration
    targeted), weights.csv and moments_cov.csv, with notes saying where each comes from."""
    import numpy as np

    from estimation.msm.result import load_report
    from estimation.msm.targets import Targets
    from jaxmodel import MOMENT_NAMES

    if args.targets is not None:
        raise ConfigError("--targets cannot be combined with --from (the calibration's targets are used)")
    folder = Path(args.from_dir)
    report = load_report(folder)
    base = base_and_settings(args)
    config = report["config"]
    try:
        records = {r["moment"]: r for r in report["targets"]}
        values = np.array([float(records[n]["value"]) for n in MOMENT_NAMES])
        se = np.array([float(records[n]["se"]) for n in MOMENT_NAMES])
        targeted = tuple(bool(records[n].get("targeted", True)) and bool(np.isfinite(v))
                         for n, v in zip(MOMENT_NAMES, values))
        sources = tuple(str(records[n].get("source") or "") for n in MOMENT_NAMES)
        saved_bounds = {k: tuple(map(float, v)) for k, v in (config.get("bounds") or {}).items()}
        saved_free = tuple(report.get("free_parameters") or config["free"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"--from {folder}: report.json is not a levelfield calibration report ({exc})") from None
    if not (folder / "estimates.csv").is_file():
        raise ConfigError(f"--from {folder}: no estimates.csv there (a folder written by levelfield calibrate)")
    t = Targets(values=values, se=se, sources=sources, origin=f"the calibration in {folder}", targeted=targeted)
    weights = _matrix(folder, "weights.csv", required=True)
    omega = _matrix(folder, "moments_cov.csv", required=False)
    names = names or saved_free
    if omega is None:
        omega, omega_note = t.covariance, "diag(se^2) of the targets; Omega_sim left out (no moments_cov.csv)"
    else:
        omega_note = f"moments_cov.csv of {folder}: Omega + Omega_sim (the calibration's simulation noise)"
    return {"base": base, "names": names, "saved_free": saved_free, "targets": t, "weights": weights,
            "omega": omega, "omega_note": omega_note,
            "bounds": {**{k: v for k, v in saved_bounds.items() if k in names}, **bounds},
            "weights_origin": f"weights.csv of {folder} ({config.get('weights', 'diagonal')})"}


def _regime_key(seed: int):
    """The calibration's key of its regime draws (``estimation.msm.calibrate.REGIME_KEY``): with the
    same draws seed, the same draws of theta as the calibration's own regime probability."""
    import jax

    from estimation.msm.calibrate import REGIME_KEY

    return jax.random.fold_in(jax.random.key(seed), REGIME_KEY)


def _regime_cov(folder: Path, names: tuple[str, ...], saved: tuple[str, ...]):
    """(V of the calibration's estimates for the free set, a note): V is None where cov.csv is
    missing, not finite, or the free set is not the calibration's."""
    import numpy as np
    import pandas as pd

    if tuple(names) != tuple(saved):
        return None, f"no regime probability: the free set is not the calibration's ({', '.join(saved)})"
    try:
        cov = pd.read_csv(folder / "cov.csv", index_col=0).loc[list(names), list(names)].to_numpy(dtype=np.float64)
    except (OSError, ValueError, KeyError):
        return None, f"no regime probability: no readable cov.csv in {folder}"
    if not np.isfinite(cov).all():
        return None, "no regime probability: the calibration has no covariance (not identified)"
    return cov, f"draws of theta ~ N(estimate, V) in the search box, V = cov.csv of {folder}"


def run(args: argparse.Namespace) -> int:
    from estimation.output.runfiles import RunFolder

    inputs = resolve(args)
    out = default_out(args, "identify")
    folder = RunFolder(out)
    folder.check(resume=False, force=args.force)
    settings = inputs.settings
    memory.check_fits("identify", settings.n_agents, settings.n_firms, settings.precision)
    # Only now the heavy work: draws, compilation, the batched programs.
    import jax
    import numpy as np

    import jaxmodel
    from estimation import identification
    from estimation.output import identify_files, tables

    free = inputs.free
    theta = np.array([float(getattr(inputs.params, n)) for n in free.names])
    outside = [f"{n}={t:g} (box {lo:g}:{hi:g})" for n, t, lo, hi in zip(free.names, theta, free.lower, free.upper)
               if not lo <= t <= hi]
    if outside:
        raise ConfigError(f"the point lies outside the search box: {', '.join(outside)}; widen it with --bound")
    config = {"command": "identify", "origin": inputs.origin, "free": list(free.names), "points": args.points,
              "seed": args.seed, "slice_points": args.slice_points, "grid": args.grid,
              "regime_draws": args.regime_draws, "moments": list(inputs.moments)}
    folder.prepare(config, resume=False, force=args.force)
    start = time.perf_counter()
    draws = jaxmodel.make_draws(jax.random.key(inputs.seed), inputs.settings)
    assigned = None
    if not {"rho_occ", "rho_firm"} & set(free.names):
        assigned = jaxmodel.assign(inputs.params, draws, inputs.settings)
    model = identification.Model(settings=inputs.settings, base=inputs.params, free=free, draws=draws,
                                 assigned=assigned)
    with tables.status("Identification", quiet=args.quiet):
        result = identification.study(
            model, theta, inputs.targets, inputs.target_se, inputs.weights, inputs.moments_cov, args.points,
            args.seed, args.slice_points, args.grid, args.batch, regime_cov=inputs.regime_cov,
            regime_draws=args.regime_draws, regime_key=_regime_key(inputs.seed))
    seconds = time.perf_counter() - start
    identify_files.write_identify(folder, result, inputs, seed=args.seed, seconds=seconds)
    if not args.quiet:
        identify_files.print_summary(result)
    tables.console.print(f"Parameters: {inputs.origin}. Results in {Path(out).absolute()} ({seconds:.0f} s).")
    return 0
