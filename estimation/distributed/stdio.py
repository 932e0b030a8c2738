"""Output of a multi-process run: process 0 prints, the others stay quiet but for their errors."""

from __future__ import annotations

import os
import sys

from estimation.distributed.state import _STATE, is_writer


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

