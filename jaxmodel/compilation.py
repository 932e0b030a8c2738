"""The XLA options levelfield's programs are compiled with, set in ``XLA_FLAGS`` at import.

Today one option, for the CPU backend: XLA:CPU (jaxlib 0.9 and later) hands some fusions to the
YNNPACK library ("ynn_fusion" in the compiled programs); the model's are reductions of per-agent
arrays over small groups (occupations, occupation-firm cells, tangents), for which XLA's own loop
emitters are faster. Switching the library fusions off, measured side by side in new processes on
the 2-core CPU (``benchmarks/bench_compiler_options.py``, ``benchmarks/results/compiler_options.json``):
see the README's Performance section. The option changes how XLA:CPU emits code, not what it
computes (sums may be added in another order: results agree to rounding); GPU programs ignore it.

XLA reads ``XLA_FLAGS`` once, when JAX starts its first backend, so :func:`apply` (run by
``import jaxmodel``) appends the options there; in a process whose JAX backend already runs, it
changes nothing. An option that the installed XLA does not know aborts the process at that start,
so the options are set only for the jaxlib releases whose binaries have them (:data:`VERIFIED`),
never twice, never over a value the user set, and not at all with ``LEVELFIELD_XLA_OPTIONS=off``.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping

#: XLA:CPU's library (YNNPACK) fusions off: the list of fusion types to enable, empty.
CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
#: jaxlib (major, minor) releases whose XLA knows every option of :data:`CPU_OPTIONS` (read from
#: the binaries of 0.9.0, 0.10.0 and 0.10.2).
VERIFIED = ((0, 9), (0, 10))
#: ``LEVELFIELD_XLA_OPTIONS`` values that switch the options off.
OFF = frozenset({"off", "0", "none", "false", "no"})


def release(version: str) -> tuple[int, int]:
    """(major, minor) of a version string such as "0.10.2" or "0.12.0.1"."""
    major, minor = ([int(m.group()) if (m := re.match(r"\d+", part)) else 0 for part in version.split(".")] + [0])[:2]
    return major, minor


def options(version: str, environ: MutableMapping[str, str]) -> dict[str, str]:
    """The options to set for jaxlib ``version``: :data:`CPU_OPTIONS` on a verified release unless
    ``LEVELFIELD_XLA_OPTIONS`` switches them off; else none."""
    if environ.get("LEVELFIELD_XLA_OPTIONS", "").strip().lower() in OFF:
        return {}
    return dict(CPU_OPTIONS) if release(version) in VERIFIED else {}


def apply(environ: MutableMapping[str, str] | None = None, version: str | None = None) -> list[str]:
    """Append :func:`options` to ``XLA_FLAGS`` in ``environ`` (default ``os.environ``) where the
    flags do not name them yet. Returns the flags added (``--name=value``)."""
    environ = os.environ if environ is None else environ
    if version is None:
        import jaxlib

        version = jaxlib.__version__
    flags = environ.get("XLA_FLAGS", "")
    added = [f"--{name}={value}" for name, value in options(version, environ).items() if f"--{name}=" not in flags]
    if added:
        environ["XLA_FLAGS"] = " ".join([flags, *added]).strip()
    return added


__all__ = ["CPU_OPTIONS", "OFF", "VERIFIED", "apply", "options", "release"]
