"""m1 measured within firms (MODEL.md section 5), as the experiments behind its target measure it.

The naive (2, N, T) reference of every state field, the within-firm CV included, is in
``test_reference_equations.py`` (three specs, four points); here are the properties that tie the
within-firm CV to the CV over all workers, and what moving it within firms changes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmodel
from jaxmodel import outcomes
from jaxmodel.market import branch_weights, economy
from jaxmodel.workers import workforce
from tests.conftest import BIG

SPECS = {
    "additive": {},
    "partial_multiplicative": {"mu": 0.7},
    "ces": {"rho": -0.5, "omega": 0.4},
}


@pytest.mark.parametrize("spec", SPECS)
def test_one_firm_within_equals_all_workers(baseline, spec):
    """With one firm, the firm's task mean is the overall one: the two CVs are the same numbers."""
    settings = jaxmodel.Settings(n_agents=20_000, n_firms=1, spec=spec)
    draws = jaxmodel.make_draws(jax.random.key(5), settings)
    m = jaxmodel.moments(baseline.replace(**SPECS[spec]), draws, settings)
    # Same sums in another grouping (firm-centred instead of overall-centred): rounding only.
    assert abs(float(m.cv_change) - float(m.cv_change_all_workers)) < 1e-12
    for state in (m.before, m.after):
        assert float(state["cv_within_firms"]) == pytest.approx(float(state["cv_all_workers"]), rel=1e-12)


@pytest.mark.parametrize("spec", SPECS)
def test_random_firms_with_equal_access_lose_only_the_degrees_of_freedom(baseline, spec):
    """Equal proprietary access everywhere (eta1 = 0) and random sorting (rho_firm = 0): firms are
    labels drawn independently of everything, so the within-firm variance is the variance over all
    workers less what F firm means absorb by chance.

    Theory (random partition of weighted units, here the agents of task k with weights
    v_i = omega_{o(i)k}, into F firms): the between-firm sum of squares is, in expectation, the
    share (F - 1)/(n_eff - 1) of the between-agent sum of squares B_k, with n_eff = (sum v)^2 / sum v^2;
    the within-agent part (the two education branches of an agent share its firm) is untouched. So
    1 - V_within/V_all has expectation (F - 1)/(n_eff - 1) B_k/T_k. Its sampling SD is that of a
    chi-squared with F - 1 degrees of freedom over n_eff: sqrt(2 (F - 1)) / n_eff B_k/T_k (group
    means of 200 agents are close to normal). We allow 5 SD for the largest of the 40 tasks.
    """
    settings = jaxmodel.Settings(n_agents=20_000, n_firms=100, spec=spec)
    params = baseline.replace(eta1=0.0, rho_firm=0.0, **SPECS[spec])
    draws = jaxmodel.make_draws(jax.random.key(11), settings)
    state = jaxmodel.solve(params, draws, settings, params.A1)
    econ = economy(params, workforce(params, draws, settings), draws.u_K, settings, params.A1)

    # Explicit (2, O, M, T) task outputs and (O, 1, T) task weights, in NumPy (N is small here).
    w = np.asarray(branch_weights(state.P))[..., None]
    y = (np.asarray(econ.h)[..., None] * np.asarray(econ.phi)
         + np.asarray(econ.access)[..., None] * np.asarray(econ.floor))
    v = np.asarray(econ.omega)[:, None, :]
    y_agent = np.sum(w * y, axis=0)                                # agent means over branches
    mean = np.sum(v * y_agent, axis=(0, 1)) / np.sum(v * np.ones_like(y_agent), axis=(0, 1))
    between_agents = np.sum(v * (y_agent - mean) ** 2, axis=(0, 1))
    total = between_agents + np.sum(v * np.sum(w * (y - y_agent) ** 2, axis=0), axis=(0, 1))
    m = settings.agents_per_occupation
    n_eff = (m * np.sum(v, axis=(0, 1))) ** 2 / (m * np.sum(v**2, axis=(0, 1)))
    F = settings.n_firms
    expected = (F - 1) / (n_eff - 1) * between_agents / total
    sd = np.sqrt(2.0 * (F - 1)) / n_eff * between_agents / total

    loss = 1.0 - (np.asarray(state.task_cv) / np.asarray(state.task_cv_all_workers)) ** 2
    # The CV over all workers of this state is the naive one (the reference test checks it to 1e-9).
    np.testing.assert_allclose(np.sqrt(total / np.sum(w * v, axis=(0, 1, 2))) / mean,
                               np.asarray(state.task_cv_all_workers), rtol=1e-9)
    assert np.all(expected > 0.005)  # the test has something to detect: about 1-3% of the variance
    z = (loss - expected) / sd
    assert np.max(np.abs(z)) < 5.0, f"largest standardised gap {np.max(np.abs(z)):.2f} at task {np.argmax(np.abs(z))}"


def test_asset_intensity_moves_homogenization_only_across_firms(baseline, big_draws):
    """Proposition 1 is about dispersion within a task among comparable workers: within firms it
    should not depend on how unequal proprietary access is (psi), while the CV over all workers
    also counts the spread of chi1_j = eta1 K~_j^psi across firms, which psi drives."""
    within, overall = [], []
    for psi in (0.5, 0.7, 0.9, 1.1, 1.3):
        m = jaxmodel.moments(baseline.replace(psi=psi), big_draws, BIG)
        within.append(float(m.cv_change))
        overall.append(float(m.cv_change_all_workers))
    span_within, span_overall = np.ptp(within), np.ptp(overall)
    assert span_within < span_overall / 5, (within, overall)
    assert all(x < 0 for x in within), within            # homogenization at every psi
    assert min(overall) < 0 < max(overall), overall       # while the pooled CV changes sign


def test_within_firm_m1_derivatives_match_central_differences(baseline):
    """Forward and reverse mode of m1 alone in the firm-level parameters that move it through the
    firm task means (psi, eta1, gini_K) and two others, against central differences (float64)."""
    settings = jaxmodel.Settings(n_agents=10_000, n_firms=50, fp_tol=1e-13)
    draws = jaxmodel.make_draws(jax.random.key(2), settings)
    names = ["psi", "eta1", "gini_K", "alpha", "xi"]
    x0 = jnp.array([baseline.to_dict()[n] for n in names])

    def m1(x):
        params = jaxmodel.Params(**{**baseline.to_dict(), **dict(zip(names, x))})
        return outcomes.moments_jit(params, draws, settings).cv_change

    f = jax.jit(m1)
    fd = []
    for i in range(len(names)):
        h = 1e-5 * max(1.0, abs(float(x0[i])))
        e = jnp.zeros_like(x0).at[i].set(h)
        fd.append((f(x0 + e) - f(x0 - e)) / (2 * h))
    fd = np.asarray(fd)
    forward = np.asarray(jax.jit(jax.jacfwd(m1))(x0))
    reverse = np.asarray(jax.jit(jax.grad(m1))(x0))
    # As in test_gradients: truncation ~1e-10, fixed-point error ~1e-8, rounding ~1e-11.
    bound = 2e-7 + 1e-4 * np.abs(fd)
    assert np.all(np.abs(forward - fd) < bound), (forward, fd)
    assert np.all(np.abs(reverse - fd) < bound), (reverse, fd)
    assert np.max(np.abs(fd)) > 1e-3  # m1 does move with these parameters
