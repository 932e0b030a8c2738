"""The stage clock of ``timing.json`` leaves no jax.monitoring listener behind, even when a run raises."""

from __future__ import annotations

import gc
import importlib

import jax
import pytest

from estimation.msm.timing import StageClock


class _Stop(Exception):
    pass


@pytest.fixture
def listeners(monkeypatch):
    """The listeners registered with jax.monitoring through its public functions, and not
    unregistered since (this test's view of JAX's list, without its private state)."""
    alive = []
    register = jax.monitoring.register_event_duration_secs_listener
    unregister = jax.monitoring.unregister_event_duration_listener

    def tracking_register(callback):
        alive.append(callback)
        register(callback)

    def tracking_unregister(callback):
        unregister(callback)
        alive.remove(callback)

    monkeypatch.setattr(jax.monitoring, "register_event_duration_secs_listener", tracking_register)
    monkeypatch.setattr(jax.monitoring, "unregister_event_duration_listener", tracking_unregister)
    return alive


def test_a_stage_that_raises_unregisters_the_listener_at_once(listeners, monkeypatch):
    """calibrate() times its stages inside ``with run.clock:``: when a stage raises mid-way (here the
    first optimisation stage, after the draws were timed), the listener is gone as the error leaves
    calibrate, without garbage collection, while the traceback still holds the run and its clock."""
    calibrate_module = importlib.import_module("estimation.msm.calibrate")
    registered = []

    def raising_stage(run, *args, **kwargs):
        registered.extend(listeners)
        assert run.clock.listening
        raise _Stop

    monkeypatch.setattr(calibrate_module._Run, "stage", raising_stage)
    gc.disable()  # the listener must go in the finally, not through the clock's finalizer
    try:
        with pytest.raises(_Stop) as excinfo:
            calibrate_module.calibrate(n_agents=2000, n_firms=20, n_starts=1, max_iter=2, flip_checks=0)
        assert registered, "the clock did not start listening before the stage raised (the test would prove nothing)"
        assert listeners == []
        assert excinfo.traceback  # still alive: nothing was collected
    finally:
        gc.enable()


def test_the_clock_as_a_context_manager_stops_listening_when_its_body_raises(listeners):
    """``with StageClock() as clock:`` unregisters the listener in a finally: at once, without
    waiting for garbage collection, when the code inside raises."""
    with pytest.raises(_Stop):
        with StageClock() as clock:
            clock.switch("stage")
            assert clock.listening and len(listeners) == 1
            raise _Stop
    assert not clock.listening and listeners == []
    assert set(clock.stages) == {"stage"}  # the stage that raised is still timed


def test_the_clock_still_counts_compilation(listeners):
    """What the listener is for: a compilation inside a stage shows in its compile_s, within its wall_s."""
    with StageClock() as clock:
        clock.switch("compiles")
        jax.jit(lambda x: x * 3.0 + 1.0)(2.0).block_until_ready()  # a new function: traced and compiled
        clock.switch("idle")
    compiles, idle = clock.stages["compiles"], clock.stages["idle"]
    assert 0 < compiles["compile_s"] <= compiles["wall_s"]
    assert idle["compile_s"] == 0.0
    assert listeners == []
