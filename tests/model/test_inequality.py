"""The exact weighted Gini and the between-group variance share against independent formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodel import between_group_share, weighted_gini


def brute_force_gini(x: np.ndarray, w: np.ndarray) -> float:
    """sum_ij w_i w_j |x_i - x_j| / (2 (sum w)^2 mu): the O(n^2) definition."""
    total = w.sum()
    mu = (w * x).sum() / total
    return float((w[:, None] * w[None, :] * np.abs(x[:, None] - x[None, :])).sum() / (2 * total**2 * mu))


@pytest.mark.parametrize("seed", range(6))
def test_gini_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    x = rng.lognormal(0.0, 1.0, n)
    if seed % 2:  # ties: incomes on a coarse grid
        x = np.round(x, 1) + 0.1
    w = rng.uniform(0.0, 3.0, n)
    # Both sides are sums of O(n^2) terms of order 1 in float64: agreement to 1e-12 is rounding.
    assert abs(float(weighted_gini(jnp.asarray(x), jnp.asarray(w))) - brute_force_gini(x, w)) < 1e-12


def test_gini_known_cases():
    assert float(weighted_gini(jnp.full(50, 3.0), jnp.ones(50))) == pytest.approx(0.0, abs=1e-15)
    for n in (2, 10, 1000):
        x = jnp.zeros(n).at[n // 3].set(5.0)
        assert float(weighted_gini(x, jnp.ones(n))) == pytest.approx((n - 1) / n, abs=1e-14)


def test_gini_integer_weights_replicate_observations():
    rng = np.random.default_rng(3)
    x = rng.lognormal(size=40)
    k = rng.integers(0, 5, size=40)
    replicated = np.repeat(x, k)
    assert float(weighted_gini(jnp.asarray(x), jnp.asarray(k, float))) == pytest.approx(
        float(weighted_gini(jnp.asarray(replicated), jnp.ones(replicated.size))), abs=1e-13
    )


def test_gini_batches_with_vmap_and_jit():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.lognormal(size=(3, 200)))
    w = jnp.asarray(rng.uniform(size=(3, 200)))
    batched = jax.jit(jax.vmap(weighted_gini))(x, w)
    for b in range(3):
        assert float(batched[b]) == pytest.approx(brute_force_gini(np.asarray(x[b]), np.asarray(w[b])), abs=1e-12)


def test_gini_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.lognormal(size=30))
    w = jnp.asarray(rng.uniform(0.5, 2.0, size=30))
    g = jax.grad(weighted_gini, argnums=(0, 1))(x, w)
    h = 1e-6
    for i in (0, 7, 19):
        e = jnp.zeros(30).at[i].set(h)
        fd_x = (weighted_gini(x + e, w) - weighted_gini(x - e, w)) / (2 * h)
        fd_w = (weighted_gini(x, w + e) - weighted_gini(x, w - e)) / (2 * h)
        # Central differences of a smooth function (no ties within h): error O(h^2) + eps/h ~ 1e-10.
        assert float(g[0][i]) == pytest.approx(float(fd_x), abs=1e-8)
        assert float(g[1][i]) == pytest.approx(float(fd_w), abs=1e-8)


def test_between_group_share_matches_numpy():
    rng = np.random.default_rng(6)
    n, groups = 500, 7
    x = rng.normal(size=n) + rng.integers(0, 3, size=groups)[rng.integers(0, groups, size=n)]
    g = rng.integers(0, groups, size=n)
    w = rng.uniform(0.1, 1.0, size=n)
    mean = np.average(x, weights=w)
    total = np.average((x - mean) ** 2, weights=w)
    between = sum(
        w[g == k].sum() * (np.average(x[g == k], weights=w[g == k]) - mean) ** 2 for k in range(groups)
    ) / w.sum()
    got = float(between_group_share(jnp.asarray(x), jnp.asarray(w), jnp.asarray(g), groups))
    assert got == pytest.approx(between / total, abs=1e-12)
