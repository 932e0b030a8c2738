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
def _no_persistent_cache_in_this_process():
    """Commands run in this process (``tests.helpers.run_cli``) do not turn on JAX's persistent
    compilation cache here: the suite's one long-lived process compiles hundreds of programs, and one
    full run died with a segmentation fault inside JAX's cache write (``put_executable_and_time``)
    that no single test file reproduces. Subprocesses still share the cache through
    ``LEVELFIELD_CACHE_DIR`` (set above), which is what the CLI's cache is for."""
    import estimation.cli

    original = estimation.cli.compilation_cache
    estimation.cli.compilation_cache = lambda: None
    yield
    estimation.cli.compilation_cache = original


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Each test file's compiled programs are released when the file ends (``jax.clear_caches``).

    The suite runs in one process that would otherwise hold every program it ever compiled: its
    resident memory grew past 4 GB by half-way, and two full runs died inside XLA (a segmentation
    fault in a cache write, an abort in a compile) at a point where the same file passes alone.
    Session fixtures keep their arrays; only programs they use again are compiled again."""
    yield
    jax.clear_caches()
