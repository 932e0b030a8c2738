"""Where this process stands in a run of several: its index, their count, who writes."""

from __future__ import annotations

import dataclasses

from estimation.errors import LevelfieldError

ENV_COORDINATOR = "LEVELFIELD_COORDINATOR"
ENV_NUM_PROCESSES = "LEVELFIELD_NUM_PROCESSES"
ENV_PROCESS_ID = "LEVELFIELD_PROCESS_ID"
ENV_HEARTBEAT = "LEVELFIELD_HEARTBEAT_TIMEOUT"
ENV_SWITCH = "LEVELFIELD_DISTRIBUTED"

#: Seconds without a heartbeat after which a process is declared dead and the others stop.
HEARTBEAT_TIMEOUT = 60
#: Seconds a process waits for the others to join (jax.distributed's initialization_timeout).
CONNECT_TIMEOUT = 300
#: Seconds of a barrier or an agreement between processes before it fails (a peer that never comes).
STEP_TIMEOUT_FLOOR = 120


class DistributedError(LevelfieldError, RuntimeError):
    """The processes of a multi-process run could not join, or fell out of step (not bad input: the
    CLI exits with code 1)."""


@dataclasses.dataclass(frozen=True)
class Launch:
    """Where this process stands among the processes of one run.

    Attributes:
        coordinator: HOST:PORT of process 0's coordination service (None: the launcher's, picked by JAX).
        num_processes: P (None: the launcher's).
        process_id: this process's index I in [0, P) (None: the launcher's).
        source: "options", "environment", "slurm" or "ompi".
        heartbeat_timeout: seconds without a heartbeat before a process is declared dead.
        connect_timeout: seconds to wait for every process to join.
    """

    coordinator: str | None
    num_processes: int | None
    process_id: int | None
    source: str
    heartbeat_timeout: int = HEARTBEAT_TIMEOUT
    connect_timeout: int = CONNECT_TIMEOUT

    def describe(self) -> str:
        where = self.coordinator or "the launcher's coordinator"
        return f"{self.num_processes} processes ({self.source}), coordinator {where}"


@dataclasses.dataclass
class _State:
    index: int = 0
    count: int = 1
    launch: Launch | None = None
    steps: int = 0
    stderr: object = None


_STATE = _State()


def process_index() -> int:
    """This process's index (0 when there is one process); never starts JAX's backend."""
    return _STATE.index


def process_count() -> int:
    """The number of processes of the run (1 when jax.distributed is not in use)."""
    return _STATE.count


def is_writer() -> bool:
    """True on the one process that writes files and prints (process 0)."""
    return _STATE.index == 0

