"""``levelfield calibrate``: the MSM estimation, the main job."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from estimation.cli.options import (
    add_model_options,
    add_results_options,
    default_out,
    optimizer_name,
    parse_assignments,
    positive_int,
)
from estimation.errors import ConfigError


def register(commands) -> None:
    parser = commands.add_parser(
        "calibrate",
        help="estimate the model by the method of simulated moments (the main job)",
        description=(
            "Estimate the free parameters by the method of simulated moments (MODEL.md section 7): "
            "minimise g'Wg with g = m(theta) - m_data from several starts, advanced together by one optax "
            "loop (by default Levenberg-Marquardt with exact autodiff Jacobians; --optimizer), then report "
            "standard errors (with simulation noise), the J test, Andrews-Gentzkow-Shapiro sensitivity, local identification and what pins the sign of "
            "Delta Gini. Results go to --out (never overwritten without --force); an interrupted run "
            "continues with --resume."
        ),
    )
    est = parser.add_argument_group("estimation")
    est.add_argument("--targets", metavar="FILE",
                     help="targets as CSV (moment,value,se,source) or TOML ([[target]]); default: the shipped "
                          "MODEL.md scenario")
    est.add_argument("--free", action="append", metavar="NAMES",
                     help="free parameters, comma-separated or repeated (default alpha,sigma_nu,sigma,eta1,xi)")
    est.add_argument("--bound", action="append", default=[], metavar="NAME=LOW:HIGH",
                     help="search bounds of a free parameter (default: its search box, the README's parameter table; inside its domain), e.g. --bound sigma=0.2:10")
    est.add_argument("--moments", metavar="NAMES",
                     help="the moments to estimate on, comma-separated (code names or m1..m6; default: every "
                          "moment the targets file gives): the others get weight 0 and are still simulated and "
                          "reported, marked not targeted")
    est.add_argument("--weights", default="diagonal", metavar="KIND",
                     help="diagonal (1/se^2, default), identity, optimal (two-step) or a CSV matrix file")
    est.add_argument("--starts", type=positive_int, default=3, metavar="S", help="starting points (default 3)")
    est.add_argument("--max-iter", type=positive_int, default=100, metavar="K",
                     help="most optimiser iterations (evaluations of the moments and their Jacobian) per start (default 100)")
    est.add_argument("--optimizer", type=optimizer_name, default="lm", metavar="NAME",
                     help="the optimiser: lm (default; bounded Levenberg-Marquardt with the NL2SOL secant term, "
                          "exact Jacobians, steps that keep off the bounds until one binds), lm-box (the same with "
                          "steps straight onto a bound), lbfgs (optax.lbfgs with its zoom line search on the "
                          "unconstrained scale, reverse-mode gradients) or adam")
    est.add_argument("--sim-sets", type=positive_int, default=20, metavar="R",
                     help="independent draw sets for the simulation noise Omega_sim (default 20)")
    est.add_argument("--flip-checks", type=int, default=2, metavar="K",
                     help="closest Delta Gini sign flips to check by re-estimation (default 2)")
    est.add_argument("--regime-draws", type=int, default=0, metavar="S",
                     help="draws of theta ~ N(theta_hat, V) in the search box for the probability of the "
                          "concentrating regime (default 0: only the first-order probability Phi(Delta Gini/SE), "
                          "which costs nothing; 256 gives a Monte Carlo SE of at most 0.031 and one more compiled "
                          "program)")
    est.add_argument("--fp-solver", choices=("anderson", "newton", "damped"), default="anderson",
                     help="solver of the education fixed point: anderson (default, accelerated in the space of "
                          "the aggregates Gamma depends on), newton (Newton's method with their Jacobian assembled "
                          "in one pass; at most 2048 aggregates 3 O + F) or damped (MODEL.md's reference "
                          "iteration); the same fixed point to fp_tol either way")
    est.add_argument("--fp-damping", type=float, default=0.5, metavar="D",
                     help="damping in (0, 1] of the damped solver and of the Anderson solver's safeguard steps "
                          "(default 0.5, MODEL.md)")
    runs = parser.add_argument_group("results")
    add_results_options(runs, "calibrate")
    runs.add_argument("--resume", action="store_true", help="continue the interrupted run of --out")
    runs.add_argument("--replay", metavar="REPORT", help="repeat the run recorded in a report.json")
    runs.add_argument("--quiet", action="store_true", help="no progress bar and no tables")
    add_model_options(parser, agents=20_000, firms=100)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from estimation.msm import CalibrationConfig, calibrate
    from estimation.msm.parameters import parse_bound
    from estimation.output import tables

    if args.replay is not None:
        try:
            saved = json.loads(Path(args.replay).read_text("utf-8"))
            config = CalibrationConfig.from_dict(saved["config"])
        except FileNotFoundError:
            raise ConfigError(f"--replay {args.replay}: file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"--replay {args.replay}: a folder; pass the report.json inside it") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"--replay {args.replay}: not a levelfield report.json ({exc})") from None
        from estimation.msm.config import check_inputs_unchanged
        from estimation.msm.result import versions

        check_inputs_unchanged(saved.get("inputs"), config)
        then, now = saved.get("versions", {}), versions()
        changed = [f"{k} {then[k]} -> {now.get(k)}" for k in then if then[k] != now.get(k)]
        if changed:
            print(f"levelfield calibrate: warning: --replay with other versions than the recorded run "
                  f"({', '.join(changed)}); results may differ in the last digits", file=sys.stderr)
    else:
        free = None
        if args.free:
            free = tuple(n.strip() for item in args.free for n in item.split(",") if n.strip())
        bounds = {}
        for item in args.bound:
            name, lo, hi = parse_bound(item)
            if name in bounds:
                raise ConfigError(f"--bound {name} is given twice")
            bounds[name] = (lo, hi)
        config = CalibrationConfig(
            targets=args.targets, bounds=bounds, weights=args.weights, fixed=parse_assignments(args.assignments),
            n_agents=args.agents, n_firms=args.firms, n_occupations=args.occupations, n_tasks=args.tasks,
            spec=args.spec, precision=args.precision, fp_damping=args.fp_damping,
            fp_solver=args.fp_solver, seed=args.seed,
            n_starts=args.starts, max_iter=args.max_iter, n_sim=args.sim_sets, flip_checks=args.flip_checks,
            regime_draws=args.regime_draws, optimizer=args.optimizer,
        )
        if free is not None:
            config = dataclasses.replace(config, free=free)
        if args.moments is not None:
            from estimation.msm.config import moment_subset

            config = dataclasses.replace(config, moments=moment_subset(args.moments, config.free))
    out = default_out(args, "calibrate")
    with tables.CalibrationProgress(config.max_iter, quiet=args.quiet) as progress:
        result = calibrate(config, out=out, resume=args.resume, force=args.force, progress=progress)
    if not args.quiet:
        tables.calibration_report(result)
    for warning in result.warnings:
        print(f"levelfield calibrate: warning: {warning}", file=sys.stderr)
    total = result.timing.get("total", {})
    split = (f"; {total['compile_s']:.0f} s tracing and compiling, {total['run_s']:.0f} s computing"
             if total else "")
    tables.console.print(f"Results in {Path(out).absolute()} ({result.seconds:.0f} s{split}).")
    return 0


