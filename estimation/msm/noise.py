"""Omega_sim, the simulation noise of the model's moments, for the inference (MODEL.md section 7).

The moments at the estimate are simulated on independent draw sets; their covariance is the
simulation noise that the sandwich covariance and the J test add to the targets' sampling
variance, and that the two-step weights W2 = (Sigma_targets + Omega_sim)^-1 include.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import jaxmodel
from estimation import distributed
from estimation.msm import programs
from jaxmodel import Params, Settings


@functools.partial(jax.jit, static_argnames=("settings", "n_sets"))
def _simulated_moments(params: Params, key_data: jax.Array, settings: Settings, n_sets: int) -> tuple:
    keys = jax.random.split(jax.random.wrap_key_data(key_data), n_sets)

    def one(k):
        return jaxmodel.moments(params, jaxmodel.make_draws(k, settings), settings).vector()

    return (jax.lax.map(one, keys, batch_size=min(4, n_sets)),)


def simulated_moments(params: Params, key: jax.Array, settings: Settings, n_sets: int) -> jax.Array:
    """Moments at ``params`` on ``n_sets`` independent draw sets: (n_sets, 6).

    Draw sets come from ``jax.random.split(key, n_sets)`` and are simulated in batches of four
    (``lax.map`` with ``batch_size``, i.e. ``vmap`` within a batch). With several processes the
    sets are spread over every device of every process (``estimation.distributed``).
    """
    if distributed.process_count() > 1:
        return distributed.simulated_moments(params, key, settings, n_sets)
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), params)
    return programs.call("simulated_moments", _simulated_moments, (settings, n_sets), params,
                         jax.random.key_data(key))[0]


def simulation_noise(params: Params, key: jax.Array, settings: Settings, n_sets: int) -> np.ndarray:
    """Omega_sim: covariance (ddof 1) of the simulated moments over ``n_sets`` draw sets: (6, 6)."""
    sims = np.asarray(simulated_moments(params, key, settings, n_sets))
    return np.cov(sims, rowvar=False, ddof=1)
