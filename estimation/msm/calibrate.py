"""``calibrate``: the whole MSM estimation, from targets to inference, as named stages.

1. ``validate``: every input, before any heavy work (``estimation.msm.config``), and whether the
   size fits in memory (``estimation.memory.check_fits``).
2. draws: the estimation's draws, and the workers' assignment when it cannot move.
3. optimisation: minimise g'Wg from several starts, all advanced together by one optax loop
   (Levenberg-Marquardt with exact Jacobians by default, ``estimation.msm.optimiser``),
   checkpointed after every iteration.
4. two-step (``weights="optimal"``): W2 = (Sigma_targets + Omega_sim)^-1 at the first-step estimate,
   and the same optimisation again from every first-step end point.
5. inference: at the estimate, the Jacobian G by forward-mode autodiff (the optimiser's own
   program), the simulation noise Omega_sim over independent draw sets, the sandwich covariance,
   the J test (in the form that is right for the weights), Andrews-Gentzkow-Shapiro sensitivity,
   local identification, the Delta Gini decomposition and the regime with its uncertainty (Delta
   Gini's delta-method SE, the probability of the concentrating regime from draws of theta).
6. flip checks: the closest sign flips of Delta Gini, checked by re-estimation.
7. files: the results folder, written atomically (``estimation.output.calibration_files``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxmodel
from estimation import distributed, inference, memory
from estimation.errors import NumericalError, OutputError
from estimation.msm import noise, optimiser, sensitivity
from estimation.msm.checkpoint import Checkpointer
from estimation.msm.config import CalibrationConfig, Inputs, input_files, validate
from estimation.msm.optimiser import Multistart, Problem, StartRecord, Tolerances
from estimation.msm.parameters import FreeParameters, starting_points
from estimation.msm.result import (
    Decomposition,
    FlipCheck,
    Identification,
    JTest,
    RegimeUncertainty,
    Result,
    SecondStep,
    fixed_point_report,
    versions,
)
from estimation.msm.timing import StageClock
from estimation.output.runfiles import RunFolder, atomic_write_json
from jaxmodel import MOMENT_NAMES


def calibrate(
    config: CalibrationConfig | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    progress: Callable | None = None,
    **overrides,
) -> Result:
    """Estimate the model by MSM; with ``out``, write the results folder (``estimation.output``).

    Args:
        config: the inputs (default: the shipped targets and the default free parameters); keyword
            ``overrides`` replace its fields, e.g. ``calibrate(n_agents=10_000, free=("xi",))``.
        out: results folder; never overwritten unless ``force``; ``resume`` continues an interrupted
            run that wrote to the same folder (same configuration required).
        progress: called as progress(event, payload) with ``("stage1" | "stage2", optimiser.Batch)`` after
            every optimiser iteration and ``("step", text)`` between post-estimation steps.

    Returns:
        The :class:`Result`.

    Raises:
        EstimationError / ModelError subclasses for bad input, before any heavy work.
    """
    config = dataclasses.replace(config or CalibrationConfig(), **overrides)
    inputs = validate(config)
    settings = inputs.settings
    memory.check_fits("calibrate", settings.n_agents, settings.n_firms, settings.precision,
                      distributed.agent_share(settings.n_agents))
    # The targeted moments, resolved (from --moments or the targets file's rows), go on record.
    used = inputs.targets.used
    config = dataclasses.replace(config, moments=None if len(used) == len(MOMENT_NAMES) else used)
    files = input_files(config)
    folder = RunFolder(out) if out is not None else None
    if folder is None and resume:
        raise OutputError("--resume needs the results folder (--out) of the interrupted run")
    resumed = folder.prepare(config.to_dict(), resume=resume, force=force) if folder is not None else False
    run = _Run(config, folder, progress)
    with run.clock:  # stops listening to JAX's compilation events in a finally, also when a stage raises
        return _stages(run, inputs, files, resumed)


def _stages(run: _Run, inputs: Inputs, files: dict, resumed: bool) -> Result:
    """The stages of :func:`calibrate` from the draws to the files, timed by ``run.clock``."""
    config = run.config
    if resumed:
        run.checkpoint.load()

    run.clock.switch("draws")
    problem = _problem(config, inputs)
    tol = config.tolerances()

    run.clock.switch("optimisation")
    starts = starting_points(inputs.free, inputs.base, config.n_starts, config.seed)
    run.say(f"Optimising from {config.n_starts} start(s), N = {inputs.settings.n_agents:_}")
    records, best = run.stage("stage1", starts, inputs.free, problem, tol)
    theta = records[best].theta
    sim_key = jax.random.fold_in(jax.random.key(config.seed), 1)

    stage2 = None
    if config.weights == "optimal":
        run.clock.switch("two-step")
        run.say("Two-step: optimal weights from the first-step estimate")
        problem, theta, stage2 = _second_step(run, theta, records, inputs, problem, tol, sim_key)

    run.clock.switch("inference")
    run.say("Jacobian, simulation noise and inference at the estimate")
    est = _inference(theta, records, inputs, problem, config, sim_key)

    flips = []
    checks = sensitivity.closest_flips(est.decomposition.to_dict(), config.flip_checks) if est.decomposition else []
    if checks:
        run.clock.switch("flip checks")
        run.say("Re-estimating with the targets that flip Delta Gini soonest: "
                + ", ".join(f"{t['moment']} {t['se_to_flip_sign']:+.2f} se" for t in checks))
        flips = _flip_checks(checks, theta, est, inputs, problem, tol, config.optimizer, config.n_starts)

    result = Result(
        config=config, targets=inputs.targets, free=inputs.free, estimates=np.asarray(theta), se=est.se,
        ci_lower=est.ci_lower, ci_upper=est.ci_upper, interval_method=est.interval_method, se_note=est.se_note,
        binding=inputs.free.binding(theta), cov=est.cov, jac=est.jac,
        weights=np.asarray(problem.weights), omega_sim=est.omega_sim, moments_cov=est.moments_cov,
        model_moments=est.model, sensitivity=est.lam, criterion=est.criterion, j_test=est.j_test,
        identification=est.identification, decomposition=est.decomposition, flip_checks=flips, starts=records,
        regime_uncertainty=est.regime_uncertainty,
        best_start=best, stage2=stage2, fixed_point=est.fixed_point, inputs=files,
        seconds=time.perf_counter() - run.started, versions=versions(),
    )
    run.publish(result)
    return result


class _Run:
    """The bookkeeping of one run: its folder and checkpoint, the stage clock and the progress calls."""

    def __init__(self, config: CalibrationConfig, folder: RunFolder | None, progress: Callable | None):
        self.config, self.folder, self.progress = config, folder, progress
        self.checkpoint = Checkpointer(folder)
        self.started = time.perf_counter()
        self.clock = StageClock()

    def say(self, text: str) -> None:
        if self.progress is not None:
            self.progress("step", text)

    def stage(self, name: str, theta0: np.ndarray, free: FreeParameters, problem: Problem,
              tol: Tolerances) -> tuple[list[StartRecord], int]:
        """Run (or resume, or read back) one optimisation stage from the rows of ``theta0`` (S, k);
        returns one record per start and the index of the best finite one."""
        records = self.checkpoint.records(name)
        if records is None:
            how = _how(self.config, tol)
            arrays = self.checkpoint.batch(name, how.optimizer)
            if arrays is None:
                state = optimiser.new_batch(theta0, problem, how, free)
                self.checkpoint.save(name, optimiser.Batch(jax.device_get(state), how))
            else:
                state = optimiser.restore_batch(arrays, theta0, problem, how, free)

            def on_iteration(b: optimiser.Batch) -> None:
                self.checkpoint.save(name, b)
                if self.progress is not None:
                    self.progress(name, b)

            state = optimiser.run_batch(state, problem, how, on_iteration)
            records, _ = optimiser.finish_starts(state, theta0, free, problem, how)
            self.checkpoint.finish(name, records)
        finite = [i for i, r in enumerate(records) if np.isfinite(r.value)]
        if not finite:
            if self.folder is not None:
                self.folder.discard()  # nothing to resume: the same inputs fail the same way
            where = "; ".join(", ".join(f"{n}={v:.4g}" for n, v in zip(free.names, r.start)) for r in records)
            raise NumericalError(
                "every start ended with a non-finite criterion (the model's moments are not finite there): "
                f"starts {where}. Narrow the region with --bound or change the fixed parameters"
            )
        return records, min(finite, key=lambda i: records[i].value)

    def publish(self, result: Result) -> None:
        """Write the results folder (atomically), then timing.json with the stages' times."""
        if self.folder is not None:
            from estimation.output import calibration_files

            self.clock.switch("files")
            self.say(f"Writing {self.folder.out}")
            self.folder.staging.mkdir(parents=True, exist_ok=True)
            calibration_files.write_results(result, self.folder.staging)
            self.folder.publish()
        self.clock.stop()
        result.timing = self.clock.to_dict()
        result.seconds = time.perf_counter() - self.started
        if self.folder is not None:
            # timing.json holds the wall time and is the one file that differs between repeated runs.
            atomic_write_json(Path(self.folder.out) / "timing.json", result.timing_record())


def _how(config: CalibrationConfig, tol: Tolerances) -> Multistart:
    """The optimiser's static settings: one per run, so every stage shares its compiled programs."""
    return Multistart(optimizer=config.optimizer, tol=tol, lanes=optimiser.default_lanes())


def _problem(config: CalibrationConfig, inputs: Inputs) -> Problem:
    """The estimation's draws, and who works where: that depends on the draws and on rho_occ,
    rho_firm only, so it is sorted once unless one of them is free."""
    settings, base, free = inputs.settings, inputs.base, inputs.free
    draws = jaxmodel.make_draws(jax.random.key(config.seed), settings)
    draws = distributed.place_draws(draws)  # with several processes: agents over all their devices
    assigned = None if {"rho_occ", "rho_firm"} & set(free.names) else jaxmodel.assign(base, draws, settings)
    return Problem(settings=settings, base=base, free=free.arrays(), draws=draws,
                   targets=jnp.asarray(inputs.targets.fit_values), weights=jnp.asarray(inputs.weights),
                   assigned=assigned)


def _second_step(run: _Run, theta: np.ndarray, records: list[StartRecord], inputs: Inputs, problem: Problem,
                 tol: Tolerances, sim_key) -> tuple[Problem, np.ndarray, SecondStep]:
    """W2 = (Sigma_targets + Omega_sim(theta_1))^-1 over the targeted moments (0 in the rows and
    columns of the others) and the optimisation again from every first-step end point (the same
    batch size: no recompilation). Returns the re-weighted problem, the second-step estimate and
    its report."""
    free = inputs.free
    omega_sim1 = noise.simulation_noise(free.params(inputs.base, jnp.asarray(theta)), sim_key, inputs.settings,
                                        run.config.n_sim)
    weights = inference.restricted_inverse(inputs.targets.covariance + omega_sim1, inputs.targets.mask)
    problem = dataclasses.replace(problem, weights=jnp.asarray(weights))
    starts2 = np.stack([free.inside(r.theta, margin=1e-9) for r in records])
    records2, best2 = run.stage("stage2", starts2, free, problem, tol)
    rec2 = records2[best2]
    report = SecondStep(first_step_theta=theta.tolist(), status=rec2.status_text, iterations=rec2.iterations,
                        criterion=rec2.value, start=best2, omega_sim_first_step=np.asarray(omega_sim1).tolist())
    return problem, rec2.theta, report


@dataclasses.dataclass(frozen=True)
class _Inference:
    """Everything computed at the estimate (stage 5)."""

    model: np.ndarray
    jac: np.ndarray
    aggregates: np.ndarray
    omega_sim: np.ndarray
    moments_cov: np.ndarray
    criterion: float
    identification: Identification
    cov: np.ndarray
    lam: np.ndarray
    se: np.ndarray
    ci_lower: np.ndarray
    ci_upper: np.ndarray
    interval_method: list
    se_note: list
    j_test: JTest
    decomposition: Decomposition | None
    regime_uncertainty: RegimeUncertainty | None
    fixed_point: object


def _inference(theta: np.ndarray, records: list[StartRecord], inputs: Inputs, problem: Problem,
               config: CalibrationConfig, sim_key) -> _Inference:
    free, targets, settings = inputs.free, inputs.targets, inputs.settings
    weights = np.asarray(problem.weights)
    # The moments and G at the estimate from one cold evaluation (the optimiser's own program).
    at_estimate = optimiser.evaluate_in_loop(theta, problem, _how(config, config.tolerances()), free,
                                             lanes=config.n_starts)
    model, jac = at_estimate.moments, at_estimate.jacobian
    evaluations = sum(r.iterations for r in records)
    fixed_point = fixed_point_report(at_estimate, settings, optimisation={
        "evaluations": evaluations,
        "mean_iterations_per_evaluation": sum(r.fp_iterations for r in records) / (2 * max(evaluations, 1)),
        "note": "fixed-point iterations per state and evaluation in stage 1, warm-started from the last accepted point",
    })
    omega_sim = noise.simulation_noise(free.params(inputs.base, jnp.asarray(theta)), sim_key, settings,
                                       config.n_sim)
    moments_cov = targets.covariance + omega_sim
    errors = model - targets.fit_values  # 0 weight on the untargeted moments' errors
    k = free.size
    if np.isfinite(jac).all():
        ident = Identification(**inference.identification(jac, weights, list(free.names)))
    else:  # no inference from a Jacobian that is not finite; the estimate itself is still reported
        ident = Identification(singular_values=[], condition_number=math.inf, rank=0, n_params=k, identified=False,
                               weak_directions=[], reason="the Jacobian of the moments is not finite at the estimate")
    if ident.identified:
        cov = inference.cov_robust(jac, weights, moments_cov)
        lam = inference.sensitivity_to_bias(jac, weights)
    else:
        cov = np.full((k, k), np.nan)
        lam = np.full((k, len(MOMENT_NAMES)), np.nan)
    sigma = inference.standard_errors(cov)
    binding = free.binding(theta)
    intervals = inference.bounded_intervals(theta, cov, free.lower, free.upper, binding)
    j_test = _j_test(errors, moments_cov, jac, weights, k, config.weights, binding, targets.mask)
    decomposition = uncertainty = None
    if ident.identified:
        decomposition = Decomposition(**sensitivity.delta_gini_decomposition(
            model, jac, lam, targets.se, list(free.names), sigma, targeted=targets.mask))
        uncertainty = _regime_uncertainty(theta, cov, model, jac, at_estimate.aggregates, inputs, problem, config)
    return _Inference(model=model, jac=jac, aggregates=at_estimate.aggregates, omega_sim=omega_sim,
                      moments_cov=moments_cov, criterion=float(errors @ weights @ errors), identification=ident,
                      cov=cov, lam=lam, se=intervals["se"], ci_lower=intervals["lower"], ci_upper=intervals["upper"],
                      interval_method=intervals["method"], se_note=intervals["note"], j_test=j_test,
                      decomposition=decomposition, regime_uncertainty=uncertainty, fixed_point=fixed_point)


#: The PRNG key of the regime draws: ``jax.random.fold_in(jax.random.key(seed), REGIME_KEY)`` (1 is the
#: simulation noise's).
REGIME_KEY = 2


def _regime_uncertainty(theta: np.ndarray, cov: np.ndarray, model: np.ndarray, jac: np.ndarray, aggregates,
                        inputs: Inputs, problem: Problem, config: CalibrationConfig) -> RegimeUncertainty:
    """Delta Gini's delta-method SE and the probability of the concentrating regime from
    ``config.regime_draws`` draws of theta ~ N(theta_hat, V) in the search box, their Delta Gini
    from one batched program warm-started at the estimate's fixed points (``regimes.regime_uncertainty``)."""
    from estimation import identification, regimes

    gini = MOMENT_NAMES.index("gini_change")
    batched = identification.Model(settings=inputs.settings, base=inputs.base, free=inputs.free, draws=problem.draws,
                                   assigned=problem.assigned, start=aggregates)

    def delta_gini_at(thetas: np.ndarray) -> np.ndarray:
        return identification.moment_values(batched, thetas, origin=theta)["moments"][:, gini]

    key = jax.random.fold_in(jax.random.key(config.seed), REGIME_KEY)
    out = regimes.regime_uncertainty(float(model[gini]), jac[gini], cov, theta, inputs.free.lower, inputs.free.upper,
                                     delta_gini_at, key, config.regime_draws)
    return RegimeUncertainty(**out, key=f"fold_in(key({config.seed}), {REGIME_KEY})")


def _j_test(errors: np.ndarray, moments_cov: np.ndarray, jac: np.ndarray, weights: np.ndarray, k: int,
            weighting: str, binding: list, mask: np.ndarray) -> JTest:
    """The J that is right for the estimate's weights: g' Sigma^-1 g under two-step optimal weights
    (W2 estimates Sigma^-1), the generalised g' S^+ g under any other (``inference.j_test``); NaN
    when the Jacobian is not finite (the generalised form needs it). Both use the targeted moments
    only (``mask``): the others are no moment conditions, so the degrees of freedom are the number
    targeted less the free parameters (less those at a bound in the generalised form).

    A parameter that presses on a bound of its box is held there: the first-order condition
    G'Wg = 0 does not hold in its direction, so the generalised form leaves its column out of H (else
    S would treat as free a direction the estimate cannot move in, and J would miss the part of the
    misfit that the bound keeps), and it does not use up a degree of freedom."""
    if not mask.all():
        t = np.asarray(mask, dtype=bool)
        errors, moments_cov, jac, weights = errors[t], moments_cov[np.ix_(t, t)], jac[t], weights[np.ix_(t, t)]
    if weighting == "optimal":
        return JTest(**inference.j_test(errors, moments_cov, k), weights=weighting)
    if not np.isfinite(jac).all():
        return JTest(J=math.nan, df=errors.size - k, p_value=None,
                     form="none (the Jacobian is not finite at the estimate)", weights=weighting)
    interior = [j for j, b in enumerate(binding) if b is None]
    out = inference.j_test(errors, moments_cov, len(interior), jacobian=jac[:, interior], weights=weights)
    return JTest(**out, weights=weighting)


def _flip_checks(checks: list[dict], theta: np.ndarray, est: _Inference, inputs: Inputs, problem: Problem,
                 tol: Tolerances, optimizer: str, lanes: int) -> list[FlipCheck]:
    """Re-estimate with each target moved by the shift that flips Delta Gini at first order; each
    starts from its first-order prediction theta_hat - Lambda[:, i] shift; they run in ``lanes``
    lanes (the width of the optimisation's batch, whose compiled step they share). ``checks`` are
    targeted moments only (``sensitivity.closest_flips``)."""
    targets, free = inputs.targets, inputs.free
    gini = MOMENT_NAMES.index("gini_change")
    idx = [MOMENT_NAMES.index(t["moment"]) for t in checks]
    shifts = np.array([t["shift_to_flip_sign"] for t in checks])
    shifted = np.tile(targets.fit_values, (len(checks), 1))
    shifted[np.arange(len(checks)), idx] += shifts
    predicted = np.stack([theta - est.lam[:, i] * d for i, d in zip(idx, shifts)])
    thetas, flipped_moments = reestimate(predicted, shifted, free, problem, tol, aggregates=est.aggregates,
                                         optimizer=optimizer, lanes=lanes)
    m6_0 = float(est.model[gini])
    flips = []
    for t, i, d, theta_f, m_f in zip(checks, idx, shifts, thetas, flipped_moments):
        m6 = float(m_f[gini])
        # Secant through (0, m6_0) and (shift, m6): where Delta Gini crosses 0.
        secant = d * m6_0 / (m6_0 - m6) if m6 != m6_0 else math.inf
        flips.append(FlipCheck(
            moment=t["moment"], se_moved=t["se_to_flip_sign"], shift=float(d), delta_gini_before=m6_0,
            delta_gini_after_reestimation=m6, remaining_share=m6 / m6_0 if m6_0 else math.nan,
            sign_flipped=bool(np.sign(m6) != np.sign(m6_0)),
            se_to_flip_sign_secant=secant / targets.se[i] if math.isfinite(secant) else math.inf,
            theta=dict(zip(free.names, map(float, theta_f))),
        ))
    return flips


def reestimate(starts: np.ndarray, targets: np.ndarray, free: FreeParameters, problem: Problem, tol: Tolerances,
               aggregates: np.ndarray | None = None,
               optimizer: str = optimiser.DEFAULT_OPTIMIZER, lanes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Re-estimate from each row of ``starts`` (c, k) with the targets of the same row (c, m).

    Rows run as one batch without pruning (their targets differ); their fixed points start from
    ``aggregates`` (those at the estimate), in ``lanes`` lanes if given (``optimiser.new_batch``).
    Returns the estimates (c, k) and the model moments there (c, m).
    """
    theta0 = np.stack([free.inside(row, margin=1e-9) for row in starts])
    how = Multistart(optimizer=optimizer, tol=tol, lanes=optimiser.default_lanes())
    state = optimiser.new_batch(theta0, problem, how, free, targets=targets, start=aggregates, prune=False,
                                lanes=lanes)
    state = optimiser.run_batch(state, problem, how)
    records, moments = optimiser.finish_starts(state, theta0, free, problem, how)
    return np.stack([r.theta for r in records]), moments
