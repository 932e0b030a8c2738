"""Which cut of the work each stage of a multi-process run uses: agents over devices, or draw sets."""

from __future__ import annotations

import sys

from estimation.distributed.state import _STATE, is_writer


def place_draws(draws):
    """The estimation's draws for this run: as they are with one process; with several, the agents
    split over every process's devices (global arrays, ``jaxmodel.sharding.shard_draws``) and the
    firm draws replicated, so every evaluation of the moments and their Jacobian runs on all devices
    and its sums are collectives across processes.

    Every process makes the same draws from the same key first (N numbers each, cheap), so the
    global arrays hold exactly the single-process draws. When N is not a multiple of the number of
    devices the draws stay local: every process then computes everything, the same numbers.
    """
    if _STATE.count == 1:
        return draws
    import jax

    from jaxmodel.sharding import shard_draws

    if draws.u_theta.shape[0] % jax.device_count():
        if is_writer():
            print(f"levelfield: warning: N = {draws.u_theta.shape[0]} is not a multiple of the {jax.device_count()} "
                  f"devices of the {_STATE.count} processes; every process computes the whole model (same "
                  "results, no speed-up)", file=sys.stderr)
        return draws
    return shard_draws(draws, jax.devices())


def simulated_moments(params, key, settings, n_sets: int):
    """``estimation.msm.noise.simulated_moments`` with the draw sets spread over every device of
    every process: (n_sets, 6) as a NumPy array on every process.

    The sets are independent, so each device simulates its share whole (its own draws, no
    communication inside the model) and one all-gather brings the moments to every process. The keys
    are the single-process ones (``jax.random.split(key, n_sets)``); each set's moments equal the
    single-process ones to rounding (sets are vmapped in other batches).
    """
    import jax
    import numpy as np
    from jax.sharding import Mesh

    mesh = Mesh(np.array(jax.devices()), ("sets",))
    params = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), params)
    out = _spread_sets(params, np.asarray(jax.random.key_data(key)), settings, n_sets, mesh)
    return np.asarray(out)


def _spread_sets_impl(params, key_data, settings, n_sets: int, mesh):
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec

    import jaxmodel

    devices = mesh.devices.size
    per_device = -(-n_sets // devices)
    keys = jax.random.key_data(jax.random.split(jax.random.wrap_key_data(key_data), n_sets))
    if per_device * devices > n_sets:  # pad with copies of the first key (computed, then dropped)
        keys = jnp.concatenate([keys, jnp.repeat(keys[:1], per_device * devices - n_sets, axis=0)])

    def local(p, k):
        def one(key):
            return jaxmodel.moments(p, jaxmodel.make_draws(key, settings), settings).vector()

        return jax.lax.map(one, jax.random.wrap_key_data(k), batch_size=min(4, per_device))

    spec = PartitionSpec("sets")
    # check_vma=False: the model's fixed-point loops start from constants and carry per-device values.
    sims = jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(), spec), out_specs=spec,
                         check_vma=False)(params, keys)
    sims = jax.lax.with_sharding_constraint(sims, NamedSharding(mesh, PartitionSpec()))  # all-gather
    return sims[:n_sets]


def _spread_sets(params, key_data, settings, n_sets, mesh):
    import jax

    global _SPREAD_JIT
    if _SPREAD_JIT is None:
        _SPREAD_JIT = jax.jit(_spread_sets_impl, static_argnames=("settings", "n_sets", "mesh"))
    return _SPREAD_JIT(params, key_data, settings, n_sets, mesh)


_SPREAD_JIT = None
