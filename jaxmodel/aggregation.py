"""Aggregation: many sums over the same agents in one pass.

The labour market needs several sums per occupation (task supplies, the normal equations of the
wage projection, wage bills). Written as separate ``jnp.sum`` calls, XLA:CPU makes one pass over
the agents per sum; a single variadic ``lax.reduce`` computes all of them in one pass. JAX has no
transpose rule for a variadic reduce, so the derivative is given explicitly: the sums are linear,
and their tangents are plain (transposable) sums of the tangents.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _add(left: tuple, right: tuple) -> tuple:
    return tuple(a + b for a, b in zip(left, right))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def sums(axes: tuple[int, ...], *terms: jax.Array) -> tuple[jax.Array, ...]:
    """Sum every term over ``axes`` in one pass: a tuple of arrays, one per term.

    Args:
        axes: the axes to sum over (the same for every term).
        *terms: arrays of one common shape and dtype.
    """
    zeros = tuple(jnp.zeros((), t.dtype) for t in terms)
    return tuple(jax.lax.reduce(tuple(terms), zeros, _add, axes))


@sums.defjvp
def _sums_jvp(axes, primals, tangents):
    return sums(axes, *primals), tuple(jnp.sum(t, axis=axes) for t in tangents)


def occupation_sums(*terms: jax.Array) -> tuple[jax.Array, ...]:
    """Per-occupation sums over branches and agents of (2, O, M) worker-branch terms: (O,) each."""
    return sums((0, 2), *terms)
