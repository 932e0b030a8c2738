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
    cold = jaxmodel.outcomes.cold(SETTINGS)
    for changes in ({"sigma": 0.001}, {"sigma": 0.0003}):
        m = optimiser.evaluate(_theta(free, **changes), cold, prob).moments
        assert not np.isfinite(m).all()  # the region exists inside the domain
        q = optimiser.criterion_in_u(jnp.asarray(free.to_u(_theta(free, **changes))), cold, prob.targets, prob)
        # +inf, not NaN: a line search compares values, and inf > anything makes it back off.
        assert float(q) == np.inf


#: Both ways one program advances the starts: vectorised with the stopped ones masked (what an
#: accelerator runs) and a map that skips them (the CPU's default).
LANES = ("vmap", "map")


def _run(free, prob, rows, lanes, prune=False):
    """The loop over the starts ``rows`` in two lanes (a second lane that never runs where there is
    one start: the same compiled program); returns the host view of its end state."""
    how = optimiser.Multistart(tol=optimiser.Tolerances(max_iter=10), lanes=lanes)
    state = optimiser.new_batch(np.stack(rows), prob, how, free, prune=prune, lanes=2)
    return optimiser.Batch(jax.device_get(optimiser.run_batch(state, prob, how)), how)


def _same_path(batch, i, alone):
    """Start i of ``batch`` followed the path of the same start run alone (lane 0 of ``alone``):
    the criterion at every accepted point and the end point to 1e-12 relative. The lanes of a
    batch do not mix (every operation is per lane), so on one program this is rounding-free; 1e-12
    leaves room for XLA's freedom to order batched arithmetic, and is far below the optimiser's
    tolerances (an LM path amplifies a difference in the last digit to about 1e-10 over ten
    iterations when the batch width differs)."""
    assert len(batch.history[i]) == len(alone.history[0]) > 3
    np.testing.assert_allclose(batch.history[i], alone.history[0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(batch.theta[i], alone.theta[0], rtol=1e-12, atol=1e-14)
    assert batch.status[i] is alone.status[0]


@pytest.fixture(scope="module")
def good_alone(problem):
    free, prob = problem
    return {lanes: _run(free, prob, [_theta(free)], lanes) for lanes in LANES}


@pytest.mark.parametrize("lanes", LANES)
def test_a_start_in_the_overflow_region_fails_alone(problem, good_alone, lanes):
    """A start whose criterion is not finite fails, masked in the batch: the start beside it
    follows the path it follows alone."""
    free, prob = problem
    with_bad = _run(free, prob, [_theta(free), _theta(free, sigma=0.001)], lanes)
    assert with_bad.status[1] is optimiser.Status.NON_FINITE and with_bad.history[1] == [np.inf]
    _same_path(with_bad, 0, good_alone[lanes])
    assert np.isfinite(with_bad.theta[0]).all() and np.isfinite(with_bad.history[0]).all()


@pytest.mark.parametrize("lanes", LANES)
def test_a_pruned_start_does_not_change_the_others(problem, good_alone, lanes):
    """A start stopped as dominated after PRUNE_AFTER iterations is masked from then on: the
    start beside it follows the path it follows alone."""
    free, prob = problem
    far = free.inside(np.array(free.lower) + 0.9 * (np.array(free.upper) - np.array(free.lower)), margin=0.01)
    pruned = _run(free, prob, [_theta(free), far], lanes, prune=True)
    assert pruned.status[1] is optimiser.Status.DOMINATED
    assert f"after {optimiser.PRUNE_AFTER} iterations" in pruned.detail[1]
    _same_path(pruned, 0, good_alone[lanes])


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
