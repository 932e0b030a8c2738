"""Agents sharded over devices with JAX's own sharding (no code of ours in the collectives).

``shard_draws`` places the (N,) agent draws on a one-axis mesh of devices with
``NamedSharding(mesh, P("agents"))`` and replicates the (F,) asset draws. ``moments`` and its
derivatives then run unchanged: jit propagates the sharding through the computation and XLA turns
the per-occupation and per-firm sums into collectives (all-reduce) across devices.

Several processes (``jax.distributed``, as the CLI starts them: ``estimation.distributed``): the
mesh over ``jax.devices()`` spans every process's devices and is not fully addressable from any one
of them. Every process then makes the same draws (same key) and ``shard_draws`` builds global arrays
with ``jax.make_array_from_callback``: each process places only the slices of its own devices, with
no communication; the firm draws are replicated on every device. Each process runs the same program
(SPMD) and the per-occupation and per-firm sums become collectives across processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxmodel.draws import AGENT_DRAWS, Draws
from jaxmodel.errors import InvalidSettingError

AXIS = "agents"


def agent_mesh(devices: Sequence | None = None) -> Mesh:
    """A one-axis mesh named "agents" over ``devices`` (default: all devices)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), (AXIS,))


def shard_draws(draws: Draws, devices: Sequence | None = None) -> Draws:
    """The draws with the agent axis split over devices and the firm draws replicated.

    Raises:
        InvalidSettingError: N is not a multiple of the number of devices.
    """
    mesh = agent_mesh(devices)
    n, k = draws.u_theta.shape[0], mesh.devices.size
    if n % k:
        raise InvalidSettingError(f"n_agents={n} must be a multiple of the number of devices ({k}) to shard agents")
    agents = NamedSharding(mesh, PartitionSpec(AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())
    place = jax.device_put if agents.is_fully_addressable else _global
    placed = {name: place(getattr(draws, name), agents) for name in AGENT_DRAWS}
    return Draws(**placed, u_K=place(draws.u_K, replicated))


def _global(x, sharding: NamedSharding) -> jax.Array:
    """A global array over devices of several processes from the same full value on every process:
    each process fills its own devices' slices (``make_array_from_callback``, no communication)."""
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
