"""Several processes, one program: JAX's own multi-controller runtime (``jax.distributed``).

Every process runs the same command (SPMD). :func:`initialize` joins them through
``jax.distributed.initialize`` before any JAX computation, with gloo collectives on the CPU and
bounded heartbeat and shutdown timeouts, so that a process that dies stops the others with JAX's
error ("another task died") instead of a hang. After it, ``jax.devices()`` lists every process's
devices, and arrays placed with ``jaxmodel.sharding.shard_draws(draws, jax.devices())`` are global:
each process holds its own agents and XLA adds the per-occupation and per-firm sums across
processes.

Only process 0 writes files and prints: :func:`is_writer` gates the atomic writes of
``estimation.output.runfiles``, and :func:`quiet_others` silences the other processes' output (their
errors still reach their stderr, prefixed with their process number). A results folder lives on a
filesystem every process sees (as on a cluster), so every process reads the same checkpoint when a
run is resumed; :func:`agree` and :func:`barrier` keep the processes in step where they touch it.

How a process learns its place, first match wins:

1. ``--coordinator HOST:PORT --num-processes P --process-id I`` (options of ``levelfield`` before
   the command), each defaulting to ``$LEVELFIELD_COORDINATOR``, ``$LEVELFIELD_NUM_PROCESSES``,
   ``$LEVELFIELD_PROCESS_ID``; the three go together.
2. A cluster launcher JAX detects: Slurm (``srun``: ``SLURM_NTASKS``, ``SLURM_PROCID``, ...) or
   Open MPI (``mpirun``: ``OMPI_MCA_orte_hnp_uri``, ``OMPI_COMM_WORLD_SIZE``, ...), with more than one
   task; JAX then picks the coordinator (the job's first node) and the port.
3. Otherwise, or with ``LEVELFIELD_DISTRIBUTED=off``, one process as always.
"""

from __future__ import annotations

from estimation.distributed.cuts import agent_share, place_draws
from estimation.distributed.join import collectives_available, initialize
from estimation.distributed.launch import check_coordinator, resolve
from estimation.distributed.state import (
    CONNECT_TIMEOUT,
    ENV_COORDINATOR,
    ENV_HEARTBEAT,
    ENV_NUM_PROCESSES,
    ENV_PROCESS_ID,
    ENV_SWITCH,
    HEARTBEAT_TIMEOUT,
    STEP_TIMEOUT_FLOOR,
    DistributedError,
    Launch,
    is_writer,
    process_count,
    process_index,
)
from estimation.distributed.stdio import quiet_others, report_error
from estimation.distributed.steps import agree, barrier
from estimation.errors import ConfigError

__all__ = [
    "ConfigError", "DistributedError", "Launch", "agent_share", "agree", "barrier", "check_coordinator", "collectives_available",
    "initialize", "is_writer", "place_draws", "process_count", "process_index", "quiet_others", "report_error",
    "resolve",
    "CONNECT_TIMEOUT", "ENV_COORDINATOR", "ENV_HEARTBEAT", "ENV_NUM_PROCESSES", "ENV_PROCESS_ID", "ENV_SWITCH",
    "HEARTBEAT_TIMEOUT", "STEP_TIMEOUT_FLOOR",
]
