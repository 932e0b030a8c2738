"""Wall time per stage of a run, with the part of it that JAX spent tracing and compiling.

JAX reports every trace, lowering and backend compilation (and every load from its persistent
compilation cache) through ``jax.monitoring``; :class:`StageClock` adds those durations up per
stage, so that ``timing.json`` tells compilation apart from computation: a first run in a new
process pays both, a second one with a warm cache mostly the computation.
"""

from __future__ import annotations

import time

import jax

#: jax.monitoring duration events that count as compilation (tracing, lowering, XLA, cache loads).
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
    "/jax/compilation_cache/cache_retrieval_time_sec",
)


class StageClock:
    """Records {stage: {"wall_s", "compile_s", "run_s"}} for consecutive stages of a run.

    ``switch(name)`` ends the current stage (if any) and starts ``name``; ``stop()`` ends the last
    one and stops listening. A stage entered twice adds up.
    """

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}
        self._current: str | None = None
        self._compile = 0.0
        self._started = 0.0
        self._listening = False

    def _listener(self, event: str, duration: float, **_) -> None:
        if event in COMPILE_EVENTS:
            self._compile += duration

    def _close(self) -> None:
        if self._current is None:
            return
        wall = time.perf_counter() - self._started
        compile_s = min(self._compile, wall)
        entry = self.stages.setdefault(self._current, {"wall_s": 0.0, "compile_s": 0.0, "run_s": 0.0})
        entry["wall_s"] += wall
        entry["compile_s"] += compile_s
        entry["run_s"] += wall - compile_s
        self._current = None

    def switch(self, name: str) -> None:
        self._close()
        if not self._listening:
            jax.monitoring.register_event_duration_secs_listener(self._listener)
            self._listening = True
        self._current, self._compile, self._started = name, 0.0, time.perf_counter()

    def stop(self) -> None:
        self._close()
        if self._listening:
            jax.monitoring.unregister_event_duration_listener(self._listener)
            self._listening = False

    def to_dict(self) -> dict:
        total = {key: sum(s[key] for s in self.stages.values()) for key in ("wall_s", "compile_s", "run_s")}
        return {"stages": self.stages, "total": total}
