"""Sorting: rank-based assignment of workers to occupations and firms, and the sort of incomes.

Ranks are integers: they carry no derivative (an assignment is piecewise constant in the draws and
in rho_occ, rho_firm), so every sort here runs on ``stop_gradient`` inputs and only the resulting
permutation is used; derivatives flow through the gathers that apply it.

``argsort`` sorts one array of packed 64-bit integers instead of pairs (key, index): each float
key is mapped to an unsigned integer in the same order (flip the sign bit of non-negative numbers,
every bit of negative ones), its low b bits are replaced by the element's index (b = bits needed
for n - 1, 22 for the 4 x 10^6 incomes of N = 2 x 10^6), and the packed numbers are sorted with
XLA's own sort. The index is then read back from the low bits. This is faster than
``jnp.argsort`` (a comparator over pairs) and than NumPy's sort (the measurements are in the
README, "Design", "One sort per Gini, in XLA"). It is one XLA program with no host callback, so
every program that sorts is kept by JAX's persistent compilation cache and can be exported, at
every N, on every backend and over several devices.

The price is resolution: keys that agree in their top 64 - b bits (about 4e-10 relative for
N = 2 x 10^6) are ordered by index instead of by value. For ranks this is an exact ranking of keys
perturbed by less than that; for the Gini, a pair of incomes that close contributes
w_a w_b |x_a - x_b| to a sum of order W^2 mean(x), so the Gini moves by less than 1e-9 / n^2 per
such pair (``tests/model/test_inequality.py`` holds it to the exact formula). Ties keep index order, so the
permutation is deterministic.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_SIGN = np.uint64(1 << 63)  # NumPy: importing this module must not start a JAX backend


def argsort(x: jax.Array) -> jax.Array:
    """The permutation that sorts ``x`` along its last axis, ascending (int32, no derivative).

    Args:
        x: (..., n) float keys (n < 2^31); leading axes (from ``vmap``) are sorted independently.
    """
    x = jax.lax.stop_gradient(x)
    n = x.shape[-1]
    bits = max(1, (n - 1).bit_length())
    u = jax.lax.bitcast_convert_type(x.astype(jnp.float64), jnp.uint64)
    ordered = jnp.where((u & _SIGN) != 0, ~u, u | _SIGN)  # unsigned order = float order
    low = jnp.uint64((1 << bits) - 1)
    packed = (ordered & ~low) | jnp.arange(n, dtype=jnp.uint64)
    return (jax.lax.sort(packed, dimension=x.ndim - 1) & low).astype(jnp.int32)


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
