"""What every benchmark script shares: the machine it ran on, and one atomic JSON writer."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # scripts run as ``python benchmarks/<name>.py``
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"


def environment(*packages: str) -> dict:
    """The device, the machine, the versions (jax, jaxlib, numpy and ``packages``) and ``XLA_FLAGS``, with the date."""
    import importlib.metadata

    import jax
    import jaxlib
    import numpy

    device = jax.devices()[0]
    out = {
        "device": f"{device.platform}: {device.device_kind}",
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": numpy.__version__,
    }
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    # The XLA options `import jaxmodel` set (jaxmodel.compilation), as this process runs with them.
    out["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    out["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return out


def revision() -> str:
    """The git commit the benchmarks run from, with "+changes" when the working tree differs from
    it, or "unknown" outside a git checkout."""
    import subprocess

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if changed else "")


def write_json(path: Path, payload) -> None:
    """Write ``payload`` as indented JSON, atomically (the project's own writer), and say where."""
    from estimation.output.runfiles import atomic_write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, payload)
    print(f"wrote {path}", file=sys.stderr)
