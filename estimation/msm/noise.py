"""Omega_sim, the simulation noise of the model's moments, for the inference (MODEL.md section 7).

The moments at the estimate are simulated on independent draw sets; their covariance is the
simulation noise that the sandwich covariance and the J test add to the targets' sampling
variance, and that the two-step weights W2 = (Sigma_targets + Omega_sim)^-1 include.

The sets are simulated one at a time (:func:`simulated_moments`): each set's draws come from
``jaxmodel.make_draws`` (compiled for the estimation's own draws) and its moments from one program of
the moments alone. The default main job's inference stage compiled for 9.0 s so, against 15.4 s
with the draw sets mapped in one program, and ran as fast (README, Performance). With several
processes each set's agents are spread over them as the estimation's are.
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


@functools.partial(jax.jit, static_argnames="settings")
def _moments_on(params: Params, draws: jaxmodel.Draws, settings: Settings) -> tuple:
    return (jaxmodel.moments(params, draws, settings).vector(),)


def simulated_moments(params: Params, key: jax.Array, settings: Settings, n_sets: int) -> np.ndarray:
    """Moments at ``params`` on ``n_sets`` independent draw sets: (n_sets, 6).

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
    return np.stack(rows)


def simulation_noise(params: Params, key: jax.Array, settings: Settings, n_sets: int) -> np.ndarray:
    """Omega_sim at ``params``: the covariance (ddof 1) of :func:`simulated_moments`, (6, 6)."""
    return np.cov(simulated_moments(params, key, settings, n_sets), rowvar=False, ddof=1)
