"""Keeping the processes in step: barriers and agreements in the coordination service's key-value store."""

from __future__ import annotations

import re

from estimation.distributed import _jax_private
from estimation.distributed.state import _STATE, HEARTBEAT_TIMEOUT, STEP_TIMEOUT_FLOOR, DistributedError


def _client():
    client = _jax_private.coordination_client()
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

