"""Wall time per stage of a run, with the part of it that JAX spent tracing and compiling.

JAX reports every trace, lowering and backend compilation (and every load from its persistent
compilation cache) through ``jax.monitoring``; :class:`StageClock` adds those durations up per
stage, so that ``timing.json`` tells compilation apart from computation: a first run in a new
process pays both, a second one with a warm cache mostly the computation.
"""

from __future__ import annotations

import contextlib
import time
import weakref

import jax

#: jax.monitoring duration events that count as compilation (tracing, lowering, XLA, cache loads).
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
    "/jax/compilation_cache/cache_retrieval_time_sec",
)


class _CompileSeconds:
    """The jax.monitoring listener of a :class:`StageClock`: adds up the compilation events' seconds.

    It is a separate object, not a method of the clock, so that JAX's list of listeners does not keep
    the clock alive: a clock that nothing refers to any more (that of a run that raised, once its
    error is handled) unregisters it (``weakref.finalize``).
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, event: str, duration: float, **_) -> None:
        if event in COMPILE_EVENTS:
            self.seconds += duration


def _unregister(listener: _CompileSeconds) -> None:
    with contextlib.suppress(AssertionError, ValueError):  # already gone (jax.monitoring.clear_event_listeners)
        jax.monitoring.unregister_event_duration_listener(listener)


class StageClock:
    """Records {stage: {"wall_s", "compile_s", "run_s"}} for consecutive stages of a run.

    ``switch(name)`` ends the current stage (if any) and starts ``name``, listening to JAX's
    compilation events from the first switch on; ``stop()`` ends the last one and stops listening.
    A stage entered twice adds up. Used as a context manager (``with StageClock() as clock:``) it
    stops listening in a ``finally``, also when the run inside raises; a clock that is dropped
    without ``stop()`` stops listening when it is garbage collected.
    """

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}
        self._current: str | None = None
        self._compile = _CompileSeconds()
        self._started = 0.0
        self._listening: weakref.finalize | None = None

    @property
    def listening(self) -> bool:
        """Whether the clock's listener is registered with jax.monitoring."""
        return self._listening is not None and self._listening.alive

    def _close(self) -> None:
        if self._current is None:
            return
        wall = time.perf_counter() - self._started
        compile_s = min(self._compile.seconds, wall)
        entry = self.stages.setdefault(self._current, {"wall_s": 0.0, "compile_s": 0.0, "run_s": 0.0})
        entry["wall_s"] += wall
        entry["compile_s"] += compile_s
        entry["run_s"] += wall - compile_s
        self._current = None

    def switch(self, name: str) -> None:
        self._close()
        if not self.listening:
            jax.monitoring.register_event_duration_secs_listener(self._compile)
            self._listening = weakref.finalize(self, _unregister, self._compile)
        self._current, self._started = name, time.perf_counter()
        self._compile.seconds = 0.0

    def stop(self) -> None:
        self._close()
        if self._listening is not None:
            self._listening()  # unregisters once; later calls do nothing

    def __enter__(self) -> StageClock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def to_dict(self) -> dict:
        total = {key: sum(s[key] for s in self.stages.values()) for key in ("wall_s", "compile_s", "run_s")}
        return {"stages": self.stages, "total": total}
