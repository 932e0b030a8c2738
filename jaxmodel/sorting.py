"""Sorting: rank-based assignment of workers to occupations and firms, and the sort of incomes.

Ranks are integers: they carry no derivative (an assignment is piecewise constant in the draws and
in rho_occ, rho_firm), so every sort here runs on ``stop_gradient`` inputs and only the resulting
permutation is used; derivatives flow through the gathers that apply it.

On the CPU, XLA's sort calls a compiled comparator per comparison and takes about 0.55 us per
element for 2e6 float64 keys, while NumPy's introsort takes about 0.08 us (measured here, jax
0.10.2, numpy 2.4). For long sorts on a single CPU device (at least :data:`HOST_SORT_MIN`
elements) the permutation is therefore computed on the host through ``jax.pure_callback``. Shorter
sorts use ``jnp.argsort``: a program without host callbacks can be kept by JAX's persistent
compilation cache (which refuses programs with callbacks), and for small models compilation, not
sorting, is what a run waits for (a calibration at N = 4,000: 50 s first, 15 s from the cache).
The price, measured for ``moments`` with every sort in XLA: 62 instead of 48 ms at N = 1e4, 500
instead of 351 ms at N = 1e5, hence the threshold between the two. Other backends (GPU) and programs
over several devices (where a host callback inside an SPMD program stalls XLA:CPU's collectives)
always use ``jnp.argsort``. Both are deterministic, so the same inputs give the same permutation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: Sorts of at least this many elements use NumPy through a host callback on a single CPU device.
#: The Gini sorts 2N + F incomes, so models up to N = 2e4 (the default calibration) compile
#: without callbacks and are cached; larger ones sort on the host.
HOST_SORT_MIN = 50_000


def _host_argsort(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.asarray(x), axis=-1).astype(np.int32)


def argsort(x: jax.Array) -> jax.Array:
    """The permutation that sorts ``x`` along its last axis, ascending (int32, no derivative).

    Args:
        x: (..., n) keys; leading axes (from ``vmap``) are sorted independently.
    """
    x = jax.lax.stop_gradient(x)
    if x.shape[-1] < HOST_SORT_MIN or jax.default_backend() != "cpu" or jax.device_count() > 1:
        return jnp.argsort(x, axis=-1).astype(jnp.int32)
    out = jax.ShapeDtypeStruct(x.shape, jnp.int32)
    return jax.pure_callback(_host_argsort, out, x, vmap_method="expand_dims")


def rank_groups(score: jax.Array, n_groups: int) -> jax.Array:
    """Equal-size groups by rank: the lowest n/G scores form group 0, the next group 1, and so on.

    Args:
        score: (n,) sorting scores, n a multiple of ``n_groups``.

    Returns:
        (n,) int32 group index of each element.
    """
    n = score.shape[-1]
    order = argsort(score)
    group_of_rank = (jnp.arange(n, dtype=jnp.int32) // (n // n_groups)).astype(jnp.int32)
    return jnp.zeros(n, jnp.int32).at[order].set(group_of_rank, unique_indices=True)
