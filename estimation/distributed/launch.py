"""How a multi-process run is launched: its options and JAX's launcher, checked before any work (no JAX)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from estimation.distributed import _jax_private
from estimation.distributed.state import ENV_COORDINATOR, ENV_HEARTBEAT, ENV_NUM_PROCESSES, ENV_PROCESS_ID, ENV_SWITCH, HEARTBEAT_TIMEOUT, Launch
from estimation.errors import ConfigError


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

    The presence tests are JAX's own (``_jax_private.cluster_presence``); the counts are checked here so that a
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
    """JAX's own presence tests of Slurm and Open MPI when ``env`` is the process's environment (they
    read os.environ), else None (then the variables they test are checked here)."""
    if env is not os.environ:
        return None
    return _jax_private.cluster_presence()
