"""How a start of the optimiser ended: :class:`Status`, and its integer code inside compiled code."""

from __future__ import annotations

import enum


class Status(enum.Enum):
    """How a start ended: one member per outcome (no status strings to parse); the value is the
    text written to report.json and shown in the tables.

    Inside the compiled optimiser a status is an int32 code (:attr:`code`, 0 while a start runs),
    so that every start's status travels in one array.
    """

    GRADIENT = "converged: gradient norm below gtol"
    CRITERION_CHANGE = "converged: criterion change below ftol"
    PREDICTED_DECREASE = "converged: predicted decrease below ftol"
    NO_DESCENT = "converged: no step decreases the criterion"
    MAX_ITER = "stopped: max_iter reached"
    DOMINATED = "stopped: dominated"
    NON_FINITE = "failed: non-finite criterion"

    @property
    def converged(self) -> bool:
        return self in (Status.GRADIENT, Status.CRITERION_CHANGE, Status.PREDICTED_DECREASE, Status.NO_DESCENT)

    @property
    def failed(self) -> bool:
        return self is Status.NON_FINITE

    @property
    def code(self) -> int:
        """The status inside compiled code: 1, 2, ... in the order of the members (0: running)."""
        return _MEMBERS.index(self) + 1

    @classmethod
    def of_code(cls, code: int) -> Status | None:
        """The member of an int code, None for 0 (still running)."""
        return None if int(code) == 0 else _MEMBERS[int(code) - 1]

    def describe(self, detail: str = "") -> str:
        """The status's text, with its detail (which start dominated, and by how much) if any."""
        return f"{self.value} {detail}" if detail else self.value


_MEMBERS = list(Status)
RUNNING = 0
