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

import dataclasses
import os
import re
import sys
from collections.abc import Mapping

from estimation.errors import ConfigError, LevelfieldError

__all__ = [
    "DistributedError", "Launch", "agree", "barrier", "collectives_available", "initialize", "is_writer",
    "place_draws", "process_count", "process_index", "quiet_others", "resolve", "simulated_moments",
]

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


# --------------------------------------------------------------------------------------------------
# Options and their checks (no JAX, no work)


def _int(text, name: str, minimum: int, allowed: str) -> int:
    try:
        value = int(str(text).strip().replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name} {text!r} is not a whole number; allowed: {allowed}") from None
    if value < minimum:
        raise ConfigError(f"{name} {value} is not allowed; allowed: {allowed}")
    return value


def check_coordinator(text: str, name: str = "--coordinator") -> str:
    """HOST:PORT (an IPv6 host in brackets, [::1]:1234), port in 1..65535; returns it stripped."""
    text = str(text).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port:
        raise ConfigError(f"{name} {text!r} must look like HOST:PORT, e.g. 10.0.0.1:12345 or node001:12345")
    if host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        raise ConfigError(f"{name} {text!r}: write an IPv6 host in brackets, e.g. [::1]:12345")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"{name} {text!r}: the port {port!r} is not a whole number; allowed: 1..65535") from None
    if not 1 <= number <= 65535:
        raise ConfigError(f"{name} {text!r}: the port {number} is not allowed; allowed: 1..65535")
    return text


def resolve(coordinator: str | None = None, num_processes: int | str | None = None,
            process_id: int | str | None = None, heartbeat_timeout: int | str | None = None,
            environ: Mapping[str, str] | None = None) -> Launch | None:
    """The launch of this process, checked, from the options (None: not given) and ``environ``;
    None for a plain single-process run.

    Raises:
        ConfigError: a malformed or out-of-range value, or some of the three options without the others.
    """
    env = os.environ if environ is None else environ
    switch = env.get(ENV_SWITCH, "").strip().lower()
    if switch not in ("", "on", "off", "auto"):
        raise ConfigError(f"{ENV_SWITCH}={switch!r} is not allowed; allowed: off, on, auto")
    heartbeat = heartbeat_timeout if heartbeat_timeout is not None else env.get(ENV_HEARTBEAT) or HEARTBEAT_TIMEOUT
    heartbeat = _int(heartbeat, "--heartbeat-timeout" if heartbeat_timeout is not None else ENV_HEARTBEAT,
                     1, "whole seconds >= 1")

    given = {
        "--coordinator": (coordinator, ENV_COORDINATOR),
        "--num-processes": (num_processes, ENV_NUM_PROCESSES),
        "--process-id": (process_id, ENV_PROCESS_ID),
    }
    values, names = {}, {}
    for option, (value, var) in given.items():
        if value is not None:
            values[option], names[option] = value, option
        elif env.get(var, "").strip():
            values[option], names[option] = env[var], f"${var}"
    source = "options" if any(value is not None for value, _ in given.values()) else "environment"
    if values:
        missing = [f"{o} (or ${v})" for o, (_, v) in given.items() if o not in values]
        if missing:
            present = ", ".join(names[o] for o in given if o in values)
            raise ConfigError(f"{present} given without {' and '.join(missing)}: a multi-process run needs "
                              "--coordinator HOST:PORT, --num-processes P and --process-id I together")
        address = check_coordinator(values["--coordinator"], names["--coordinator"])
        count = _int(values["--num-processes"], names["--num-processes"], 1, "whole numbers >= 1")
        index = _int(values["--process-id"], names["--process-id"], 0, f"0..{count - 1}")
        if index >= count:
            raise ConfigError(f"{names['--process-id']} {index} is not allowed with {count} processes; "
                              f"allowed: 0..{count - 1}")
        if switch == "off":
            raise ConfigError(f"{ENV_SWITCH}=off contradicts {', '.join(names.values())}; drop one of them")
        if count == 1:
            return None
        return Launch(address, count, index, source, heartbeat)
    if switch == "off":
        return None
    cluster = _detect_cluster(env)
    if cluster is None:
        return None
    name, count, index = cluster
    if count == 1:
        return None
    return Launch(None, count, index, name, heartbeat)


def _detect_cluster(env: Mapping[str, str]) -> tuple[str, int, int] | None:
    """(launcher, P, I) under a launcher JAX's cluster detection knows (Slurm, Open MPI), else None.

    The presence tests are JAX's own (``jax._src.clusters``); the counts are checked here so that a
    malformed variable is a one-line error, not a traceback from inside JAX.
    """
    launchers = [
        ("slurm", ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"),
         "SLURM_NTASKS", "SLURM_PROCID"),
        ("ompi", ("OMPI_MCA_orte_hnp_uri",), "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
    ]
    present = _jax_cluster_presence(env)
    for name, required, count_var, index_var in launchers:
        found = present.get(name) if present is not None else all(v in env for v in required)
        if not found:
            continue
        if count_var not in env or index_var not in env:
            raise ConfigError(f"started under {name} without ${count_var} and ${index_var}; set them, or "
                              f"{ENV_SWITCH}=off for one process")
        count = _int(env[count_var], f"${count_var}", 1, "whole numbers >= 1")
        index = _int(env[index_var], f"${index_var}", 0, f"0..{count - 1}")
        if index >= count:
            raise ConfigError(f"${index_var}={index} is not allowed with ${count_var}={count}; "
                              f"allowed: 0..{count - 1}")
        return name, count, index
    return None


def _jax_cluster_presence(env: Mapping[str, str]) -> dict[str, bool] | None:
    """JAX's own presence tests of Slurm and Open MPI (they read os.environ), or None if this JAX has
    them elsewhere (then the variables they test are checked here)."""
    if env is not os.environ:
        return None
    try:
        from jax._src.clusters.ompi_cluster import OmpiCluster
        from jax._src.clusters.slurm_cluster import SlurmCluster
    except ImportError:  # pragma: no cover - another JAX layout
        return None
    return {"slurm": SlurmCluster.is_env_present(), "ompi": OmpiCluster.is_env_present()}


# --------------------------------------------------------------------------------------------------
# Joining the processes


def collectives_available() -> tuple[bool, str]:
    """(True, "gloo") when this jaxlib has gloo CPU collectives, else (False, why): detected from the
    library and its configuration option, not guessed from the platform."""
    import jax

    try:
        from jax._src.lib import _jax
    except ImportError as exc:  # pragma: no cover - another JAX layout
        return False, f"jaxlib's extension cannot be imported ({exc})"
    if not hasattr(_jax, "make_gloo_tcp_collectives"):
        return False, f"jaxlib {jax.__version__} has no gloo CPU collectives (no make_gloo_tcp_collectives)"
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
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        import jax.extend.backend

        jax.extend.backend.clear_backends()


def quiet_others() -> None:
    """Silence every process but process 0 (their Python stdout and stderr, and C++ output on fd 1),
    keeping their fd 2 for JAX's fatal errors; on process 0 the C++ libraries' messages on fd 1 (gloo
    prints its connections there) go to stderr, so that stdout holds only levelfield's output."""
    if _STATE.count == 1:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    _STATE.stderr = sys.stderr
    if is_writer():
        keep = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = os.fdopen(keep, "w", buffering=1, encoding=sys.stdout.encoding or "utf-8",
                               errors=sys.stdout.errors or "strict")
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    sys.stdout = sink
    sys.stderr = sink
    sys.excepthook = _excepthook


def _excepthook(kind, value, traceback) -> None:
    import traceback as tb

    stream = _STATE.stderr or sys.__stderr__
    stream.write(f"[process {_STATE.index}] " + "".join(tb.format_exception(kind, value, traceback)))
    stream.flush()


def report_error(text: str) -> None:
    """One line on this process's real stderr (processes other than 0 prefix their number)."""
    stream = _STATE.stderr or sys.stderr
    prefix = "" if is_writer() else f"[process {_STATE.index}] "
    print(prefix + text, file=stream, flush=True)


# --------------------------------------------------------------------------------------------------
# Keeping the processes in step (the coordination service's key-value store; no XLA program)


def _client():
    from jax._src import distributed as jax_distributed

    client = jax_distributed.global_state.client
    if client is None:  # pragma: no cover - initialize() sets it
        raise DistributedError("jax.distributed is not initialized")
    return client


def _timeout_ms() -> int:
    launch = _STATE.launch
    seconds = max(STEP_TIMEOUT_FLOOR, 2 * (launch.heartbeat_timeout if launch else HEARTBEAT_TIMEOUT))
    return 1000 * seconds


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (no-op with one process).

    Raises:
        DistributedError: not every process arrived within the step timeout.
    """
    if _STATE.count == 1:
        return
    _STATE.steps += 1
    try:
        _client().wait_at_barrier(f"levelfield-{_STATE.steps}-{name}", _timeout_ms())
    except Exception as exc:  # noqa: BLE001 - the client raises its runtime error
        raise _step_error(name, exc) from None


def agree(name: str, error: str | None) -> str | None:
    """Every process's outcome of the same step: returns the error of the lowest-numbered process
    that had one (prefixed with its number when it is not this process's own), else None.

    Lets every process raise the same error when, say, one of them cannot see a folder, instead of
    one raising and the others waiting for it.
    """
    if _STATE.count == 1:
        return error
    _STATE.steps += 1
    prefix = f"levelfield-{_STATE.steps}-{name}"
    client = _client()
    try:
        client.key_value_set(f"{prefix}/{_STATE.index}", "\x00" if error is None else "\x01" + error)
        for index in range(_STATE.count):
            value = client.blocking_key_value_get(f"{prefix}/{index}", _timeout_ms())
            if value.startswith("\x01"):
                return value[1:] if index == _STATE.index else f"(process {index}) {value[1:]}"
    except Exception as exc:  # noqa: BLE001 - the client raises its runtime error
        raise _step_error(name, exc) from None
    return None


def _step_error(name: str, exc: Exception) -> DistributedError:
    text = " ".join(str(exc).split())
    dead = re.search(r"Task (\d+) heartbeat timeout", text)
    if dead:
        return DistributedError(f"process {dead.group(1)} stopped sending heartbeats (it died or was killed) while "
                                f"process {_STATE.index} waited for it at {name!r}")
    return DistributedError(f"the processes fell out of step at {name!r}: {text[:400]}")


# --------------------------------------------------------------------------------------------------
# Which cut each stage uses (see the module's and the README's "Several processes")


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
    """``estimation.msm.optimiser.simulated_moments`` with the draw sets spread over every device of
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
