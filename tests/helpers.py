"""What several test modules share: a valid targets file and an in-process command line runner."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

#: The repository's root (tests live in tests/<package>/).
ROOT = Path(__file__).resolve().parents[1]

#: A valid targets CSV (the six moments, values and SEs of the order of the shipped ones).
TARGETS_CSV = """moment,value,se,source
cv_change,-0.22,0.07,a
productivity_gain,0.25,0.05,b
college_premium_change,-0.02,0.02,c
credential_reliance_change,0.022,0.010,d
between_firm_share_change,0.01,0.01,e
gini_change,0.001,0.004,f
"""


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``levelfield argv`` in this process (sharing its compiled programs): (exit code, stdout,
    stderr). rich's console writes to whatever sys.stdout is at the time of writing, so both
    streams are captured around the call; argparse's own errors (SystemExit) give their code."""
    from estimation.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


class Interrupt(Exception):
    """Raised by :func:`stop_at` to interrupt a calibration as a kill would."""


def stop_at(iteration: int):
    """A ``progress`` callback for ``estimation.msm.calibrate`` that raises :class:`Interrupt` when
    stage 1 reports ``iteration``, leaving the run's checkpoint behind."""
    def progress(event, payload):
        if event == "stage1" and payload.iteration == iteration:
            raise Interrupt
    return progress
