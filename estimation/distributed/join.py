"""Joining the processes with ``jax.distributed.initialize``: CPU collectives, timeouts and a watchdog."""

from __future__ import annotations

import sys

from estimation.distributed import _jax_private
from estimation.distributed.state import _STATE, DistributedError, Launch


def collectives_available() -> tuple[bool, str]:
    """(True, "gloo") when this jaxlib has gloo CPU collectives, else (False, why): detected from the
    library and its configuration option, not guessed from the platform."""
    import jax

    ok, why = _jax_private.has_gloo()
    if not ok:
        return False, why
    try:
        previous = jax.config.jax_cpu_collectives_implementation
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.config.update("jax_cpu_collectives_implementation", previous)
    except (AttributeError, ValueError) as exc:
        return False, f"jax {jax.__version__} does not accept jax_cpu_collectives_implementation=gloo ({exc})"
    return True, "gloo"


def initialize(launch: Launch) -> None:
    """Join the processes of ``launch`` (``jax.distributed.initialize``); call before any JAX work.

    Sets gloo CPU collectives first (accelerators use their own), the heartbeat timeout to
    ``launch.heartbeat_timeout`` (a process that dies stops the others within about that many
    seconds with JAX's error "another task died") and the shutdown timeout (how long a finished
    process waits for the others) to twice that, at least 60 s.

    Raises:
        DistributedError: this JAX has no CPU collectives, its backend is already in use, or the
            processes did not all join within ``launch.connect_timeout`` seconds.
    """
    import jax

    ok, why = collectives_available()
    if ok:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    elif jax.config.jax_platforms in (None, "", "cpu"):
        raise DistributedError(f"a multi-process run on the CPU needs CPU collectives, and {why}")
    _release_import_time_backend()
    # The shutdown barrier waits for processes that are still finishing (process 0 writes the last
    # files after the others are done); a dead one is caught by the heartbeat first.
    kwargs = dict(initialization_timeout=launch.connect_timeout, heartbeat_timeout_seconds=launch.heartbeat_timeout,
                  shutdown_timeout_seconds=max(60, 2 * launch.heartbeat_timeout))
    if launch.source in ("options", "environment"):
        kwargs.update(coordinator_address=launch.coordinator, num_processes=launch.num_processes,
                      process_id=launch.process_id, cluster_detection_method="deactivate")
    else:  # the launcher's coordinator (its first node), count and rank, as JAX detects them
        kwargs.update(cluster_detection_method=launch.source)
    # JAX aborts the process when the others do not come in time; say why just before it does.
    import threading

    def late() -> None:
        print(f"levelfield: error: {_join_failure(launch)}", file=sys.stderr, flush=True)

    watchdog = threading.Timer(max(1.0, launch.connect_timeout - 1.0), late)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as exc:  # noqa: BLE001 - JAX raises RuntimeError, ValueError or its runtime error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistributedError(f"{_join_failure(launch)} ({first})") from None
    finally:
        watchdog.cancel()
    _STATE.index, _STATE.count, _STATE.launch = jax.process_index(), jax.process_count(), launch


def _join_failure(launch: Launch) -> str:
    who = f"process {launch.process_id}" if launch.process_id is not None else "this process"
    return (f"{who} could not join {launch.describe()} within {launch.connect_timeout} s: start every process "
            "with the same --coordinator and --num-processes and its own --process-id in 0..P-1, process 0 on the "
            "coordinator's host, all within that time")


def _release_import_time_backend() -> None:
    """jax.distributed.initialize refuses to run once a backend exists. Importing levelfield makes
    none: the package holds no JAX array at import (``jaxmodel/sorting.py`` keeps its module-level
    constant a NumPy ``np.uint64``), so this normally finds nothing to do. Should one exist all the
    same (started by code that ran first), it is released (``jax.extend.backend.clear_backends``)
    and rebuilt by initialize with every process's devices; levelfield computes nothing before
    initialize, so none of its arrays lived on the old one."""
    if _jax_private.backends_are_initialized():
        import jax.extend.backend

        jax.extend.backend.clear_backends()
