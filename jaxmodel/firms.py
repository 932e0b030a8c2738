"""Firms (MODEL.md section 4): complementary assets, AI access, rents and owners.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri


def asset_dispersion(gini_K) -> jax.Array:
    """sigma_K = sqrt(2) Phi^{-1}((Gini(K) + 1)/2): the lognormal sigma whose Gini is Gini(K)."""
    return jnp.sqrt(2.0) * ndtri((gini_K + 1.0) / 2.0)


def assets(u_K: jax.Array, gini_K) -> tuple[jax.Array, jax.Array]:
    """K_j = exp(sigma_K u_K_j - sigma_K^2/2) and K~_j = K_j / mean(K).

    Args:
        u_K: (F,) stratified standard-normal quantiles.

    Returns:
        (K, K_tilde), each (F,).
    """
    sigma_K = asset_dispersion(gini_K)
    K = jnp.exp(sigma_K * u_K - sigma_K**2 / 2.0)
    return K, K / jnp.mean(K)


def proprietary_access(K_tilde: jax.Array, eta1, psi) -> jax.Array:
    """chi1_j = eta1 K~_j^psi: (F,) proprietary AI access (commodity access chi0 = eta0 everywhere)."""
    return eta1 * jnp.exp(psi * jnp.log(K_tilde))


def firm_rents(K: jax.Array, r_K, mean_wage, agents_per_firm: int, ai_rents: jax.Array) -> jax.Array:
    """Pi_j = r_K K_j mean(w^c) (N/F) + sum_{i in j} sum_e w_ie MPp_ie: (F,).

    Args:
        K: (F,) assets; mean_wage: mean(w^c) over all worker-branches; ai_rents: (F,) the firm's sum of
            proprietary marginal products.
    """
    return r_K * K * mean_wage * agents_per_firm + ai_rents


def owner_mass(owner_share, n_agents: int, n_firms: int) -> jax.Array:
    """m_o = pi_o N / ((1 - pi_o) F): owner persons per firm, so owners are a share pi_o of persons."""
    return owner_share * n_agents / ((1.0 - owner_share) * n_firms)
