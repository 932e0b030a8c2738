"""The optimisers of ``levelfield calibrate --optimizer`` agree on the default problem, and each
records itself in report.json."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from estimation.msm import optimiser
from estimation.msm.calibrate import _problem
from estimation.msm.config import CalibrationConfig, validate
from estimation.msm.parameters import starting_points

# The default problem (shipped targets, diagonal weights, the five default free parameters, seed 0)
# at a small N, with two starts on the loop's default lanes: the shapes of test_interruptions.py's
# runs (the loop's programs do not depend on max_iter), whose compiled programs the session's
# persistent cache then serves to this file.
CONFIG = CalibrationConfig(n_agents=4000, n_firms=40, n_starts=2, seed=0)


def _best(name: str) -> optimiser.StartRecord:
    inputs = validate(CONFIG)
    problem = _problem(CONFIG, inputs)
    starts = starting_points(inputs.free, inputs.base, CONFIG.n_starts, CONFIG.seed)
    how = optimiser.Multistart(optimizer=name, tol=CONFIG.tolerances(), lanes=optimiser.default_lanes())
    state = optimiser.run_batch(optimiser.new_batch(starts, problem, how, inputs.free), problem, how)
    records, _ = optimiser.finish_starts(state, starts, inputs.free, problem, how)
    finite = [r for r in records if np.isfinite(r.value)]
    return min(finite, key=lambda r: r.value)


@pytest.fixture(scope="module")
def best():
    return {name: _best(name) for name in ("lm", "lm-box", "lbfgs")}


def test_lm_and_lbfgs_reach_the_same_criterion(best):
    """Both end at the same minimum: the criterion to 1e-5 relative (the issue's aim; each stops
    by its own rule at ftol = 1e-6 of 1 + Q, lbfgs on the unconstrained scale), the estimates to
    1e-2 absolute (a flat direction of the criterion lets them differ more than Q)."""
    lm, lbfgs = best["lm"], best["lbfgs"]
    assert lm.status.converged and lbfgs.status.converged, (lm.status, lbfgs.status)
    assert lbfgs.value == pytest.approx(lm.value, rel=1e-5), (lm, lbfgs)
    np.testing.assert_allclose(lbfgs.theta, lm.theta, rtol=0, atol=1e-2)
    assert lm.method == "Levenberg-Marquardt" and lbfgs.method.startswith("optax.lbfgs")


def test_lm_and_its_box_only_step_reach_the_same_minimum_with_the_binding_bound_met_exactly(best):
    """lm's interior step and lm-box's box-only step (the same method, other steps) end at the same
    minimum from the same starts: the criterion to ftol (1 + Q) absolute (each stops when its
    Gauss-Newton model's best decrease, about Q - Q*, is below that; measured 3.5e-8 against 1e-6),
    with sigma_nu exactly on its lower bound 0 in both (the interior step snaps a variable it leaves
    within 1e-4 of its width)."""
    interior, box = best["lm"], best["lm-box"]
    assert interior.status.converged and box.status.converged, (interior.status, box.status)
    assert abs(interior.value - box.value) <= CONFIG.ftol * (1 + box.value), (interior, box)
    names = list(validate(CONFIG).free.names)
    assert interior.theta[names.index("sigma_nu")] == 0.0 and box.theta[names.index("sigma_nu")] == 0.0
    assert box.method == "Levenberg-Marquardt (box-only step)"


def test_lm_needs_fewer_evaluations_than_lbfgs(best):
    """The reason lm is the default: exact Jacobians and a Gauss-Newton model take fewer
    evaluations than first-order curvature estimates."""
    assert best["lm"].iterations < best["lbfgs"].iterations


def test_report_records_the_optimiser_and_its_settings():
    from estimation.msm.result import Result

    for name in optimiser.OPTIMISERS:
        record = optimiser.optimiser_record(name, CONFIG.tolerances())
        assert record["name"] == name and record["settings"]["scale"] in ("theta", "u")
        assert record["tolerances"]["ftol"] == CONFIG.ftol
    assert "optimizer" in CalibrationConfig().to_dict()
    assert CalibrationConfig.from_dict({"optimizer": "lbfgs"}).optimizer == "lbfgs"
    adam = optimiser.optimiser_record("adam", CONFIG.tolerances())
    assert adam["method"] == "optax.adam" and adam["settings"]["learning_rate"] > 0
    assert CalibrationConfig.from_dict({"optimizer": "adam"}).optimizer == "adam"
    del Result
