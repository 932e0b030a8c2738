"""The one module that uses JAX's private API (``estimation.distributed._jax_private``), checked on the
installed JAX: when an upgrade moves one of its names, these tests fail and name it, instead of a
multi-process run quietly losing its cluster detection or its step barriers."""

from __future__ import annotations

import re
from pathlib import Path

from estimation.distributed import _jax_private

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_presence_tests_are_where_we_read_them():
    # None would mean jax._src.clusters moved: detection would fall back to our copy of the variables.
    present = _jax_private.cluster_presence()
    assert present is not None, "jax._src.clusters.{slurm,ompi}_cluster moved"
    assert set(present) == {"slurm", "ompi"} and all(isinstance(v, bool) for v in present.values())


def test_gloo_collectives_are_found_in_jaxlib():
    ok, why = _jax_private.has_gloo()
    assert ok, f"jax._src.lib._jax.make_gloo_tcp_collectives not found: {why}"


def test_backend_state_and_coordination_client_are_readable():
    assert isinstance(_jax_private.backends_are_initialized(), bool)
    # Before jax.distributed.initialize there is no client; the attribute itself must exist.
    assert _jax_private.coordination_client() is None


def test_no_other_module_uses_the_private_api():
    """Outside the shim, ``grep -rn "jax._src" estimation jaxmodel`` finds nothing (issue 23)."""
    pattern = re.compile(r"jax\._src")
    offenders = [str(p.relative_to(ROOT)) for folder in ("estimation", "jaxmodel") for p in (ROOT / folder).rglob("*.py")
                 if p.name != "_jax_private.py" and pattern.search(p.read_text())]
    assert not offenders, offenders
