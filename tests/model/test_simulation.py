"""Simulation invariances: agent order, draw batching, specs' nesting, precision."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmodel
from jaxmodel.draws import AGENT_DRAWS
from tests.conftest import SMALL


@pytest.fixture(scope="module")
def baseline_small(baseline, small_draws):
    return jaxmodel.moments(baseline, small_draws, SMALL)


def test_permuting_agents_does_not_change_the_moments(baseline, small_draws, baseline_small):
    perm = jax.random.permutation(jax.random.key(9), SMALL.n_agents)
    shuffled = jaxmodel.Draws(**{n: getattr(small_draws, n)[perm] for n in AGENT_DRAWS}, u_K=small_draws.u_K)
    moved = jaxmodel.moments(baseline, shuffled, SMALL)
    # Same agents, same ranks: only the order of floating-point sums changes (1e-15 relative),
    # amplified by the fixed point's sensitivity; 1e-9 is far above that and far below any effect.
    assert jnp.allclose(moved.vector(), baseline_small.vector(), rtol=0, atol=1e-9)
    assert moved.before["gini"] == pytest.approx(float(baseline_small.before["gini"]), abs=1e-12)


def test_draw_sets_batch_with_vmap_over_keys(baseline):
    keys = jax.random.split(jax.random.key(5), 3)
    draws = jax.vmap(jaxmodel.make_draws, in_axes=(0, None))(keys, SMALL)
    batched = jax.vmap(lambda d: jaxmodel.moments(baseline, d, SMALL).vector())(draws)
    for i, key in enumerate(keys):
        one = jaxmodel.moments(baseline, jaxmodel.make_draws(key, SMALL), SMALL).vector()
        # vmap runs the fixed point until every member converges: at most a tolerance apart.
        assert jnp.allclose(batched[i], one, rtol=0, atol=1e-9)
    # Independent draw sets give different economies (simulation noise is real).
    assert float(jnp.max(jnp.abs(batched[0] - batched[1]))) > 1e-5


def test_partial_multiplicative_with_mu_zero_is_additive(baseline, small_draws, baseline_small):
    nested = jaxmodel.moments(baseline.replace(mu=0.0), small_draws, SMALL.replace(spec="partial_multiplicative"))
    # S(h) = h^0 = 1 exactly, so the economies coincide up to rounding.
    assert jnp.allclose(nested.vector(), baseline_small.vector(), rtol=0, atol=1e-12)


def test_ces_with_omega_zero_is_additive_and_omega_one_is_proportional(baseline, small_draws, baseline_small):
    settings = SMALL.replace(spec="ces")
    nested = jaxmodel.moments(baseline.replace(omega=0.0), small_draws, settings)
    assert jnp.allclose(nested.vector(), baseline_small.vector(), rtol=0, atol=1e-12)
    # omega = 1 gives S(h) = h = partial_multiplicative with mu = 1 (two routes, one economy).
    ces_h = jaxmodel.moments(baseline.replace(omega=1.0), small_draws, settings)
    pm_h = jaxmodel.moments(baseline.replace(mu=1.0), small_draws, SMALL.replace(spec="partial_multiplicative"))
    assert jnp.allclose(ces_h.vector(), pm_h.vector(), rtol=0, atol=1e-9)


def test_float32_agrees_with_float64(baseline, baseline_small):
    settings = SMALL.replace(precision="float32")
    draws32 = jaxmodel.make_draws(jax.random.key(1), settings)
    m32 = jaxmodel.moments(baseline, draws32, settings)
    assert m32.vector().dtype == jnp.float32
    err = np.abs(np.asarray(m32.vector(), np.float64) - np.asarray(baseline_small.vector()))
    # float32 rounding (6e-8) amplified through sums of 2e4 terms, logs and the fixed point
    # (floored at tol 5e-4, where float32 stalls): moments of order 0.1 agree to 2e-4 absolute.
    assert err.max() < 2e-4, err
    assert m32.regime == baseline_small.regime
    # The float32 floor is reachable: the fixed point converges instead of running to fp_max_iter.
    for state in (m32.before, m32.after):
        assert int(state["fp_iterations"]) < settings.fp_max_iter
        assert float(state["fp_residual"]) <= settings.tol
