"""Tasks (MODEL.md section 4): the task grid, AI exposure, occupations' bundles, prices, S(h).

All functions are pure and shape-polymorphic; T is the number of tasks and O of occupations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Below this |r| = |(sigma - 1)/sigma| the CES aggregate uses its cumulant series (error about
# r^4 kappa_5/120 < 1e-15 for log task supplies spread over a unit range); above it the direct
# formula (absolute error about eps/|r| in its derivative, < 1e-12).
_R_SERIES = 1e-3


def task_grid(n_tasks: int, dtype=jnp.float64) -> jax.Array:
    """Midpoints z_k = (k - 1/2)/T, k = 1..T: (T,)."""
    return ((jnp.arange(n_tasks, dtype=jnp.float64) + 0.5) / n_tasks).astype(dtype)


def comparative_advantage(z: jax.Array, lam) -> jax.Array:
    """phi_k = exp(lambda z_k): (T,)."""
    return jnp.exp(lam * z)


def exposure(z: jax.Array, z_lo, z_hi, w_a) -> jax.Array:
    """AI exposure a_k = L((z_k - z_lo)/w_a) L((z_hi - z_k)/w_a), L logistic: (T,) in (0, 1)."""
    return jax.nn.sigmoid((z - z_lo) / w_a) * jax.nn.sigmoid((z_hi - z) / w_a)


def occupation_weights(z: jax.Array, n_occupations: int, b_occ) -> jax.Array:
    """Task weights omega_ok proportional to exp(-(z_k - c_o)^2 / (2 b_occ^2)), rows sum to 1.

    Occupation o = 1..O has centre c_o = (o - 1/2)/O, so occupation 1 holds the lowest tasks.

    Returns:
        (O, T) row-stochastic weights.
    """
    centres = task_grid(n_occupations, z.dtype)
    logits = -((z[None, :] - centres[:, None]) ** 2) / (2.0 * b_occ**2)
    return jax.nn.softmax(logits, axis=1)


def task_structure(params, n_tasks: int, n_occupations: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The task grid z (T,), AI exposure a (T,) and occupations' task weights omega (O, T) at
    ``params`` (float64): what every occupation-level summary of the model starts from."""
    z = task_grid(n_tasks)
    return z, exposure(z, params.z_lo, params.z_hi, params.w_a), occupation_weights(z, n_occupations, params.b_occ)


def log_ces_aggregate(log_y: jax.Array, sigma) -> jax.Array:
    """log Y with Y = (sum_k dz Y_k^r)^(1/r), r = (sigma - 1)/sigma, dz = 1/T.

    At sigma = 1 this is the geometric mean, log Y = mean_k log Y_k (Cobb-Douglas). The function is
    smooth through sigma = 1: with d_k = log Y_k - mean(log Y), it is
    mean(log Y) + log1p(mean(expm1(r d))) / r, and for |r| < 1e-3 the cumulant series
    mean(log Y) + r k2/2 + r^2 k3/6 + r^3 k4/24 (k_j the cumulants of d under dz).

    Args:
        log_y: (T,) log task supplies.
        sigma: elasticity of substitution (> 0).
    """
    centre = jnp.mean(log_y)
    d = log_y - centre
    r = (sigma - 1.0) / sigma
    small = jnp.abs(r) < _R_SERIES
    r_safe = jnp.where(small, _R_SERIES, r)
    direct = jnp.log1p(jnp.mean(jnp.expm1(r_safe * d))) / r_safe
    k2 = jnp.mean(d**2)
    k3 = jnp.mean(d**3)
    k4 = jnp.mean(d**4) - 3.0 * k2**2
    series = r * k2 / 2.0 + r**2 * k3 / 6.0 + r**3 * k4 / 24.0
    return centre + jnp.where(small, series, direct)


def task_prices(task_supply: jax.Array, sigma) -> jax.Array:
    """p_k = dz (Y / Y_k)^(1/sigma) = dY/dY_k: (T,) from (T,) task supplies Y_k > 0."""
    log_y = jnp.log(task_supply)
    dz = 1.0 / task_supply.shape[-1]
    return dz * jnp.exp((log_ces_aggregate(log_y, sigma) - log_y) / sigma)


def augmentation(h: jax.Array, params, spec: str) -> jax.Array:
    """S(h), how human capital scales the AI contribution U = F_k nu S(h) (MODEL.md section 4).

    - "additive": S(h) = 1 (the paper's core assumption);
    - "partial_multiplicative": S(h) = h^mu;
    - "ces": S(h) = (omega h^rho + 1 - omega)^(1/rho) (complementary when rho < 0).

    Args:
        h: human capital, any shape, > 0.
    """
    if spec == "additive":
        return jnp.ones_like(h)
    if spec == "partial_multiplicative":
        return jnp.exp(params.mu * jnp.log(h))
    if spec == "ces":
        rho, omega = params.rho, params.omega
        return jnp.exp(jnp.log(omega * jnp.exp(rho * jnp.log(h)) + 1.0 - omega) / rho)
    raise ValueError(f"unknown spec {spec!r}")  # Settings validates spec; unreachable
