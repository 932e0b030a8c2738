"""Optimisers compared on levelfield's calibration problems, in the manner of optimagic's benchmarking.

Each problem is an MSM criterion Q(theta) = g'Wg (shipped targets, diagonal weights 1/se^2, the
free set's search box as bounds) at N agents, started from the same scrambled-Sobol points
(``estimation.msm.parameters.starting_points``: the baseline, then Sobol over the middle 90% of
the box). The optimisers:

- ``lm``, ``lm-box``, ``lbfgs``, ``adam``: levelfield's optax loop (``estimation.msm.optimiser``), one start at a
  time (no pruning of dominated starts), on jaxmodel;
- ``scipy_trf``: ``scipy.optimize.least_squares(method="trf")`` on the residuals C'g and their exact
  Jacobian from ``optimiser.evaluate`` (the program the LM runs; warm-started like the LM);
- ``scipy_lbfgsb`` and ``nag_dfols``: optimagic's, on the NumPy port (``benchmarks/numpy_port.py``
  with jaxmodel's Anderson fixed point) of the same criterion, with optimagic's default numerical
  derivatives for L-BFGS-B.

Every run records its history of (evaluations, seconds, best criterion so far). An evaluation is
one model run of the optimiser's kind: the moments and their Jacobian for ``lm`` and
``scipy_trf``, Q and its reverse-mode gradient for ``lbfgs`` and ``adam``, the moments alone for the
port (L-BFGS-B's finite differences count). Compile time of the JAX programs is measured on a
warm-up run per problem and optimiser and reported apart; the timed runs compile nothing.

A start *solves* a problem when its best criterion comes within ``--rtol`` (relative) of the best
over all runs. The profile plot is optimagic's performance profile (Moré and Wild 2009, its
``profile_plot`` with ``normalize_runtime=True``): every (problem, start) is an instance, and the
curve of an optimiser is the share of instances it solves within a multiple of the fastest
optimiser's cost there. The convergence plot is optimagic's ``convergence_plot`` per problem: the
best criterion so far, normalised to 1 at the start and 0 at the best, the median over the starts
(the starts themselves faint). Both are drawn with matplotlib (plotly's PNG export needs kaleido).

    python benchmarks/bench_optimisers.py                       # 3 problems x 20 starts at N = 2x10^4
    python benchmarks/bench_optimisers.py --agents 2000 --starts 2 --problems default --optimizers lm scipy_trf
    python benchmarks/bench_optimisers.py --resume                # after an interruption: runs what is missing
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, environment, revision, write_json  # noqa: E402

#: The problems: free set and search bounds that replace the default box. "default" is the
#: calibration of ``levelfield calibrate`` (sigma_nu ends at its bound 0); "six" adds psi (the
#: README's six-parameter calibration: as many parameters as the six moments, the most that
#: ``validate`` accepts, so no seven-parameter problem); "bound" caps rent sharing at one half,
#: below the default's estimate (xi 0.67), so that xi ends at a bound too. (Freeing sigma_c,
#: sigma_eps, gamma, r_K, gini_K, tau, z_hi or eta0 beside the default five left each of them
#: inside its box at the best point found.)
PROBLEMS: dict[str, tuple[tuple[str, ...], dict]] = {
    "default": (("alpha", "sigma_nu", "sigma", "eta1", "xi"), {}),
    "six": (("alpha", "sigma_nu", "sigma", "eta1", "xi", "psi"), {}),
    "bound": (("alpha", "sigma_nu", "sigma", "eta1", "xi"), {"xi": (0.0, 0.5)}),
}
LOOP_OPTIMIZERS = ("lm", "lm-box", "lbfgs", "adam")
OPTIMIZERS = (*LOOP_OPTIMIZERS, "scipy_trf", "scipy_lbfgsb", "nag_dfols")
#: Each optimiser's budget. For the loop, max_iter counts evaluations (lm: one per iteration).
CAPS: dict[str, dict] = {
    "lm": {"max_iter": 100},
    "lm-box": {"max_iter": 100},
    "lbfgs": {"max_iter": 200},
    "adam": {"max_iter": 200},
    "scipy_trf": {"max_nfev": 100},
    "scipy_lbfgsb": {"stopping_maxiter": 100, "stopping_maxfun": 100},
    "nag_dfols": {"stopping_maxfun": 200},
}
#: What each optimiser is, for the JSON.
DESCRIPTIONS = {
    "lm": "levelfield: bounded Levenberg-Marquardt with the NL2SOL secant term, exact forward-mode Jacobians (jaxmodel); "
          "steps keep off the bounds until one binds (affine-scaling term, stepped-back box)",
    "lm-box": "levelfield: the same with the box-only step, straight onto a bound the linear model points at "
              "(levelfield's lm until 2026-12-04)",
    "lbfgs": "levelfield: optax.lbfgs with its zoom line search on the unconstrained scale, reverse-mode gradients (jaxmodel)",
    "adam": "levelfield: optax.adam on the unconstrained scale, reverse-mode gradients, the best point kept (jaxmodel)",
    "scipy_trf": "scipy.optimize.least_squares(method='trf') with levelfield's exact Jacobian (optimiser.evaluate, jaxmodel)",
    "scipy_lbfgsb": "optimagic scipy_lbfgsb with optimagic's default numerical derivative (central differences), NumPy port",
    "nag_dfols": "optimagic nag_dfols (DFO-LS, derivative-free least squares), NumPy port",
}
#: optimagic's scaling of the parameters: DFO-LS's first trust region (0.1 max(|x0|, 1)) must fit
#: twice into the narrowest box, which it does not on the natural scale (sigma up to 10, xi in
#: [0, 1]): nag_dfols works on the box mapped to [0, 1]; L-BFGS-B as a user calls it, unscaled.
SCALING = {"scipy_lbfgsb": False, "nag_dfols": {"method": "bounds"}}
#: Stopping rules of the loop (``optimiser.Tolerances``' defaults) and scipy's trf.
TOLERANCES = {"gtol": 1e-6, "ftol": 1e-10, "patience": 3}
TRF_TOLERANCES = {"ftol": 1e-10, "xtol": 1e-10, "gtol": 1e-10}
SOLVED_RTOL = 1e-6


@dataclasses.dataclass
class Setup:
    """One benchmark problem: its free set, levelfield's Problem and the NumPy port's inputs."""

    name: str
    free: object  # estimation.msm.parameters.FreeParameters
    base: object  # jaxmodel.Params
    problem: object  # estimation.msm.optimiser.Problem
    targets: np.ndarray  # (6,)
    factor: np.ndarray  # (6, 6) C with W = C C'
    port: tuple  # numpy_port's (params, draws, settings)

    @property
    def lower(self) -> np.ndarray:
        return np.asarray(self.free.lower)

    @property
    def upper(self) -> np.ndarray:
        return np.asarray(self.free.upper)

    def residuals(self, moments: np.ndarray) -> np.ndarray:
        """r = C'(m - m_data), so that |r|^2 = g'Wg."""
        return self.factor.T @ (np.asarray(moments) - self.targets)

    def port_moments(self, theta: np.ndarray) -> np.ndarray:
        params, draws, settings = self.port
        from benchmarks import numpy_port

        return numpy_port.vector({**params, **dict(zip(self.free.names, map(float, theta)))}, draws, settings)


def make_setup(name: str, n_agents: int, seed: int) -> Setup:
    """The problem ``name`` at N agents (default firms), draws from ``seed``."""
    from benchmarks import numpy_port
    from estimation.msm.calibrate import _problem
    from estimation.msm.config import CalibrationConfig, validate

    free, bounds = PROBLEMS[name]
    config = CalibrationConfig(n_agents=n_agents, free=free, bounds=bounds, seed=seed)
    inputs = validate(config)
    problem = _problem(config, inputs)
    settings = inputs.settings.replace(fp_solver="anderson")
    return Setup(name=name, free=inputs.free, base=inputs.base, problem=problem,
                 targets=np.asarray(problem.targets), factor=np.linalg.cholesky(np.asarray(problem.weights)),
                 port=numpy_port.from_jax(inputs.base, problem.draws, settings))


class History:
    """A run's history: (evaluations, seconds since the start, best criterion so far), and the
    best point."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.evaluations: list[int] = []
        self.seconds: list[float] = []
        self.criterion: list[float] = []
        self.theta: np.ndarray | None = None

    @property
    def best(self) -> float:
        return self.criterion[-1] if self.criterion else math.inf

    def add(self, evaluations: int, value: float, theta) -> None:
        """Record the state after ``evaluations`` evaluations, the last of which gave ``value`` at
        ``theta`` (non-finite values are never a best; nothing is recorded before the first finite one)."""
        if math.isfinite(value) and value < self.best:
            self.theta = np.array(theta, dtype=float)
        best = min(self.best, value) if math.isfinite(value) else self.best
        if math.isfinite(best):
            self.evaluations.append(int(evaluations))
            self.seconds.append(time.perf_counter() - self.started)
            self.criterion.append(float(best))

    def to_dict(self) -> dict:
        return {"evaluations": self.evaluations, "seconds": self.seconds, "criterion": self.criterion}


def _run_record(history: History, evaluations: int, status: str) -> dict:
    """What a run leaves: its best criterion and point, its cost, how it ended and its history."""
    theta = [] if history.theta is None else [float(t) for t in history.theta]
    return {"criterion": history.best, "theta": theta, "evaluations": int(evaluations),
            "seconds": time.perf_counter() - history.started, "status": status, "history": history.to_dict()}


def _failure(error: Exception) -> str:
    """The status of a run whose optimiser raised: its best point so far stands as its result."""
    return f"failed: {type(error).__name__}: {error}"


# --- The optimisers ------------------------------------------------------------------------------


def _multistart(name: str):
    from estimation.msm import optimiser

    tol = optimiser.Tolerances(max_iter=CAPS[name]["max_iter"], **TOLERANCES)
    return optimiser.Multistart(optimizer=name, tol=tol, lanes=optimiser.default_lanes())


def run_loop(name: str, setup: Setup, theta0: np.ndarray) -> dict:
    """levelfield's optax loop ``name`` from theta0, one start, no pruning."""
    from estimation.msm import optimiser
    from estimation.msm.status import Status

    how = _multistart(name)
    history = History()

    def record(batch: optimiser.Batch) -> None:
        history.add(int(batch.state.lane.evaluations[0]), float(batch.values[0]), batch.theta[0])

    state = optimiser.new_batch(theta0[None], setup.problem, how, setup.free, prune=False)
    record(optimiser.Batch(state, how))
    state = optimiser.run_batch(state, setup.problem, how, on_iteration=record)
    lane = state.lane
    return _run_record(history, int(lane.evaluations[0]), Status.of_code(int(lane.status[0])).value)


def run_trf(setup: Setup, theta0: np.ndarray) -> dict:
    """scipy's trf on r = C'g with levelfield's exact Jacobian (``optimiser.evaluate``), each
    evaluation warm-started from the last finite one, as the LM's from its last accepted point."""
    from scipy.optimize import least_squares

    from estimation.msm import optimiser
    from jaxmodel.outcomes import cold

    history = History()
    warm = np.asarray(cold(setup.problem.settings))
    last: dict = {}

    def evaluation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nonlocal warm
        if last.get("x") is None or not np.array_equal(last["x"], x):
            result = optimiser.evaluate(x, warm, setup.problem)
            r, J = setup.residuals(result.moments), setup.factor.T @ result.jacobian
            if np.isfinite(r).all():
                warm = result.aggregates
            last.update(x=np.array(x), r=r, J=J, count=last.get("count", 0) + 1)
            history.add(last["count"], float(r @ r) if np.isfinite(r).all() else math.inf, x)
        return last["r"], last["J"]

    try:
        status = least_squares(lambda x: evaluation(x)[0], theta0, jac=lambda x: evaluation(x)[1],
                               bounds=(setup.lower, setup.upper), method="trf",
                               max_nfev=CAPS["scipy_trf"]["max_nfev"], **TRF_TOLERANCES).message
    except (ValueError, np.linalg.LinAlgError) as error:
        status = _failure(error)
    return _run_record(history, last.get("count", 0), status)


def run_optimagic(algorithm: str, setup: Setup, theta0: np.ndarray) -> dict:
    """optimagic's ``algorithm`` on the NumPy port's residuals C'g (a least-squares function)."""
    import optimagic as om

    history = History()
    count = 0

    def residuals(x: np.ndarray) -> np.ndarray:
        nonlocal count
        r = setup.residuals(setup.port_moments(x))
        count += 1
        history.add(count, float(r @ r) if np.isfinite(r).all() else math.inf, x)
        return r

    try:
        status = str(om.minimize(om.mark.least_squares(residuals), params=np.asarray(theta0, dtype=float),
                                 algorithm=algorithm, bounds=om.Bounds(lower=setup.lower, upper=setup.upper),
                                 algo_options=CAPS[algorithm], scaling=SCALING[algorithm]).message)
    except Exception as error:  # noqa: BLE001 - optimagic and the solvers it wraps raise many kinds
        status = _failure(error)
    return _run_record(history, count, status)


def runner(name: str) -> Callable[[Setup, np.ndarray], dict]:
    """The function that runs optimiser ``name`` from one start."""
    if name in LOOP_OPTIMIZERS:
        return lambda setup, theta0: run_loop(name, setup, theta0)
    if name == "scipy_trf":
        return run_trf
    return lambda setup, theta0: run_optimagic(name, setup, theta0)


def compile_jax(name: str, setup: Setup, theta0: np.ndarray) -> dict:
    """Trace and compile the JAX programs optimiser ``name`` runs (a warm-up: the start program and
    one step of the loop, or one ``evaluate``), timed apart; nothing for the port's optimisers."""
    from estimation.msm import optimiser
    from estimation.msm.timing import StageClock
    from jaxmodel.outcomes import cold

    with StageClock() as clock:
        clock.switch("warm-up")
        if name in LOOP_OPTIMIZERS:
            how = _multistart(name)
            state = optimiser.new_batch(theta0[None], setup.problem, how, setup.free, prune=False)
            optimiser.step(state, setup.problem, how).lane.value.block_until_ready()
        elif name == "scipy_trf":
            optimiser.evaluate(theta0, np.asarray(cold(setup.problem.settings)), setup.problem)
        clock.stop()
    return clock.stages["warm-up"]


def run_optimizer(name: str, setup: Setup, starts: np.ndarray) -> dict:
    """Every start of one optimiser on one problem, with its compile time apart."""
    from estimation.msm.timing import StageClock

    warm_up = compile_jax(name, setup, starts[0])
    runs = []
    with StageClock() as clock:
        clock.switch("runs")
        for i, theta0 in enumerate(starts):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runs.append({"start": i, "theta0": theta0.tolist(), **runner(name)(setup, theta0)})
            print(f"  {setup.name} {name} start {i}: Q {runs[-1]['criterion']:.10g} after "
                  f"{runs[-1]['evaluations']} evaluations, {runs[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
        clock.stop()
    return {"compile_s": warm_up["compile_s"], "warm_up_s": warm_up["wall_s"],
            "compile_s_during_runs": clock.stages["runs"]["compile_s"], "runs": runs}


# --- Checks and measures -------------------------------------------------------------------------


def criterion_check(setup: Setup, theta: np.ndarray) -> dict:
    """Q at theta from levelfield (``optimiser.evaluate``, cold start) and from the NumPy port."""
    from estimation.msm import optimiser
    from jaxmodel.outcomes import cold

    ours = setup.residuals(optimiser.evaluate(theta, np.asarray(cold(setup.problem.settings)), setup.problem).moments)
    port = setup.residuals(setup.port_moments(theta))
    q_ours, q_port = float(ours @ ours), float(port @ port)
    return {"theta": theta.tolist(), "levelfield": q_ours, "numpy_port": q_port, "abs_difference": abs(q_ours - q_port),
            "rel_difference": abs(q_ours - q_port) / abs(q_ours)}


def solved_at(history: dict, target: float, measure: str) -> float:
    """The runtime ``measure`` ("evaluations" or "seconds") at which the history first reaches
    ``target``; inf if it never does."""
    for value, cost in zip(history["criterion"], history[measure]):
        if value <= target:
            return float(cost)
    return math.inf


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(problem: dict, rtol: float) -> dict:
    """The best criterion of a problem over all runs, and per optimiser the share of starts that
    reach it within rtol (relative), with the median evaluations and seconds to get there."""
    runs = [(name, run) for name, result in problem["optimizers"].items() for run in result["runs"]]
    best_name, best_run = min(runs, key=lambda item: item[1]["criterion"])
    best = best_run["criterion"]
    target = best + rtol * abs(best)
    out = {"best_criterion": best, "target": target, "best_by": best_name, "best_start": best_run["start"],
           "best_theta": dict(zip(problem["free"], best_run["theta"])), "optimizers": {}}
    for name, result in problem["optimizers"].items():
        evaluations = [solved_at(r["history"], target, "evaluations") for r in result["runs"]]
        seconds = [solved_at(r["history"], target, "seconds") for r in result["runs"]]
        reached = [i for i, e in enumerate(evaluations) if math.isfinite(e)]
        out["optimizers"][name] = {
            "share_solved": len(reached) / len(result["runs"]), "solved": len(reached), "starts": len(result["runs"]),
            "median_evaluations_to_solve": _median([evaluations[i] for i in reached]),
            "median_seconds_to_solve": _median([seconds[i] for i in reached]),
            "median_evaluations": _median([r["evaluations"] for r in result["runs"]]),
            "median_seconds": _median([r["seconds"] for r in result["runs"]]),
            "total_seconds": sum(r["seconds"] for r in result["runs"]),
            "compile_s": result["compile_s"],
        }
    return out


def solution_costs(payload: dict, measure: str) -> tuple[list[str], np.ndarray]:
    """Optimiser names and the cost (``measure``) at which each solved each (problem, start)
    instance: (instances, optimisers), inf where it did not."""
    names = list(payload["optimizers"])
    rows = []
    for problem in payload["problems"].values():
        target = problem["summary"]["target"]
        n_starts = len(next(iter(problem["optimizers"].values()))["runs"])
        for i in range(n_starts):
            rows.append([solved_at(problem["optimizers"][n]["runs"][i]["history"], target, measure) for n in names])
    return names, np.array(rows, dtype=float)


def performance_profile(costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Moré and Wild's performance profile of a (instances, optimisers) cost table: the ratios
    tau at which a curve steps, and for each the share of instances (all of them, solved by
    someone or not) that each optimiser solves within tau times the fastest one's cost."""
    fastest = costs.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(np.isfinite(costs), costs / np.maximum(fastest, 1e-300), np.inf)
    taus = np.unique(np.concatenate([[1.0], ratios[np.isfinite(ratios)]]))
    shares = np.stack([(ratios <= tau * (1 + 1e-12)).mean(axis=0) for tau in taus])
    return taus, shares


# --- Figures -------------------------------------------------------------------------------------


def _colours(names: list[str]) -> dict[str, str]:
    return {name: f"C{i}" for i, name in enumerate(OPTIMIZERS) if name in names}


def profile_figure(payload: dict, path: Path) -> None:
    """The performance profiles by evaluations and by wall time, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, measure, label in ((axes[0], "evaluations", "evaluations"), (axes[1], "seconds", "wall time")):
        names, costs = solution_costs(payload, measure)
        taus, shares = performance_profile(costs)
        colours = _colours(names)
        for j, name in enumerate(names):
            ax.step(np.append(taus, taus[-1] * 1.5), np.append(shares[:, j], shares[-1, j]), where="post",
                    label=name, color=colours[name], linestyle=("-", "--", ":", "-.")[j % 4], lw=1.6)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"multiple of the fastest optimiser's {label} to solve")
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of (problem, start) instances solved")
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Performance profiles: {len(costs)} instances, solved = best criterion within "
                 f"{payload['settings']['rtol']:g} relative", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _normalised(run: dict, best: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A run's history as (evaluations, seconds, (Q - Q*) / (Q_start - Q*)), floored at 1e-12."""
    history = run["history"]
    q = np.asarray(history["criterion"])
    if q.size == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    scale = max(q[0] - best, 1e-300)
    return (np.asarray(history["evaluations"], float), np.asarray(history["seconds"]),
            np.maximum((q - best) / scale, 1e-12))


def _median_curve(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> np.ndarray:
    """The median over runs of a step function (x, y) (last value held) on ``grid``."""
    values = []
    for x, y in curves:
        if x.size:
            index = np.searchsorted(x, grid, side="right") - 1
            values.append(np.where(index >= 0, y[np.maximum(index, 0)], 1.0))
    return np.median(np.stack(values), axis=0)


def convergence_figure(payload: dict, path: Path) -> None:
    """Per problem (rows), the normalised best criterion against evaluations and wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = payload["problems"]
    fig, axes = plt.subplots(len(problems), 2, figsize=(11, 3.4 * len(problems)), squeeze=False)
    colours = _colours(list(payload["optimizers"]))
    for row, (pname, problem) in zip(axes, problems.items()):
        best = problem["summary"]["best_criterion"]
        for column, (ax, label) in enumerate(zip(row, ("evaluations", "wall time (s)"))):
            for name, result in problem["optimizers"].items():
                curves = []
                for run in result["runs"]:
                    evaluations, seconds, q = _normalised(run, best)
                    x = evaluations if column == 0 else seconds
                    curves.append((x, q))
                    ax.step(x, q, where="post", color=colours[name], alpha=0.12, lw=0.7)
                x_max = max((c[0][-1] for c in curves if c[0].size), default=1.0)
                grid = np.geomspace(min((c[0][0] for c in curves if c[0].size), default=1.0), x_max, 200)
                ax.step(grid, _median_curve(curves, grid), where="post", color=colours[name], lw=2, label=name)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_ylim(1e-12, 2.0)
            ax.set_xlabel(label)
            ax.grid(alpha=0.3)
        row[0].set_ylabel(f"{pname}: (Q - Q*) / (Q0 - Q*)")
        row[0].set_title(f"{pname} ({', '.join(problem['free'])}), Q* = {best:.8g}", fontsize=9, loc="left")
    axes[0][1].legend(loc="lower left", fontsize=8)
    fig.suptitle("Best criterion so far, normalised (median over starts bold, each start faint)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- The benchmark -------------------------------------------------------------------------------


def bench_problem(name: str, optimizers: list[str], args: argparse.Namespace, payload: dict) -> dict:
    """Every optimiser from every start on one problem; the payload is written after each optimiser."""
    from estimation.msm.parameters import starting_points

    setup = make_setup(name, args.agents, args.seed)
    starts = starting_points(setup.free, setup.base, args.starts, args.seed)
    problem = {"free": list(setup.free.names), "bounds": [list(b) for b in zip(setup.free.lower, setup.free.upper)],
               "starts": starts.tolist(), "optimizers": {}}
    kept = payload["problems"].get(name)
    if kept is not None:  # --resume: the optimisers this problem has already run, from the same starts
        if kept["free"] != problem["free"] or kept["starts"] != problem["starts"]:
            raise SystemExit(f"--resume: {args.out} holds problem {name!r} with other parameters or starts")
        problem["optimizers"] = {k: v for k, v in kept["optimizers"].items() if len(v["runs"]) == args.starts}
    payload["problems"][name] = problem
    for optimizer in optimizers:
        if optimizer in problem["optimizers"]:
            print(f"  {name} {optimizer}: kept from {args.out}", file=sys.stderr)
            continue
        problem["optimizers"][optimizer] = {"revision": revision(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                            **run_optimizer(optimizer, setup, starts)}
        problem["summary"] = summarise(problem, args.rtol)
        write_json(args.out, payload)
    problem["summary"] = summarise(problem, args.rtol)  # also when every run was kept (--resume)
    best = np.array(list(problem["summary"]["best_theta"].values()))
    problem["summary"]["binding_at_best"] = dict(zip(setup.free.names, setup.free.binding(best)))
    # After the runs, so that the warm-up of scipy_trf, not this check, compiles ``evaluate``.
    problem["criterion_check"] = [criterion_check(setup, theta) for theta in (starts[0], best)]
    write_json(args.out, payload)
    return problem


def _print_summary(payload: dict) -> None:
    for name, problem in payload["problems"].items():
        summary = problem["summary"]
        print(f"{name}: best Q {summary['best_criterion']:.10g} ({summary['best_by']}), binding "
              f"{ {k: v for k, v in summary['binding_at_best'].items() if v} }", file=sys.stderr)
        for optimizer, row in summary["optimizers"].items():
            print(f"  {optimizer:13s} solved {row['solved']}/{row['starts']}, median to solve "
                  f"{row['median_evaluations_to_solve']} evaluations, {row['median_seconds_to_solve']} s; "
                  f"compile {row['compile_s']:.1f} s", file=sys.stderr)


def _description(name: str) -> dict:
    """What the JSON says about optimiser ``name``: what it is, its cap and, for the loop, its
    record as report.json has it."""
    out = {"description": DESCRIPTIONS[name], "cap": CAPS[name]}
    if name in SCALING:
        out["optimagic_scaling"] = SCALING[name]
    if name in LOOP_OPTIMIZERS:
        from estimation.msm import optimiser

        out["levelfield"] = optimiser.optimiser_record(name, _multistart(name).tol)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=20_000)
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--problems", nargs="+", choices=tuple(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=list(OPTIMIZERS))
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws and of the Sobol starts")
    parser.add_argument("--rtol", type=float, default=SOLVED_RTOL,
                        help="a start solves a problem when its best criterion is within rtol (relative) of the best")
    parser.add_argument("--note", default="", help="recorded in the JSON (e.g. why fewer starts)")
    parser.add_argument("--out", type=Path, default=RESULTS / "optimisers.json")
    parser.add_argument("--resume", action="store_true",
                        help="keep the (problem, optimiser) runs --out already holds with these settings and run "
                             "the rest (a benchmark longer than a session, run in parts)")
    args = parser.parse_args()
    import jaxmodel  # noqa: F401 - sets float64

    settings = {"n_agents": args.agents, "n_firms": "CalibrationConfig's default", "starts": args.starts,
                "seed": args.seed, "rtol": args.rtol, "loop_tolerances": TOLERANCES, "trf_tolerances": TRF_TOLERANCES,
                "solved": "best criterion so far <= Q* + rtol |Q*|, Q* the best over all runs of the problem",
                "note": args.note}
    earlier = None
    if args.resume and args.out.exists():
        import json

        earlier = json.loads(args.out.read_text())
        differ = [k for k in ("n_agents", "starts", "seed", "rtol", "loop_tolerances", "trf_tolerances")
                  if earlier["settings"].get(k) != settings[k]]
        if differ:
            raise SystemExit(f"--resume: {args.out} was run with other settings ({', '.join(differ)}); "
                             "give another --out or the same settings")
    payload = {
        "benchmark": "optimisers", "environment": environment("optax", "scipy", "estimagic", "DFO-LS", "matplotlib"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": settings,
        "load_average_start": os.getloadavg(), "optimizers": {k: _description(k) for k in args.optimizers},
        "problems": {},
    }
    if earlier is not None:
        payload["problems"] = earlier["problems"]
        payload["optimizers"] = {**earlier.get("optimizers", {}), **payload["optimizers"]}
        payload["earlier_parts"] = earlier.get("earlier_parts", []) + [
            {k: earlier.get(k) for k in ("environment", "command", "wall_s", "load_average_start", "load_average_end")}]
    started = time.perf_counter()
    for name in args.problems:
        bench_problem(name, args.optimizers, args, payload)
    payload["wall_s"] = time.perf_counter() - started
    payload["load_average_end"] = os.getloadavg()
    write_json(args.out, payload)
    profile_figure(payload, args.out.with_name(f"{args.out.stem}_profile.png"))
    convergence_figure(payload, args.out.with_name(f"{args.out.stem}_convergence.png"))
    _print_summary(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
