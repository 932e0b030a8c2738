"""Omega_sim, the simulation noise of the model's moments, for the inference (MODEL.md section 7).

The moments at the estimate are simulated on independent draw sets; their covariance is the
simulation noise that the sandwich covariance and the J test add to the targets' sampling
variance, and that the two-step weights W2 = (Sigma_targets + Omega_sim)^-1 include.

A calibration computes them set by set (:func:`simulation_noise`): each set's draws come from
``jaxmodel.make_draws`` (compiled for the estimation's own draws) and its moments from one program of
the moments alone: the default main job's inference stage compiled for 9.0 s with it against
15.4 s with the draw sets mapped in one program, and ran as fast (README, Performance). With several
processes each set's agents are spread over them as the estimation's are.
:func:`simulated_moments` is the same simulation as one program of the moments alone, for use
outside a calibration (with several processes it spreads the sets over their devices).
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
    """Moments at ``params`` on ``n_sets`` independent draw sets: (n_sets, 6), one program.

    Draw sets come from ``jax.random.split(key, n_sets)`` and are simulated in batches of four
    (``lax.map`` with ``batch_size``, i.e. ``vmap`` within a batch). With several processes the
    sets are spread over every device of every process (``estimation.distributed``).
    """
    if distributed.process_count() > 1:
        return distributed.simulated_moments(params, key, settings, n_sets)
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), params)
    return programs.call("simulated_moments", _simulated_moments, (settings, n_sets), params,
                         jax.random.key_data(key))[0]


@functools.partial(jax.jit, static_argnames="settings")
def _moments_on(params: Params, draws: jaxmodel.Draws, settings: Settings) -> tuple:
    return (jaxmodel.moments(params, draws, settings).vector(),)


def simulation_noise(params: Params, key: jax.Array, settings: Settings, n_sets: int) -> np.ndarray:
    """Omega_sim at ``params``: the covariance (ddof 1) of the moments over ``n_sets`` draw sets, (6, 6).

    Set i has the draws ``jaxmodel.make_draws(jax.random.split(key, n_sets)[i])`` (the program the
    estimation's own draws compiled), placed as the estimation's are (with several processes, the
    agents over every device of every process: ``distributed.place_draws``), and its moments from
    one program of the moments of one draw set, called once per set.
    """
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), params)
    rows = []
    for k in jax.random.split(key, n_sets):
        draws = distributed.place_draws(jaxmodel.make_draws(k, settings))
        rows.append(np.asarray(programs.call("moments_on", _moments_on, (settings,), params, draws)[0]))
    return np.cov(np.stack(rows), rowvar=False, ddof=1)
