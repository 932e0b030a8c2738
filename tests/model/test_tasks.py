"""Task-level building blocks: the CES aggregate through sigma = 1, prices, S(h), firms' assets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmodel
from jaxmodel import firms, tasks
from jaxmodel.draws import stratified_normal

LOG_Y = jnp.asarray(np.random.default_rng(0).normal(0.0, 0.4, 40))


def direct_log_ces(log_y: np.ndarray, sigma: float) -> float:
    r = (sigma - 1.0) / sigma
    return float(np.log(np.mean(np.exp(r * log_y))) / r)


@pytest.mark.parametrize("sigma", [0.3, 0.7, 0.999, 1.001, 1.5, 4.0])
def test_ces_aggregate_equals_the_textbook_formula(sigma):
    # Away from r = 0 the textbook formula loses at most eps/|r| ~ 1e-12 at sigma = 1.001.
    assert float(tasks.log_ces_aggregate(LOG_Y, sigma)) == pytest.approx(
        direct_log_ces(np.asarray(LOG_Y), sigma), abs=1e-11
    )


def test_ces_aggregate_is_the_geometric_mean_at_sigma_one_and_smooth_through_it():
    geometric = float(jnp.mean(LOG_Y))
    assert float(tasks.log_ces_aggregate(LOG_Y, 1.0)) == pytest.approx(geometric, abs=1e-15)
    # The derivative in sigma at 1 is Var(log y)/2 (cumulant expansion: r = (sigma-1)/sigma).
    slope = float(jax.grad(tasks.log_ces_aggregate, argnums=1)(LOG_Y, 1.0))
    assert slope == pytest.approx(float(jnp.var(LOG_Y)) / 2, rel=1e-10)
    # Both sides of the switch between the series and the direct formula agree (r = +-1e-3).
    for s in (1 / (1 - 1e-3), 1 / (1 + 1e-3)):
        lo, hi = tasks.log_ces_aggregate(LOG_Y, s * (1 - 1e-12)), tasks.log_ces_aggregate(LOG_Y, s * (1 + 1e-12))
        assert abs(float(lo - hi)) < 1e-13
        glo = jax.grad(tasks.log_ces_aggregate, argnums=1)(LOG_Y, s * (1 - 1e-12))
        ghi = jax.grad(tasks.log_ces_aggregate, argnums=1)(LOG_Y, s * (1 + 1e-12))
        assert abs(float(glo - ghi)) < 1e-9


@pytest.mark.parametrize("sigma", [0.7, 1.0, 1.5])
def test_task_prices_are_marginal_products_of_the_aggregate(sigma):
    y = jnp.exp(LOG_Y)
    aggregate = lambda y: jnp.exp(tasks.log_ces_aggregate(jnp.log(y), sigma))  # noqa: E731
    assert jnp.allclose(tasks.task_prices(y, sigma), jax.grad(aggregate)(y), rtol=1e-12, atol=0)


def test_occupation_weights_are_row_stochastic_and_centred():
    z = tasks.task_grid(40)
    omega = tasks.occupation_weights(z, 10, 0.1)
    assert jnp.allclose(omega.sum(1), 1.0, atol=1e-14)
    # Occupation o's weighted mean task rises with o (bundles centred at (o - 1/2)/O).
    assert (jnp.diff(omega @ z) > 0).all()


def test_exposure_is_a_band():
    z = tasks.task_grid(40)
    a = tasks.exposure(z, 0.4, 0.85, 0.05)
    # Logistic edges of width w_a = 0.05: L(-4) = 0.018 at 0.2 below z_lo; the centre L(4.5)^2 = 0.978.
    assert float(a[z < 0.2].max()) < 0.018 and float(a[(z > 0.5) & (z < 0.75)].min()) > 0.85
    assert float(tasks.exposure(jnp.array(0.625), 0.4, 0.85, 0.05)) > 0.97


def test_augmentation_special_cases():
    h = jnp.linspace(0.2, 3.0, 9)
    p = jaxmodel.baseline()
    assert jnp.all(tasks.augmentation(h, p, "additive") == 1.0)
    assert jnp.allclose(tasks.augmentation(h, p.replace(mu=0.0), "partial_multiplicative"), 1.0, atol=1e-15)
    assert jnp.allclose(tasks.augmentation(h, p.replace(mu=1.5), "partial_multiplicative"), h**1.5, rtol=1e-13)
    assert jnp.allclose(tasks.augmentation(h, p.replace(omega=1.0), "ces"), h, rtol=1e-13)
    assert jnp.allclose(tasks.augmentation(h, p.replace(omega=0.0), "ces"), 1.0, atol=1e-15)
    ces = tasks.augmentation(h, p.replace(rho=-1.0, omega=0.5), "ces")
    assert jnp.allclose(ces, 1.0 / (0.5 / h + 0.5), rtol=1e-13)  # harmonic mean of h and 1


@pytest.mark.parametrize("gini_K", [0.2, 0.6, 0.8])
def test_stratified_lognormal_assets_have_the_target_gini(gini_K):
    """MODEL.md section 6, property 5: a lognormal asset draw with many firms has Gini close to Gini(K)."""
    K, K_tilde = firms.assets(stratified_normal(20_000), gini_K)
    sample = float(jaxmodel.weighted_gini(K, jnp.ones_like(K)))
    # Stratified quantiles truncate the lognormal's upper tail at Phi^{-1}(1 - 1/(2F)); at F = 20_000
    # the missing tail mass moves the Gini by < 0.5% of its value (0.0045 at Gini 0.8).
    assert sample == pytest.approx(gini_K, rel=5e-3)
    assert float(jnp.mean(K_tilde)) == pytest.approx(1.0, abs=1e-14)
