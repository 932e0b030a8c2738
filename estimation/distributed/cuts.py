"""The cut of the work a multi-process run uses: the agents over every process's devices."""

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
    n = draws.u_theta.shape[0]
    if agent_share(n) == 1:
        if _STATE.count > 1 and is_writer():
            import jax

            print(f"levelfield: warning: N = {n} is not a multiple of the {jax.device_count()} "
                  f"devices of the {_STATE.count} processes; every process computes the whole model (same "
                  "results, no speed-up)", file=sys.stderr)
        return draws
    import jax

    from jaxmodel.sharding import shard_draws

    return shard_draws(draws, jax.devices())


def agent_share(n_agents: int) -> int:
    """Over how many processes :func:`place_draws` splits ``n_agents`` agents: each holds 1/that of
    them (1 with one process, or when N is not a multiple of the devices and every process holds all).
    The one rule of the cut, used by place_draws and by the memory check."""
    if _STATE.count == 1:
        return 1
    import jax

    return _STATE.count if n_agents % jax.device_count() == 0 else 1
