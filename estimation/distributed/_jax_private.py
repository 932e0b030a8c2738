"""Every use of JAX's private API in levelfield, in one place (a JAX upgrade that moves one breaks here).

Each function says which private name it reads and what levelfield does without it;
``tests/cli/test_jax_private.py`` calls each of them on the installed JAX and fails loudly, naming
the function, when one of these names has moved.
"""

from __future__ import annotations


def cluster_presence() -> dict[str, bool] | None:
    """JAX's own presence tests of Slurm and Open MPI (``jax._src.clusters``; they read os.environ),
    or None where this JAX keeps them elsewhere (the caller then tests the variables itself)."""
    try:
        from jax._src.clusters.ompi_cluster import OmpiCluster
        from jax._src.clusters.slurm_cluster import SlurmCluster
    except ImportError:  # pragma: no cover - another JAX layout
        return None
    return {"slurm": SlurmCluster.is_env_present(), "ompi": OmpiCluster.is_env_present()}


def has_gloo() -> tuple[bool, str]:
    """Whether jaxlib's extension (``jax._src.lib._jax``) has gloo CPU collectives, and why not."""
    try:
        from jax._src.lib import _jax
    except ImportError as exc:  # pragma: no cover - another JAX layout
        return False, f"jaxlib's extension cannot be imported ({exc})"
    if not hasattr(_jax, "make_gloo_tcp_collectives"):
        import jax

        return False, f"jaxlib {jax.__version__} has no gloo CPU collectives (no make_gloo_tcp_collectives)"
    return True, "gloo"


def backends_are_initialized() -> bool:
    """Whether a JAX backend exists yet (``jax._src.xla_bridge.backends_are_initialized``)."""
    from jax._src import xla_bridge

    return bool(xla_bridge.backends_are_initialized())


def coordination_client():
    """The coordination service's client of ``jax.distributed`` (``jax._src.distributed.global_state``),
    None before initialize: its key-value store and barriers keep levelfield's processes in step."""
    from jax._src import distributed as jax_distributed

    return jax_distributed.global_state.client


__all__ = ["backends_are_initialized", "cluster_presence", "coordination_client", "has_gloo"]
