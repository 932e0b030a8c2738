"""The ``levelfield`` command line.

Every subcommand validates its options before any heavy work; bad input prints one line,
``levelfield <command>: error: <what is wrong and what is allowed>``, and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from estimation.errors import ConfigError, EstimationError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of usage plus error."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_assignments(items: Sequence[str]) -> dict[str, float]:
    """``["alpha=0.5", "xi=0.2"]`` -> ``{"alpha": 0.5, "xi": 0.2}``, names checked against the model.

    Raises:
        ConfigError: malformed item, unknown name, repeated name, or a value that is not a number.
    """
    from jaxmodel import PARAM_NAMES

    out: dict[str, float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name or not text.strip():
            raise ConfigError(f"--set {item!r} must look like NAME=VALUE, e.g. --set xi=0.2")
        if name not in PARAM_NAMES:
            raise ConfigError(f"--set {name}: unknown parameter; known: {', '.join(PARAM_NAMES)}")
        if name in out:
            raise ConfigError(f"--set {name} is given twice")
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"--set {name}={text!r}: the value must be a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"--set {name}={text}: the value must be finite")
        out[name] = value
    return out


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{value} must be in [0, 2^32)")
    return value


def add_model_options(parser: argparse.ArgumentParser, agents: int = 100_000, firms: int = 500) -> None:
    """Options shared by every command that simulates the model."""
    from jaxmodel import PRECISIONS, SPECS

    group = parser.add_argument_group("model")
    group.add_argument(
        "--set", dest="assignments", action="append", default=[], metavar="NAME=VALUE",
        help="change one parameter of the baseline (repeatable), e.g. --set xi=0.3 --set eta1=1",
    )
    group.add_argument("--agents", type=_positive_int, default=agents, metavar="N",
                       help=f"simulated workers N, a multiple of --firms and --occupations (default {agents:_})")
    group.add_argument("--firms", type=_positive_int, default=firms, metavar="F",
                       help=f"firms F of equal size N/F (default {firms})")
    group.add_argument("--occupations", type=_positive_int, default=10, metavar="O",
                       help="occupations O of equal size N/O (default 10)")
    group.add_argument("--tasks", type=_positive_int, default=40, metavar="T", help="task grid size T (default 40)")
    group.add_argument("--spec", choices=SPECS, default="additive",
                       help="AI augmentation form S(h) (default additive)")
    group.add_argument("--precision", choices=PRECISIONS, default="float64",
                       help="floating-point precision (default float64; float32 for GPU throughput)")
    group.add_argument("--seed", type=_seed, default=0, metavar="K", help="PRNG seed of the draws (default 0)")


def model_inputs(args: argparse.Namespace):
    """(params, settings) from the parsed model options, validated before any computation."""
    from jaxmodel import Settings, baseline

    settings = Settings(
        n_agents=args.agents,
        n_firms=args.firms,
        n_tasks=args.tasks,
        n_occupations=args.occupations,
        spec=args.spec,
        precision=args.precision,
    )
    params = baseline().replace(**parse_assignments(args.assignments))
    return params, settings


def _run_simulate(args: argparse.Namespace) -> int:
    from estimation import display

    params, settings = model_inputs(args)
    import jax

    import jaxmodel

    start = time.perf_counter()
    with display.status(f"Simulating N={settings.n_agents:_} agents, F={settings.n_firms} firms", quiet=args.json):
        draws = jaxmodel.make_draws(args.seed, settings)
        result = jax.block_until_ready(jaxmodel.moments(params, draws, settings))
    elapsed = time.perf_counter() - start
    values = result.to_dict()
    warnings = model_warnings(values, settings)
    for warning in warnings:
        print(f"levelfield simulate: warning: {warning}", file=sys.stderr)
    if args.json:
        payload = {
            **values,
            "warnings": warnings,
            "seed": args.seed,
            "settings": {"n_agents": settings.n_agents, "n_firms": settings.n_firms,
                         "n_tasks": settings.n_tasks, "n_occupations": settings.n_occupations,
                         "spec": settings.spec, "precision": settings.precision},
            "params": {k: float(v) for k, v in params.to_dict().items()},
        }
        from estimation.runfiles import to_jsonable

        print(json.dumps(to_jsonable(payload), indent=2))
    else:
        display.moments_report(values, settings, args.seed, changed=parse_assignments(args.assignments),
                               seconds=elapsed)
    return 0


def model_warnings(values: dict, settings) -> list[str]:
    """What is wrong with one solution of the model: moments that are not finite, and a fixed
    point that stopped at ``fp_max_iter`` above its tolerance (with its residual)."""
    from jaxmodel import MOMENT_NAMES

    out = []
    bad = [n for n in MOMENT_NAMES if not math.isfinite(values[n])]
    if bad:
        out.append(f"moment(s) {', '.join(bad)} are not finite at these parameters (extreme values inside the "
                   "domain); move the parameters towards the baseline")
    for state in ("before", "after"):
        residual, iterations = values[f"fp_residual_{state}"], int(values[f"fp_iterations_{state}"])
        if not math.isfinite(residual):
            out.append(f"the education fixed point {state} AI is not finite (its residual is {residual})")
        elif residual > settings.tol:
            out.append(f"the education fixed point {state} AI did not converge: residual {residual:.2e} after "
                       f"{iterations} iterations (tolerance {settings.tol:.0e}, fp_max_iter {settings.fp_max_iter}); "
                       "its moments are approximate")
    return out


def _run_calibrate(args: argparse.Namespace) -> int:
    import dataclasses as dc
    import json as _json

    from estimation import display
    from estimation.calibration import CalibrationConfig, calibrate
    from estimation.parameters import parse_bound

    if args.replay is not None:
        try:
            saved = _json.loads(Path(args.replay).read_text("utf-8"))
            config = CalibrationConfig.from_dict(saved["config"])
        except FileNotFoundError:
            raise ConfigError(f"--replay {args.replay}: file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"--replay {args.replay}: a folder; pass the report.json inside it") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"--replay {args.replay}: not a levelfield report.json ({exc})") from None
        from estimation.calibration import check_inputs_unchanged, versions

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
        )
        if free is not None:
            config = dc.replace(config, free=free)
    out = args.out or Path("runs") / time.strftime("calibrate-%Y%m%d-%H%M%S")
    with display.CalibrationProgress(config.max_iter, quiet=args.quiet) as progress:
        result = calibrate(config, out=out, resume=args.resume, force=args.force, progress=progress)
    if not args.quiet:
        display.calibration_report(result)
    for warning in result.warnings:
        print(f"levelfield calibrate: warning: {warning}", file=sys.stderr)
    total = result.timing.get("total", {})
    split = (f"; {total['compile_s']:.0f} s tracing and compiling, {total['run_s']:.0f} s computing"
             if total else "")
    display.console.print(f"Results in {Path(out).absolute()} ({result.seconds:.0f} s{split}).")
    return 0


def _base_and_settings(args: argparse.Namespace):
    """(params, settings, seed, origin) from --from DIR or from the model options."""
    from jaxmodel import Settings

    if getattr(args, "from_dir", None) is not None:
        from estimation.regimes import base_from_report

        params, config = base_from_report(args.from_dir)
        if args.assignments:
            params = params.replace(**parse_assignments(args.assignments))
        settings = Settings(
            n_agents=config["n_agents"], n_firms=config["n_firms"], n_occupations=config["n_occupations"],
            n_tasks=config["n_tasks"], spec=config["spec"], precision=config["precision"],
            fp_damping=config["fp_damping"], fp_solver=config.get("fp_solver", "anderson"),
        )
        return params, settings, int(config["seed"]), f"calibration in {args.from_dir}"
    params, settings = model_inputs(args)
    return params, settings, args.seed, "baseline" + (" with --set changes" if args.assignments else "")


def _run_regimes(args: argparse.Namespace) -> int:
    import jax
    import numpy as np
    import pandas as pd
    from rich.table import Table

    import jaxmodel
    from estimation import display, regimes
    from estimation.results import _csv
    from estimation.runfiles import RunFolder, atomic_write_bytes, atomic_write_json, to_jsonable

    if args.grid < 3:
        raise ConfigError(f"--grid {args.grid} must be at least 3")
    params, settings, seed, origin = _base_and_settings(args)
    out = args.out or Path("runs") / time.strftime("regimes-%Y%m%d-%H%M%S")
    folder = RunFolder(out)
    folder.prepare({"command": "regimes", "grid": args.grid, "origin": origin}, resume=False, force=args.force)
    draws = jaxmodel.make_draws(jax.random.key(seed), settings)
    xi = np.linspace(0.0, 0.8, args.grid)
    gini_K = np.linspace(0.0, 0.95, args.grid)
    eta1 = np.linspace(0.0, 2.0, args.grid)
    start = time.perf_counter()
    boundaries = []
    with display.progress_console.status("Boundary Delta Gini = 0") as status:
        for name, eta in regimes.STRUCTURES.items():
            boundaries.append(regimes.find_boundary(params, draws, settings, xi, name, eta,
                                                    progress=lambda text: status.update(text)))
        status.update(f"Map of Delta Gini over (xi, Gini(K)), {args.grid}x{args.grid}")
        plane = regimes.regime_map(params, draws, settings, {"xi": xi, "gini_K": gini_K})
        status.update(f"Map of Delta Gini over (eta1, xi), {args.grid}x{args.grid}")
        tech = regimes.regime_map(params, draws, settings, {"eta1": eta1, "xi": xi})

    stage = folder.staging
    stage.mkdir(parents=True, exist_ok=True)
    records = [r for b in boundaries for r in b.records()]
    _csv(pd.DataFrame(records), stage / "boundary.csv", index=False)
    g1, g2 = np.meshgrid(xi, gini_K, indexing="ij")
    _csv(pd.DataFrame({"xi": g1.ravel(), "gini_K": g2.ravel(), "delta_gini": plane.ravel()}),
         stage / "map_xi_gini_K.csv", index=False)
    e1, x2 = np.meshgrid(eta1, xi, indexing="ij")
    _csv(pd.DataFrame({"eta1": e1.ravel(), "xi": x2.ravel(), "delta_gini": tech.ravel()}),
         stage / "map_eta1_xi.csv", index=False)
    atomic_write_bytes(stage / "regime_map.png",
                       regimes.regime_map_figure(xi, gini_K, plane, boundaries, (float(params.xi), float(params.gini_K))))
    atomic_write_bytes(stage / "technology_map.png", regimes.technology_map_figure(eta1, xi, tech))
    atomic_write_json(stage / "regimes.json", to_jsonable({
        "origin": origin, "seed": seed, "settings": dataclasses_asdict(settings),
        "params": {k: float(v) for k, v in params.to_dict().items()}, "structures": regimes.STRUCTURES,
        "boundary": records, "f_tol": regimes.F_TOL, "seconds": time.perf_counter() - start,
    }))
    folder.publish()

    for b in boundaries:
        table = Table(title=f"Boundary Delta Gini = 0, {b.structure} AI (eta0={b.eta0:g}, eta1={b.eta1:g}); "
                            "slope = dGini(K)*/dxi by the implicit function theorem")
        for col in ("xi", "Gini(K)*", "|dGini|", "slope", "concentrating when"):
            table.add_column(col, justify="left" if col == "concentrating when" else "right")
        for r in b.records():
            if r["status"] == "converged":
                side = "Gini(K) > Gini(K)*" if r["concentrating_side"] == "above" else "Gini(K) < Gini(K)*"
                table.add_row(f"{r['xi']:.3f}", f"{r['gini_K']:.4f}", f"{abs(r['delta_gini_residual']):.0e}",
                              f"{r['slope_dginiK_dxi']:+.3f}", side)
            else:
                regime = "always" if "> 0" in r["status"] else "never"
                table.add_row(f"{r['xi']:.3f}", "-", "-", "-", f"{regime} (no crossing in [0, 0.98])")
        display.console.print(table)
    display.console.print(f"Parameters: {origin}. Results in {Path(out).absolute()}.")
    return 0


def dataclasses_asdict(obj) -> dict:
    import dataclasses

    return dataclasses.asdict(obj)


def _run_scenario(args: argparse.Namespace) -> int:
    import jax
    import pandas as pd
    from rich.table import Table

    import jaxmodel
    from estimation import display, regimes
    from jaxmodel import MOMENT_NAMES

    names = list(regimes.SCENARIOS) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in regimes.SCENARIOS]
    if unknown:
        raise ConfigError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(regimes.SCENARIOS)}, or all")
    params, settings, seed, origin = _base_and_settings(args)
    if args.csv is not None and args.csv.exists() and not args.force:
        raise ConfigError(f"--csv {args.csv} already exists; pass --force to replace it")
    draws = jaxmodel.make_draws(jax.random.key(seed), settings)
    with display.status(f"Solving {len(names)} scenario(s) and the base", quiet=args.json):
        rows = regimes.run_scenarios(params, draws, settings, names)
    if args.csv is not None:
        from estimation.runfiles import atomic_write_text

        frame = pd.DataFrame([{k: (str(v) if isinstance(v, dict) else v) for k, v in r.items()} for r in rows])
        atomic_write_text(args.csv, frame.to_csv(index=False))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        table = Table(title=f"{r['scenario']}: {r['meaning']}")
        for col in ("moment", "base", "scenario", "change"):
            table.add_column(col, justify="left" if col == "moment" else "right")
        for key in MOMENT_NAMES + ("gini_before", "gini_after", "capital_share_after", "college_share_after"):
            table.add_row(key, f"{r[key + '_base']:+.5f}", f"{r[key + '_scenario']:+.5f}", f"{r[key + '_change']:+.5f}")
        table.add_row("regime", r["regime_base"], r["regime_scenario"], "")
        display.console.print(table)
    display.console.print(f"Base parameters: {origin}.")
    return 0


def _run_oews(args: argparse.Namespace) -> int:
    import pandas as pd
    from rich.table import Table

    from estimation import display, exposure, occupations, oews
    from estimation.results import _csv
    from estimation.runfiles import RunFolder, atomic_write_bytes, atomic_write_json, to_jsonable

    if not args.data.is_dir():
        raise ConfigError(f"--data {args.data}: not a folder (point it at your BLS and exposure downloads)")
    measures = args.measure or list(exposure.MEASURES)
    unknown = [m for m in measures if m not in exposure.MEASURES]
    if unknown:
        raise ConfigError(f"--measure {', '.join(unknown)}: unknown; known: {', '.join(exposure.MEASURES)}")
    if args.from_year >= args.to_year:
        raise ConfigError(f"--from-year {args.from_year} must be before --to-year {args.to_year}")
    files = oews.find_oews_files(args.data)
    for year in (args.from_year, args.to_year):
        if year not in files:
            found = ", ".join(map(str, sorted(files))) or "none"
            raise ConfigError(f"no OEWS national file for {year} under {args.data} (found years: {found}); "
                              "BLS names it national_M<year>_dl.xlsx or oesm<yy>nat.zip")
    out = args.out or Path("runs") / time.strftime("oews-%Y%m%d-%H%M%S")
    folder = RunFolder(out)
    folder.check(resume=False, force=args.force)
    with display.status("Reading OEWS files and exposure measures"):
        # Every input is read (and refused if malformed) before the results folder is made.
        first, second = oews.read_oews(files[args.from_year]), oews.read_oews(files[args.to_year])
        panel, grouping = oews.harmonise(first, second)
        values = exposure.load_measures(args.data, measures)
    folder.prepare({"command": "oews"}, resume=False, force=args.force)
    with display.status("Occupation regressions"):
        grouped = exposure.to_groups(values, panel, second)
        changes = occupations.outcome_changes(panel, args.from_year, args.to_year)
        table = occupations.regression_table(changes, grouped, fixed_effects=False)
        if args.fe:
            table = pd.concat([table, occupations.regression_table(changes, grouped, fixed_effects=True)])
    cover = exposure.coverage(grouped, panel, [args.from_year, args.to_year])
    demo = demo_table = None
    if not args.no_model:
        import jax

        import jaxmodel

        with display.status("The same regressions on occupations simulated from the model"):
            demo = occupations.demonstration(
                jaxmodel.baseline(), jaxmodel.Settings(n_agents=100_000, n_firms=500, n_occupations=20),
                jax.random.key(0))
        demo_table = _demonstration_table(demo)
    stage = folder.staging
    stage.mkdir(parents=True, exist_ok=True)
    _csv(table, stage / "regressions.csv", index=False)
    _csv(cover, stage / "coverage.csv", index=False)
    _csv(panel.join(grouped).join(changes.drop(columns=["weight", "major"])), stage / "occupations.csv", index=True)
    for outcome in ("d_log_median_wage", "d_log_p90_p10"):
        atomic_write_bytes(stage / f"binned_{outcome}.png",
                           occupations.binned_scatter_figure(changes, grouped, table, outcome,
                                                             f"{occupations.OUTCOMES[outcome]}, {args.from_year}-{args.to_year}"))
    if demo is not None:
        demo_rows = [{"pair": r["pair"], "regime": r["side"], "changes": str(r["changes"]),
                      **{f"model_{k}": r["moments"][k] for k in ("gini_change", "cv_change", "between_firm_share_change")},
                      **{f"{o}_coef": t["coef"] for o, t in r["regressions"].items()},
                      **{f"{o}_se": t["se"] for o, t in r["regressions"].items()}} for r in demo]
        _csv(pd.DataFrame(demo_rows), stage / "model_demonstration.csv", index=False)
    atomic_write_json(stage / "report.json", to_jsonable({
        "years": [args.from_year, args.to_year], "files": {str(y): str(files[y]) for y in (args.from_year, args.to_year)},
        "loader": [first.report, second.report], "harmonisation": grouping, "coverage": cover.to_dict("records"),
        "regressions": table.to_dict("records"),
    }))
    folder.publish()

    loader = Table(title="OEWS files read")
    for col in ("year", "rows", "detailed kept", "set aside (total/major/minor/broad)", "special cells in detailed rows"):
        loader.add_column(col)
    for rep in (first.report, second.report):
        aside = "/".join(str(rep["set_aside"][g]) for g in ("total", "major", "minor", "broad"))
        specials = sum(sum(v.values()) for v in rep["special_cells"].values())
        loader.add_row(str(rep["year"]), str(rep["rows"]), str(rep["detailed_kept"]), aside, str(specials))
    display.console.print(loader)
    display.console.print(
        f"Harmonised occupations: {grouping['occupations']} ({grouping['common_codes']} identical codes, "
        f"{len(grouping['harmonised_groups'])} groups formed from hybrid or split codes; unmatched: "
        f"{len(grouping['unmatched']['first'])} codes of {args.from_year}, {len(grouping['unmatched']['second'])} "
        f"of {args.to_year}).")
    cov = Table(title="Coverage of the exposure measures (harmonised occupations, employment share)")
    for col in ("measure", str(args.from_year), str(args.to_year)):
        cov.add_column(col, justify="left" if col == "measure" else "right")
    for name in measures:
        rows = cover[cover["measure"] == name]
        cov.add_row(name, *[f"{int(r.occupations)}/{int(r.of)}, {100 * r.employment_share:.1f}%" for r in rows.itertuples()])
    display.console.print(cov)
    for fe in sorted(set(table["fixed_effects"])):
        reg = Table(title=f"Employment-weighted regressions on standardised exposure, {args.from_year}-{args.to_year}"
                          + (" (major-group fixed effects)" if fe else "") + "; coefficient (HC1 se)")
        reg.add_column("measure")
        for outcome in occupations.OUTCOMES:
            reg.add_column(outcome, justify="right")
        for name in measures:
            part = table[(table["measure"] == name) & (table["fixed_effects"] == fe)].set_index("outcome")
            reg.add_row(name, *[f"{part.loc[o, 'coef']:+.4f} ({part.loc[o, 'se']:.4f})" for o in occupations.OUTCOMES])
        display.console.print(reg)
    if demo is not None:
        display.console.print(demo_table)
        for line in _demonstration_summary(demo):
            display.console.print(line)
    display.console.print(f"Results in {Path(out).absolute()}.")
    return 0


def _demonstration_table(records):
    from rich.table import Table

    table = Table(title="The same regressions on occupations simulated from the model: coefficient on "
                        "standardised exposure (SEs in model_demonstration.csv)")
    for col in ("pair", "regime", "m6 dGini", "m1 CV", "m5 betw.", "dlog median", "dlog mean", "dlog p90/p10"):
        table.add_column(col, justify="left" if col in ("pair", "regime") else "right")
    for r in records:
        m = r["moments"]
        table.add_row(r["pair"], r["side"], f"{m['gini_change']:+.4f}", f"{m['cv_change']:+.3f}",
                      f"{m['between_firm_share_change']:+.4f}", *[f"{t['coef']:+.4f}" for t in r["regressions"].values()])
    return table


def _demonstration_summary(records) -> list[str]:
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


def _run_panel_power(args: argparse.Namespace) -> int:
    import dataclasses as dc

    import jax
    import numpy as np
    import pandas as pd
    from rich.table import Table

    from estimation import display, panel
    from estimation.results import _csv
    from estimation.runfiles import RunFolder, atomic_write_bytes, atomic_write_json, to_jsonable

    if args.reps < 20:
        raise ConfigError(f"--reps {args.reps} must be at least 20 (power is a share of replications)")
    sizes = sorted(set(args.sizes)) if args.sizes else [int(x) for x in np.unique(np.geomspace(10, 10240, 11).round())]
    params, settings, seed, origin = _base_and_settings(args)
    out = args.out or Path("runs") / time.strftime("panel-power-%Y%m%d-%H%M%S")
    folder = RunFolder(out)
    folder.prepare({"command": "panel-power"}, resume=False, force=args.force)
    with display.status("Effects from the model, then simulated panels"):
        design = panel.design_from_model(params, settings, jax.random.key(seed))
        curves = {h: panel.power_curve(h, design, sizes, args.reps, seed) for h in panel.HYPOTHESES}
        null = dc.replace(design, effect_scale=0.0)
        sizes_check = [sizes[len(sizes) // 2], sizes[-1]]
        size = {h: panel.power_curve(h, null, sizes_check, args.reps, seed + 1) for h in panel.HYPOTHESES}
    needed = {h: panel.size_for_power(sizes, curves[h]) for h in panel.HYPOTHESES}
    stage = folder.staging
    stage.mkdir(parents=True, exist_ok=True)
    rows = [{"hypothesis": h, "n": n, "power": p} for h in panel.HYPOTHESES for n, p in zip(sizes, curves[h])]
    _csv(pd.DataFrame(rows), stage / "power.csv", index=False)
    atomic_write_bytes(stage / "power.png", panel.power_figure(sizes, curves, needed))
    atomic_write_json(stage / "panel_power.json", to_jsonable({
        "origin": origin, "design": dc.asdict(design), "reps": args.reps, "sizes": sizes,
        "power": {h: curves[h] for h in curves}, "n_for_80_percent": needed,
        "rejections_without_effect": {h: dict(zip(map(str, sizes_check), size[h])) for h in size},
    }))
    folder.publish()
    table = Table(title=f"Panel size for 80% power (one-sided 5% tests, {args.reps} replications per size)")
    for col in ("hypothesis", "what it tests", "n for 80%", "rejections with no effect"):
        table.add_column(col, justify="left" if col in ("hypothesis", "what it tests") else "right")
    for h in panel.HYPOTHESES:
        n = "not within the grid" if not np.isfinite(needed[h]) else f"{needed[h]:,.0f}"
        table.add_row(h, panel.DESCRIPTIONS[h], n, ", ".join(f"{100 * x:.1f}%" for x in size[h]))
    display.console.print(table)
    display.console.print(f"Effects from the model ({origin}): college premium change {design.premium_change:+.3f}, "
                          f"firm slope {design.firm_slope:+.4f}; results in {Path(out).absolute()}.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="levelfield",
        description=(
            "levelfield: the model of 'When AI Levels the Playing Field' (Chen & Meng, 2026) in JAX. "
            "AI compresses skill differences within tasks yet can widen inequality by moving value to "
            "concentrated complementary assets; these commands simulate, estimate and question it."
        ),
        epilog=(
            "Compiled programs are kept in a persistent cache (~/.cache/levelfield/xla, or "
            "$LEVELFIELD_CACHE_DIR; LEVELFIELD_CACHE_DIR=off turns it off), so a second run of the same "
            "model size starts faster with the same results. Bad input exits with code 2."
        ),
    )
    try:
        from importlib.metadata import version

        parser.add_argument("--version", action="version", version=f"levelfield {version('levelfield')}")
    except Exception:  # pragma: no cover - not installed (run from a source tree)
        pass
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    simulate = commands.add_parser(
        "simulate",
        help="solve the economy before and after AI and print the six moments",
        description=(
            "Solve the economy before AI (A = 0) and after (A = A1) on the same draws and print the "
            "six moments of MODEL.md section 5 (m1 cv_change .. m6 gini_change), diagnostics of both "
            "states and the regime (concentrating when Delta Gini > 0)."
        ),
    )
    add_model_options(simulate)
    simulate.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    simulate.set_defaults(run=_run_simulate)

    calib = commands.add_parser(
        "calibrate",
        help="estimate the model by the method of simulated moments (the main job)",
        description=(
            "Estimate the free parameters by the method of simulated moments (MODEL.md section 7): "
            "minimise g'Wg with g = m(theta) - m_data by Levenberg-Marquardt with exact autodiff Jacobians from "
            "several starts, then report standard errors (with simulation noise), the J test, "
            "Andrews-Gentzkow-Shapiro sensitivity, local identification and what pins the sign of "
            "Delta Gini. Results go to --out (never overwritten without --force); an interrupted run "
            "continues with --resume."
        ),
    )
    est = calib.add_argument_group("estimation")
    est.add_argument("--targets", metavar="FILE",
                     help="targets as CSV (moment,value,se,source) or TOML ([[target]]); default: the shipped "
                          "MODEL.md scenario")
    est.add_argument("--free", action="append", metavar="NAMES",
                     help="free parameters, comma-separated or repeated (default alpha,sigma_nu,sigma,eta1,xi)")
    est.add_argument("--bound", action="append", default=[], metavar="NAME=LOW:HIGH",
                     help="bounds of a free parameter (default: its domain), e.g. --bound sigma=0.2:10")
    est.add_argument("--weights", default="diagonal", metavar="KIND",
                     help="diagonal (1/se^2, default), identity, optimal (two-step) or a CSV matrix file")
    est.add_argument("--starts", type=_positive_int, default=3, metavar="S", help="starting points (default 3)")
    est.add_argument("--max-iter", type=_positive_int, default=100, metavar="K",
                     help="most optimiser iterations (evaluations of the moments and their Jacobian) per start (default 100)")
    est.add_argument("--sim-sets", type=_positive_int, default=20, metavar="R",
                     help="independent draw sets for the simulation noise Omega_sim (default 20)")
    est.add_argument("--flip-checks", type=int, default=2, metavar="K",
                     help="closest Delta Gini sign flips to check by re-estimation (default 2)")
    est.add_argument("--fp-solver", choices=("anderson", "damped"), default="anderson",
                     help="solver of the education fixed point: anderson (default, accelerated in the space of "
                          "the aggregates Gamma depends on) or damped (MODEL.md's reference iteration); the same "
                          "fixed point to fp_tol either way")
    est.add_argument("--fp-damping", type=float, default=0.5, metavar="D",
                     help="damping in (0, 1] of the damped solver and of the Anderson solver's safeguard steps "
                          "(default 0.5, MODEL.md)")
    runs = calib.add_argument_group("results")
    runs.add_argument("--out", type=Path, metavar="DIR",
                      help="results folder (default runs/calibrate-<date>-<time>)")
    runs.add_argument("--resume", action="store_true", help="continue the interrupted run of --out")
    runs.add_argument("--force", action="store_true", help="replace an existing results folder")
    runs.add_argument("--replay", metavar="REPORT", help="repeat the run recorded in a report.json")
    runs.add_argument("--quiet", action="store_true", help="no progress bar and no tables")
    add_model_options(calib, agents=20_000, firms=100)
    calib.set_defaults(run=_run_calibrate)

    reg = commands.add_parser(
        "regimes",
        help="the boundary Delta Gini = 0 and maps of the two regimes",
        description=(
            "Find the boundary Delta Gini = 0 in the plane (xi, Gini(K)) for a commodity-leaning and a "
            "proprietary-leaning AI (safeguarded Newton with the autodiff derivative), its slope by the "
            "implicit function theorem, and maps of Delta Gini over (xi, Gini(K)) and (eta1, xi). "
            "Parameters from a calibration (--from DIR) or the baseline."
        ),
    )
    reg.add_argument("--from", dest="from_dir", type=Path, metavar="DIR",
                     help="a calibration's results folder: its estimates, settings and seed")
    reg.add_argument("--grid", type=_positive_int, default=10, metavar="N", help="grid points per axis (default 10)")
    reg.add_argument("--out", type=Path, metavar="DIR", help="results folder (default runs/regimes-<date>-<time>)")
    reg.add_argument("--force", action="store_true", help="replace an existing results folder")
    add_model_options(reg, agents=20_000, firms=100)
    reg.set_defaults(run=_run_regimes)

    scen = commands.add_parser(
        "scenario",
        help="counterfactual policy scenarios: every moment and the regime",
        description=(
            "Counterfactuals named by their policy meaning: stronger-rent-sharing (xi doubled), "
            "lower-asset-concentration (Gini(K) - 0.2), commoditised-ai (eta1 moved into eta0), "
            "open-asset-access (psi = 0). Prints the change in every moment and the regime, from the "
            "baseline or a calibration (--from DIR)."
        ),
    )
    scen.add_argument("names", nargs="+", metavar="NAME", help="scenario names, or all")
    scen.add_argument("--from", dest="from_dir", type=Path, metavar="DIR", help="a calibration's results folder")
    scen.add_argument("--csv", type=Path, metavar="FILE", help="also write the results as CSV")
    scen.add_argument("--force", action="store_true", help="replace an existing --csv file")
    scen.add_argument("--json", action="store_true", help="print JSON instead of tables")
    add_model_options(scen, agents=20_000, firms=100)
    scen.set_defaults(run=_run_scenario)

    oe = commands.add_parser(
        "oews",
        help="occupation-level regressions on real BLS OEWS data and AI-exposure measures",
        description=(
            "Read BLS OEWS national files as BLS publishes them (xlsx, csv or the zip), harmonise "
            "occupations across years (hybrid SOC codes of 2019-2020 grouped explicitly), join AI-exposure "
            "measures through BLS crosswalks, and regress changes in log median and mean wages, "
            "within-occupation log(p90/p10) and employment shares on exposure (employment-weighted, HC1 SEs)."
        ),
    )
    oe.add_argument("--data", type=Path, required=True, metavar="DIR",
                    help="folder with the OEWS national files, the exposure files and the BLS crosswalks")
    oe.add_argument("--measure", action="append", metavar="NAME", help="exposure measure (repeatable; default all)")
    oe.add_argument("--from-year", type=int, default=2019, metavar="YEAR", help="first year (default 2019)")
    oe.add_argument("--to-year", type=int, default=2023, metavar="YEAR", help="second year (default 2023)")
    oe.add_argument("--fe", action="store_true", help="also with major-group fixed effects")
    oe.add_argument("--no-model", action="store_true",
                    help="skip the demonstration on occupations simulated from the model")
    oe.add_argument("--out", type=Path, metavar="DIR", help="results folder (default runs/oews-<date>-<time>)")
    oe.add_argument("--force", action="store_true", help="replace an existing results folder")
    oe.set_defaults(run=_run_oews)

    pp = commands.add_parser(
        "panel-power",
        help="power of within-task panel tests of H1-H4 and the panel size each needs",
        description=(
            "Simulate the within-occupation, within-task panel that could test the model (workers x tasks "
            "x periods with AI use; applicants; firms), with effects from the model, and compute the power of "
            "one-sided 5% tests of H1-H4 by panel size, the size needed for 80% power, and the rejection "
            "rate with no effect."
        ),
    )
    pp.add_argument("--reps", type=_positive_int, default=200, metavar="R", help="replications per size (default 200)")
    pp.add_argument("--sizes", type=_positive_int, nargs="+", metavar="N", help="panel sizes (default 10 .. 10240)")
    pp.add_argument("--from", dest="from_dir", type=Path, metavar="DIR", help="a calibration's results folder")
    pp.add_argument("--out", type=Path, metavar="DIR", help="results folder (default runs/panel-power-<date>-<time>)")
    pp.add_argument("--force", action="store_true", help="replace an existing results folder")
    add_model_options(pp, agents=20_000, firms=100)
    pp.set_defaults(run=_run_panel_power)
    return parser


def compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache for the command line; returns its folder.

    Compiling the estimation's programs takes most of a small calibration (about 45 of 55 s at
    N = 2_000); with the cache, later runs of the same model size load them instead. The folder is
    ``$LEVELFIELD_CACHE_DIR``, else ``$JAX_COMPILATION_CACHE_DIR``, else
    ``~/.cache/levelfield/xla`` (``$XDG_CACHE_HOME`` respected); ``LEVELFIELD_CACHE_DIR=off`` turns
    it off. A cached program is the same executable, so results are identical with or without it.
    """
    import os

    choice = os.environ.get("LEVELFIELD_CACHE_DIR", "").strip()
    if choice.lower() in ("off", "0", "none", "false"):
        return None
    folder = choice or os.environ.get("JAX_COMPILATION_CACHE_DIR", "").strip()
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
        folder = str(Path(base) / "levelfield" / "xla")
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a cache that cannot be written is no reason to fail a run
    import jax

    from estimation import programs

    jax.config.update("jax_compilation_cache_dir", folder)
    # Every program, however quick to compile: a new process then compiles nothing it has seen.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    programs.set_folder(folder)  # and the estimator's lowered programs (no tracing either)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``levelfield`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from jaxmodel import ModelError

    compilation_cache()

    try:
        return args.run(args)
    except (ModelError, EstimationError) as exc:
        print(f"levelfield {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"levelfield {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
