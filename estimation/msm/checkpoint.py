"""Checkpoints of a calibration: the optimiser's loop state and the finished stages, in the run folder.

A checkpoint holds the leaves of the loop's state (``optimiser.LoopState``: the points, the optax
state of every start, their records and histories), each under its tree path, and a JSON record:
the stage being run, each stage's optimiser, iteration and statuses, and the records of finished
stages. Restoring gives the optimiser's exact state, so a resumed run writes the same files bit for
bit.
"""

from __future__ import annotations

import numpy as np

from estimation.msm.optimiser import Batch, StartRecord, Status
from estimation.output.runfiles import RunFolder


def _status_name(status: Status | None) -> str | None:
    return None if status is None else status.name


class Checkpointer:
    """Saves and restores the optimiser's state of each stage inside a run folder (no folder: no-op)."""

    def __init__(self, folder: RunFolder | None):
        self.folder = folder
        self.meta: dict = {}
        self.arrays: dict | None = None

    def load(self) -> None:
        """Read the folder's checkpoint (a resumed run)."""
        if self.folder is None:
            return
        loaded = self.folder.load_checkpoint()
        if loaded is not None:
            self.arrays, self.meta = loaded

    def save(self, stage: str, batch: Batch | None, extra: dict | None = None) -> None:
        if self.folder is None:
            return
        if extra:
            self.meta.update(extra)
        arrays = {}
        if batch is not None:
            arrays = batch.arrays()
            self.meta[f"{stage}_batch"] = {"optimizer": batch.how.optimizer, "iteration": batch.iteration,
                                           "status": list(map(_status_name, batch.status))}
        self.meta["stage"] = stage
        self.folder.save_checkpoint(arrays, self.meta)

    def batch(self, stage: str, optimizer: str) -> dict[str, np.ndarray] | None:
        """The arrays of the loop state of ``stage`` if the checkpoint stopped inside it (with the
        same optimiser), else None (``optimiser.restore_batch`` rebuilds the state)."""
        meta = self.meta.get(f"{stage}_batch")
        if self.arrays is None or meta is None or self.meta.get("stage") != stage:
            return None
        if meta.get("optimizer") != optimizer:
            return None
        return {name: np.array(value) for name, value in self.arrays.items()}

    def records(self, stage: str) -> list[StartRecord] | None:
        """The records of a finished stage, or None."""
        saved = self.meta.get(f"{stage}_records")
        return None if saved is None else [_record_from_json(d) for d in saved]

    def finish(self, stage: str, records: list[StartRecord]) -> None:
        self.save(f"{stage}_done", None, {f"{stage}_records": [_record_to_json(r) for r in records]})


def _record_to_json(r: StartRecord) -> dict:
    return {"start": r.start.tolist(), "theta": r.theta.tolist(), "u": r.u.tolist(), "value": r.value,
            "grad_norm": r.grad_norm, "iterations": r.iterations, "status": r.status.name, "detail": r.detail,
            "method": r.method, "history": r.history, "fp_iterations": r.fp_iterations}


def _record_from_json(d: dict) -> StartRecord:
    return StartRecord(start=np.array(d["start"]), theta=np.array(d["theta"]), u=np.array(d["u"]),
                       value=float(d["value"]), grad_norm=float(d["grad_norm"]), iterations=int(d["iterations"]),
                       status=Status[d["status"]], detail=d["detail"], method=d["method"], history=list(d["history"]),
                       fp_iterations=int(d["fp_iterations"]))
