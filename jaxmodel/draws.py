"""Common random numbers (MODEL.md section 2), made once from one PRNG key and held fixed.

The objective of an estimation is a smooth deterministic function of the parameters because the
draws never change during it. Firms are few, so their asset draws are stratified, not random:
u_K_j = Phi^{-1}((j - 1/2)/F), j = 1..F, which removes most of the simulation noise of the Gini
and of the between-firm moments.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from jaxmodel.errors import InvalidDrawsError
from jaxmodel.settings import Settings

AGENT_DRAWS: tuple[str, ...] = ("u_theta", "u_c", "u_o", "u_nu", "u_eps", "u_f")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Draws:
    """Standard-normal draws of one simulated economy.

    Attributes:
        u_theta: (N,) ability.
        u_c: (N,) education cost.
        u_o: (N,) occupation sorting noise.
        u_nu: (N,) AI contribution (independent of ability).
        u_eps: (N,) work-sample signal noise.
        u_f: (N,) firm sorting noise.
        u_K: (F,) stratified asset draws, increasing in j.
    """

    u_theta: jax.Array
    u_c: jax.Array
    u_o: jax.Array
    u_nu: jax.Array
    u_eps: jax.Array
    u_f: jax.Array
    u_K: jax.Array


def stratified_normal(n: int, dtype: Any = jnp.float64) -> jax.Array:
    """Phi^{-1}((j - 1/2)/n) for j = 1..n: (n,) increasing standard-normal quantiles."""
    return ndtri((jnp.arange(n, dtype=jnp.float64) + 0.5) / n).astype(dtype)


def make_draws(key: jax.Array | int, settings: Settings) -> Draws:
    """Draw the economy's shocks from one PRNG key (or an integer seed).

    Same key and settings give bit-identical draws. ``jax.vmap(make_draws, (0, None))`` over a
    batch of keys gives independent draw sets (the stratified u_K is the same in each).

    Args:
        key: a JAX PRNG key (``jax.random.key(k)`` or ``jax.random.PRNGKey(k)``) or an int seed.
        settings: the static settings (sizes, precision).

    Returns:
        Draws with (N,) agent draws and (F,) stratified asset draws in ``settings.dtype``.
    """
    if not isinstance(settings, Settings):
        raise InvalidDrawsError(f"settings must be a jaxmodel.Settings, got {type(settings).__name__}")
    if isinstance(key, int):
        key = jax.random.key(key)
    return _make_draws(key, settings)


@functools.partial(jax.jit, static_argnames="settings")
def _make_draws(key: jax.Array, settings: Settings) -> Draws:
    """One compiled program per Settings (cached across processes by the CLI)."""
    keys = jax.random.split(key, len(AGENT_DRAWS))
    n = settings.n_agents
    # Drawn in float64 and rounded to the working precision, so that a float32 economy has the
    # same draws as the float64 one (to float32 rounding).
    agent = {
        name: jax.random.normal(k, (n,), dtype=jnp.float64).astype(settings.dtype)
        for name, k in zip(AGENT_DRAWS, keys)
    }
    return Draws(**agent, u_K=stratified_normal(settings.n_firms, settings.dtype))


def check_draws(draws: Draws, settings: Settings) -> None:
    """Refuse draws whose shapes do not match the settings (before any heavy work)."""
    if not isinstance(draws, Draws):
        raise InvalidDrawsError(f"draws must be a jaxmodel.Draws, got {type(draws).__name__}")
    for name in AGENT_DRAWS:
        shape = getattr(draws, name).shape
        if shape != (settings.n_agents,):
            raise InvalidDrawsError(
                f"draws.{name} has shape {shape}, but settings.n_agents={settings.n_agents} needs "
                f"({settings.n_agents},); make the draws with make_draws(key, settings)"
            )
    if draws.u_K.shape != (settings.n_firms,):
        raise InvalidDrawsError(
            f"draws.u_K has shape {draws.u_K.shape}, but settings.n_firms={settings.n_firms} needs "
            f"({settings.n_firms},)"
        )
