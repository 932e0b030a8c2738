"""Agents sharded over devices with JAX's own sharding (no code of ours in the collectives).

``shard_draws`` places the (N,) agent draws on a one-axis mesh of devices with
``NamedSharding(mesh, P("agents"))`` and replicates the (F,) asset draws. ``moments`` and its
derivatives then run unchanged: jit propagates the sharding through the computation and XLA turns
the per-occupation and per-firm sums into collectives (all-reduce) across devices.

Multi-host use: start every process with ``jax.distributed.initialize(coordinator_address, num_processes,
process_id)`` before anything else, then build the mesh over ``jax.devices()`` (all hosts' devices)
and call ``shard_draws(draws, jax.devices())``; each process runs the same program (SPMD).
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
    placed = {name: jax.device_put(getattr(draws, name), agents) for name in AGENT_DRAWS}
    return Draws(**placed, u_K=jax.device_put(draws.u_K, replicated))
