"""The regime with its uncertainty: Delta Gini's delta-method SE and the probability of the
concentrating regime from draws of theta ~ N(theta_hat, V) in the search box (issue 22, item 6).

Tolerances. A probability p estimated from S independent draws has Monte Carlo SE
sqrt(p (1 - p) / S); the checks allow 4 of them (a false failure once in about 16,000 runs; each
run uses a fixed key, so a run that passes always passes). Where Delta Gini is linear in theta
and the box does not cut the draws, the draws' probability is exactly Phi((a'theta + b) / sqrt(a'Va))
in expectation, so 4 Monte Carlo SEs is the whole tolerance.
"""

from __future__ import annotations

from statistics import NormalDist

import jax
import numpy as np
import pytest

import jaxmodel
from estimation import identification as ident
from estimation import regimes
from estimation.msm.parameters import free_parameters

WIDE = (np.full(3, -1e6), np.full(3, 1e6))  # a box that cuts no draw


def _linear(a, b):
    return lambda thetas: thetas @ a + b


def _problem(seed: int):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(3, 3))
    cov = A @ A.T / 3 + 0.1 * np.eye(3)
    return rng.normal(size=3), rng.normal(size=3), cov


@pytest.mark.parametrize("z", [-1.0, 0.0, 0.6, 1.5])
def test_linear_delta_gini_gives_the_normal_probability(z):
    """For Delta Gini = a'theta + b the share of draws with Delta Gini > 0 is Phi(DG / se), se = sqrt(a'Va)."""
    theta, a, cov = _problem(0)
    se = float(np.sqrt(a @ cov @ a))
    b = z * se - float(a @ theta)  # Delta Gini at theta is z se
    n = 4000
    out = regimes.regime_uncertainty(z * se, a, cov, theta, *WIDE, _linear(a, b), jax.random.key(5), n)
    expected = NormalDist().cdf(z)
    assert out["se"] == pytest.approx(se, rel=1e-12)  # deterministic algebra
    assert out["probability_normal"] == pytest.approx(expected, rel=1e-12)
    assert out["draws"] == out["finite_draws"] == n and out["acceptance"] == 1.0
    mc = np.sqrt(expected * (1 - expected) / n)
    assert abs(out["probability_concentrating"] - expected) <= 4 * mc + 1e-12


def test_far_from_the_boundary_the_probability_is_one_or_zero():
    theta, a, cov = _problem(1)
    se = float(np.sqrt(a @ cov @ a))
    for sign in (1.0, -1.0):
        b = sign * 12 * se - float(a @ theta)  # 12 SEs from 0: P(|z| > 12) ~ 4e-33, no draw crosses
        out = regimes.regime_uncertainty(sign * 12 * se, a, cov, theta, *WIDE, _linear(a, b), jax.random.key(0), 2000)
        assert out["probability_concentrating"] == (1.0 if sign > 0 else 0.0)
        assert out["monte_carlo_se"] == 0.0


def test_draws_are_reproducible_and_stay_in_the_box():
    theta, _, cov = _problem(2)
    lower, upper = theta - 0.3, theta + np.array([np.inf, 0.5, 0.2])
    d1, acc1 = regimes.draws_in_box(jax.random.key(9), theta, cov, lower, upper, 500)
    d2, acc2 = regimes.draws_in_box(jax.random.key(9), theta, cov, lower, upper, 500)
    np.testing.assert_array_equal(d1, d2)
    assert acc1 == acc2 and d1.shape == (500, 3)
    assert ((d1 >= lower) & (d1 <= upper)).all()
    d3, _ = regimes.draws_in_box(jax.random.key(10), theta, cov, lower, upper, 500)
    assert not np.allclose(d1, d3)


def test_acceptance_is_the_normal_mass_of_the_box():
    """One parameter with the box [theta, inf): half the normal draws fall in it."""
    theta, cov = np.array([0.3]), np.array([[0.04]])
    draws, acceptance = regimes.draws_in_box(jax.random.key(1), theta, cov, [0.3], [np.inf], 4000)
    # The first round has 8000 draws: acceptance 1/2 with SE sqrt(1/4 / 8000) = 0.0056.
    assert abs(acceptance - 0.5) <= 4 * 0.0056
    assert draws.min() >= 0.3


def test_overflowed_draws_are_left_out_and_counted():
    out = regimes.regime_probability(np.array([1.0, -1.0, np.nan, np.inf, 2.0]))
    assert out["draws"] == 5 and out["finite_draws"] == 3
    assert out["probability_concentrating"] == pytest.approx(2 / 3, rel=1e-12)


@pytest.fixture(scope="module")
def on_the_boundary():
    """A point (xi, Gini(K)*) on the boundary Delta Gini = 0, found as ``levelfield regimes`` finds it."""
    settings = jaxmodel.Settings(n_agents=2000, n_firms=20)
    eta = regimes.STRUCTURES["proprietary-leaning"]
    base = jaxmodel.baseline().replace(**eta)
    draws = jaxmodel.make_draws(jax.random.key(4), settings)
    b = regimes.find_boundary(base, draws, settings, np.array([0.15]), "proprietary-leaning", eta)
    assert b.status[0] is regimes.Crossing.CONVERGED, b.status
    theta = np.array([0.15, float(b.gini_K[0])])
    free = free_parameters(("xi", "gini_K"))
    model = ident.Model(settings=settings, base=base.replace(xi=theta[0], gini_K=theta[1]), free=free, draws=draws,
                        assigned=jaxmodel.assign(base, draws, settings))
    return model, theta, bool(b.concentrating_above[0])


def _model_probability(model, theta, n=256, sd=0.01):
    gini = jaxmodel.MOMENT_NAMES.index("gini_change")
    values = ident.moment_values(model, theta[None])["moments"][0]
    cov = np.diag([sd**2, sd**2])
    # The gradient enters the first-order SE only, which these tests do not check: 0 stands for it.
    return regimes.regime_uncertainty(
        float(values[gini]), np.zeros(2), cov, theta, model.free.lower, model.free.upper,
        lambda t: ident.moment_values(model, t)["moments"][:, gini], jax.random.key(0), n)


def test_on_the_boundary_the_probability_is_near_one_half(on_the_boundary):
    """At Gini(K)* the draws (sd 0.01 in xi and Gini(K)) fall on both sides about equally: Delta Gini
    is smooth, so over so small a spread it is close to linear and the share is 1/2 up to Monte Carlo
    error (4 SEs of 256 draws at p = 1/2: 0.125) and a curvature term of order sd, below 0.01."""
    model, theta, _ = on_the_boundary
    out = _model_probability(model, theta)
    assert abs(out["delta_gini"]) < regimes.F_TOL
    assert abs(out["probability_concentrating"] - 0.5) <= 0.125 + 0.01


def test_far_from_the_boundary_the_model_probability_is_one_or_zero(on_the_boundary):
    """Half-way from Gini(K)* to either end of its box (at least 10 sd of the draws away), every draw is
    on one side: the side that the boundary search says is concentrating has probability 1, the other 0."""
    model, theta, concentrating_above = on_the_boundary
    lo, hi = model.free.lower[1], model.free.upper[1]
    for point, concentrating in ((0.5 * (theta[1] + hi), concentrating_above),
                                 (0.5 * (theta[1] + lo), not concentrating_above)):
        sd = abs(point - theta[1]) / 10
        out = _model_probability(model, np.array([theta[0], point]), n=64, sd=sd)
        assert out["finite_draws"] == 64
        assert out["probability_concentrating"] == (1.0 if concentrating else 0.0), (point, out)
