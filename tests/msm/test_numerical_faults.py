"""Numerical faults: regions where the model is not finite, and a fixed point that does not converge.

Inside its domain the model has regions where its outputs overflow: a task elasticity sigma below
about 0.003 (the CES power of task outputs overflows), or a dispersion of log ability sigma_theta
above about 30. The estimator must back off from such regions
or stop with a clear status, and never return or write NaN as an estimate. A logit smoothing tau
of 1e-4 makes the education fixed point oscillate: it must be reported with its residual.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmodel
from estimation import CalibrationConfig, calibrate
from estimation.msm import optimiser
from estimation.errors import NumericalError
from estimation.msm.targets import load_targets

# The problem shape of tests/msm/test_calibration.py (N = 5000, five free parameters, two starts, six
# simulation sets): the optimiser's programs compiled there are reused here.
SIZE = dict(n_agents=5000, n_firms=50, n_starts=2, n_sim=6)
SETTINGS = jaxmodel.Settings(n_agents=5000, n_firms=50)


@pytest.fixture(scope="module")
def problem():
    """The default estimation problem (shipped targets, diagonal weights) on seed-0 draws."""
    from estimation.msm.parameters import free_parameters

    # sigma's default search box starts at 0.2; the overflow region (sigma ~ 0.001) is inside its
    # domain, where a user's --bound can take the optimiser.
    free = free_parameters(bounds={"sigma": (1e-4, 10.0)})
    targets = load_targets()
    prob = optimiser.Problem(settings=SETTINGS, base=jaxmodel.baseline(), free=free.arrays(),
                             draws=jaxmodel.make_draws(jax.random.key(0), SETTINGS),
                             targets=jnp.asarray(targets.values), weights=jnp.asarray(np.diag(1 / targets.se**2)))
    return free, prob


def _theta(free, **changes):
    base = jaxmodel.baseline().replace(**changes)
    return free.inside([float(getattr(base, n)) for n in free.names], margin=1e-9)


def test_the_criterion_is_plus_infinity_where_the_model_overflows(problem):
    free, prob = problem
    for changes in ({"sigma": 0.001}, {"sigma": 0.0003}):
        m = np.asarray(optimiser.model_moments(jnp.asarray(_theta(free, **changes)), prob))
        assert not np.isfinite(m).all()  # the region exists inside the domain
        q = optimiser.criterion(jnp.asarray(free.to_u(_theta(free, **changes))), prob.targets, prob)
        # +inf, not NaN: a line search compares values, and inf > anything makes it back off.
        assert float(q) == np.inf


def test_a_start_in_the_overflow_region_fails_alone(problem):
    free, prob = problem
    tol = optimiser.Tolerances(max_iter=10)
    good, other_good, bad = _theta(free), _theta(free, xi=0.3), _theta(free, sigma=0.001)

    def run(rows):
        # No pruning: the point is that each start's path is its own.
        return optimiser.run_batch(optimiser.new_batch(np.stack(rows), prob), prob, free, tol, prune=False)

    with_bad, with_good = run([good, bad]), run([good, other_good])
    assert with_bad.status[1] is optimiser.Status.NON_FINITE and with_bad.history[1] == [np.inf]
    # The failing start does not disturb its neighbour in the batch: the good start follows the same
    # path, bit for bit, whatever runs beside it.
    assert len(with_bad.history[0]) > 3 and with_bad.history[0] == with_good.history[0]
    np.testing.assert_array_equal(with_bad.theta[0], with_good.theta[0])
    assert np.isfinite(with_bad.theta[0]).all() and np.isfinite(with_bad.history[0]).all()


def test_when_every_start_overflows_the_run_stops_with_a_clear_error(tmp_path):
    # sigma below 0.002 everywhere in the bounds: the model overflows at every start.
    config = CalibrationConfig(bounds={"sigma": (1e-4, 0.002)}, max_iter=5, flip_checks=0, **SIZE)
    out = tmp_path / "run"
    with pytest.raises(NumericalError, match="every start ended with a non-finite criterion") as info:
        calibrate(config, out=out)
    assert "sigma=" in str(info.value) and "--bound" in str(info.value)
    # No results folder, and no partial folder waiting for a --resume that would fail the same way.
    assert not out.exists() and not (tmp_path / ".run.partial").exists()


def test_a_fixed_point_that_does_not_converge_is_reported_with_its_residual(capsys, tmp_path):
    draws = jaxmodel.make_draws(jax.random.key(0), SETTINGS)
    m = jaxmodel.moments(jaxmodel.baseline().replace(tau=1e-4), draws, SETTINGS)
    for state in (m.before, m.after):
        # With tau = 1e-4 the college choice is a step function: the damped iteration oscillates.
        assert int(state["fp_iterations"]) == SETTINGS.fp_max_iter
        assert float(state["fp_residual"]) > 1e3 * SETTINGS.tol
    from estimation.cli import main

    assert main(["simulate", "--agents", "5000", "--firms", "50", "--set", "tau=1e-4"]) == 0
    err = capsys.readouterr().err
    assert "fixed point before AI did not converge: residual" in err and "after 200 iterations" in err

    out = tmp_path / "run"
    result = calibrate(CalibrationConfig(fixed={"tau": 1e-4}, max_iter=2, flip_checks=0, **SIZE), out=out)
    states = result.fixed_point.states
    assert not states["before"]["converged"] and states["before"]["residual"] > 1e3 * SETTINGS.tol
    assert any("did not converge at the estimate" in w for w in result.warnings)
    report = json.loads((out / "report.json").read_text())
    assert report["fixed_point"]["states"]["after"]["converged"] is False
    assert all(isinstance(r["estimate"], float) for r in report["estimates"])
