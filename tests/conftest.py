"""Shared fixtures: float64 everywhere, and the expensive objects (draws, compiled functions) once.

Compiling ``moments`` takes a few seconds per distinct ``Settings``, so the tests share a small
number of settings objects (session fixtures) and vary parameters, which never recompile.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

import jaxmodel

jax.config.update("jax_enable_x64", True)

# The CLI turns on JAX's persistent compilation cache. Tests keep it in a temporary folder of their
# own, shared with the subprocesses they start (which inherit the environment), never in ~/.cache.
if "LEVELFIELD_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="levelfield-xla-")
    os.environ["LEVELFIELD_CACHE_DIR"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

#: Settings of the property checks (MODEL.md section 6 asks for N >= 100_000).
BIG = jaxmodel.Settings(n_agents=100_000, n_firms=500)
#: Settings of the cheaper checks (gradients of every parameter, permutations, CLI).
SMALL = jaxmodel.Settings(n_agents=20_000, n_firms=100)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def big_draws():
    return jaxmodel.make_draws(jax.random.key(0), BIG)


@pytest.fixture(scope="session")
def small_draws():
    return jaxmodel.make_draws(jax.random.key(1), SMALL)


@pytest.fixture(scope="session")
def baseline():
    return jaxmodel.baseline()


@pytest.fixture(scope="session")
def baseline_big(baseline, big_draws):
    """Moments at the baseline, N = 100_000 (computed once)."""
    return jaxmodel.moments(baseline, big_draws, BIG)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; missing data fails under CI (CI=true) and skips elsewhere."""
    if not DATA.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"shared data folder {DATA} is missing under CI")
        pytest.skip(f"shared data folder {DATA} not found")
    return DATA


@pytest.fixture(scope="session", autouse=True)
def _persistent_cache_in_this_process():
    """JAX's persistent compilation cache in the test processes too, in the session's folder
    (``LEVELFIELD_CACHE_DIR``, above), which the subprocesses and the other xdist worker share.

    Test files compile the same programs again and again (the moments at a few settings, the
    calibration's step at the sizes the CLI tests share), and every file's programs are released
    when it ends (below): with the cache a program compiled once anywhere in the session is loaded
    from disk, not compiled, everywhere else. Programs quicker to compile than a second are not
    written (most of the suite's many small ones); the estimator's own programs (``estimation.msm.programs``)
    are kept in their exported form there too. Commands run in this process
    (``tests.helpers.run_cli``) turn the cache on the same way the command line does."""
    from estimation.msm import programs

    jax.config.update("jax_compilation_cache_dir", os.environ["LEVELFIELD_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    # The estimator's programs go through their exported (traced and lowered) form, as in the CLI's
    # processes: a program run in-process is then the one a subprocess ran before it, with the same
    # cache key, neither traced nor compiled again (and the other way round).
    programs.set_folder(os.environ["LEVELFIELD_CACHE_DIR"])
    yield


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Each test file's compiled programs are released when the file ends (``jax.clear_caches``).

    The suite runs in one process that would otherwise hold every program it ever compiled: its
    resident memory grew past 4 GB by half-way, and two full runs died inside XLA (a segmentation
    fault in a cache write, an abort in a compile) at a point where the same file passes alone.
    Session fixtures keep their arrays; only programs they use again are compiled again."""
    yield
    jax.clear_caches()


#: The longest test files (seconds of one worker in a full run on 2 cores, 2026-12-02), scheduled
#: first: with ``--dist loadfile`` a file runs whole on one worker, so a long file handed out last
#: leaves the other worker idle at the end of the run. (xdist would otherwise order the files by
#: their number of tests, which put these, with few tests each, last: ``--no-loadscope-reorder`` in
#: pyproject.toml keeps this order.)
LONGEST_FIRST = (
    "tests/msm/test_interruptions.py",  # 630 s
    "tests/cli/test_multiprocess.py",  # 555 s
    "tests/model/test_gradients.py",  # 411 s
    "tests/identify/test_identify.py",  # 288 s
    "tests/msm/test_calibration.py",  # 274 s
    "tests/msm/test_optimisers.py",  # 272 s
    "tests/msm/test_numerical_faults.py",  # 265 s
    "tests/model/test_fixed_point.py",  # 254 s
)


def pytest_collection_modifyitems(config, items):
    """Run the files of :data:`LONGEST_FIRST` first, in that order; every other file keeps its place."""
    root = Path(__file__).resolve().parents[1]
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def key(item):
        try:
            name = Path(str(item.fspath)).resolve().relative_to(root).as_posix()
        except ValueError:
            name = ""
        return rank.get(name, len(rank))

    items.sort(key=key)  # stable: the order within a file, and of the other files, is kept


# --- Where the suite's time goes: compilation per test --------------------------------------------


class _CompileSeconds:
    """jax.monitoring listener: the seconds of tracing, lowering, compiling and cache loads in this
    process (``estimation.msm.timing.COMPILE_EVENTS``) since the last :meth:`take`."""

    def __init__(self) -> None:
        from estimation.msm.timing import COMPILE_EVENTS

        self.events, self.seconds = COMPILE_EVENTS, 0.0

    def __call__(self, event: str, duration: float, **_) -> None:
        if event in self.events:
            self.seconds += duration

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


_COMPILE = _CompileSeconds()
jax.monitoring.register_event_duration_secs_listener(_COMPILE)
_COMPILE_BY_TEST: dict[str, float] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report carries the compilation seconds of this process during it (xdist sends
    ``user_properties`` back to the controller); a subprocess's own compilation is not counted."""
    outcome = yield
    outcome.get_result().user_properties.append(("compile_s", _COMPILE.take()))


def pytest_runtest_logreport(report):
    for key, value in report.user_properties:
        if key == "compile_s":
            _COMPILE_BY_TEST[report.nodeid] = _COMPILE_BY_TEST.get(report.nodeid, 0.0) + value


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """With ``--durations``, also the tests that compiled longest in-process (fixtures included)."""
    if not config.getoption("durations", None) or not _COMPILE_BY_TEST:
        return
    top = sorted(_COMPILE_BY_TEST.items(), key=lambda kv: -kv[1])[:30]
    terminalreporter.write_sep("=", f"compilation in the test process: {sum(_COMPILE_BY_TEST.values()):.0f} s "
                                    "in all, the 30 longest")
    for nodeid, seconds in top:
        terminalreporter.write_line(f"{seconds:8.1f}s  {nodeid}")
