"""Whether a command fits in memory: the peak it needs at its size against what the machine offers.

A command's peak is a fixed part, ``FIXED_BYTES[command]`` (the interpreter, JAX, XLA compiling the
command's programs on a first run; less when they come from the compilation cache), plus a part
proportional to the agents, ``BYTES_PER_AGENT[command, precision]``: the simulated agents' draws,
their per-branch arrays of both AI states and the temporaries of the programs that use them (for
``calibrate`` and ``identify``, the forward-mode Jacobian's tangents too; on the CPU their starts and
points run one at a time, so neither the starts nor the points change the peak).
The per-agent figures are measured as peak resident memory of whole processes at several sizes
(``benchmarks/bench_memory.py``, ``benchmarks/results/memory_<command>.json``); sums over firms, tasks and
occupations are small beside them. Agents split over devices and processes divide the per-agent
part. The check runs before the draws are made, so a size that cannot fit is refused in one line
instead of a traceback from the allocator, or the operating system's silent kill; the refusal says
what fits.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from estimation.errors import ConfigError

#: Peak bytes per simulated agent (see the module docstring): the slope of peak RSS in N.
BYTES_PER_AGENT: dict[tuple[str, str], int] = {
    ("simulate", "float64"): 370,
    ("simulate", "float32"): 215,
    # calibrate: the slope of runs at 1e5, 3e5 and 6e5 agents is 2,240-2,290 bytes in float64 and
    # 1,250-1,490 in float32 with XLA:CPU's library fusions off (jaxmodel.compilation; 3,370-3,560 and
    # 1,110-2,170 with them on), memory_calibrate.json; identify: 2,460-2,490 and 940-1,520 (3,680-4,270
    # and 2,080-2,370 with them on), memory_identify.json. Forward-mode Jacobians in k
    # parameters carry k + 1 copies of the per-agent arrays (about 6 x the 370 bytes of simulate at k = 5).
    ("calibrate", "float64"): 2400,
    ("calibrate", "float32"): 1450,
    ("identify", "float64"): 2600,
    ("identify", "float32"): 1550,
}
#: The part of a process's peak that does not grow with N (interpreter, JAX, compiler), per command.
FIXED_BYTES: dict[str, int] = {
    "simulate": 620 * 2**20,
    "calibrate": 1300 * 2**20,  # more programs to compile than simulate
    "identify": 1000 * 2**20,
}
#: Margin for what grows with F, T and O, and the allocator's slack.
MARGIN = 1.10


def needed_bytes(command: str, n_agents: int, precision: str, n_devices: int = 1) -> int:
    """The estimated peak of ``command`` (one process) at ``n_agents`` agents split over ``n_devices``."""
    per_agent = BYTES_PER_AGENT[(command, precision)]
    return int(MARGIN * (FIXED_BYTES[command] + per_agent * n_agents / max(n_devices, 1)))


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """memory.max - memory.current of this process's cgroup (v2), if it has a limit."""
    try:
        base = Path("/sys/fs/cgroup")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((base / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def _own_size() -> tuple[int, int]:
    """(resident, virtual) bytes of this process now."""
    resident = virtual = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                resident = int(line.split()[1]) * 1024
            elif line.startswith("VmSize:"):
                virtual = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resident, virtual


def available_bytes() -> tuple[int | None, str]:
    """What this process can still grow to (bytes of peak, counting what it holds now), and from where.

    The least of: the host's available memory (MemAvailable) plus what the process already holds,
    a cgroup limit, and the address-space and data limits (``ulimit -v``, ``-d``), which count
    virtual memory, so the process's virtual size beyond its resident size is taken off them.
    (None, "") when nothing can be read.
    """
    resident, virtual = _own_size()
    candidates: list[tuple[int, str]] = []
    if (free := _meminfo_available()) is not None:
        candidates.append((free + resident, "memory available on this machine"))
    if (room := _cgroup_available()) is not None:
        candidates.append((room + resident, "the container's memory limit"))
    for name, label in ((resource.RLIMIT_AS, "the address-space limit (ulimit -v)"),
                        (resource.RLIMIT_DATA, "the data-size limit (ulimit -d)")):
        soft, _ = resource.getrlimit(name)
        if soft != resource.RLIM_INFINITY:
            candidates.append((soft - max(virtual - resident, 0), label))
    if not candidates:
        return None, ""
    return min(candidates)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(command: str, n_agents: int, n_firms: int, precision: str, n_devices: int = 1) -> None:
    """Refuse, in one line naming what would fit, a size whose estimated peak exceeds what is available.

    Only on the CPU (host memory); on a GPU the device's own allocator reports what it cannot
    place, which the command line turns into one line too.
    """
    if os.environ.get("LEVELFIELD_MEMORY_CHECK", "").strip().lower() in ("off", "0", "false"):
        return
    import jax

    if jax.default_backend() != "cpu":
        return
    have, source = available_bytes()
    need = needed_bytes(command, n_agents, precision, n_devices)
    if have is None or need <= have:
        return
    devices = max(n_devices, 1)
    room = max(have / MARGIN - FIXED_BYTES[command], 0.0) * devices  # bytes for the agents, over all devices

    def most_agents(precision_: str) -> int:
        n = int(room / BYTES_PER_AGENT[(command, precision_)])
        return max(n - n % n_firms, 0)

    options = [f"--agents {most_agents(precision):,} or fewer"]
    if precision == "float64":
        options.append(f"--precision float32 (up to {most_agents('float32'):,} agents)")
    options.append("more devices or processes (the agents are split over them)")
    raise ConfigError(
        f"N={n_agents:,} agents need about {_gib(need)} of memory for {command} in {precision} "
        f"({BYTES_PER_AGENT[(command, precision)]} bytes per agent), but {_gib(have)} is available "
        f"({source}); what fits: {', or '.join(options)}; LEVELFIELD_MEMORY_CHECK=off skips this check"
    )


def out_of_memory(exc: BaseException) -> bool:
    """Whether an exception is an allocation failure (Python's MemoryError or XLA's RESOURCE_EXHAUSTED)."""
    if isinstance(exc, MemoryError):
        return True
    return type(exc).__name__ in ("JaxRuntimeError", "XlaRuntimeError") and "RESOURCE_EXHAUSTED" in str(exc)
