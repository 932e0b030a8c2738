"""Inequality measures (MODEL.md section 5): the exact weighted Gini and the between-group share.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmodel.sorting import argsort


def weighted_gini(x: jax.Array, w: jax.Array) -> jax.Array:
    """Exact Gini coefficient of incomes ``x`` with weights ``w``, with one sort.

    G = sum_{i,j} w_i w_j |x_i - x_j| / (2 W mu W) with W = sum w and mu the weighted mean. With x
    sorted ascending and W_i the cumulative weight up to and including i, the double sum equals
    2 sum_i w_i x_i (2 W_i - w_i - W) exactly (ties included), so
    G = sum_i w_i x_i (2 W_i - w_i - W) / (W sum_i w_i x_i).

    Equal incomes give 0; one earner among n equal weights gives (n - 1)/n. Differentiable in x and
    w wherever incomes are distinct (the sort order is held fixed under differentiation).

    Args:
        x: (n,) incomes, >= 0 and not all 0.
        w: (n,) weights, >= 0, not all 0.
    """
    order = argsort(x)
    xs = jnp.take(x, order)
    ws = jnp.take(w, order)
    cum = jnp.cumsum(ws)
    total = cum[-1]
    wx = ws * xs
    return jnp.sum(wx * (2.0 * cum - ws - total)) / (total * jnp.sum(wx))


def between_group_share(
    x: jax.Array, w: jax.Array, group: jax.Array, n_groups: int
) -> jax.Array:
    """Share of the weighted variance of ``x`` that lies between groups.

    Var_between / Var_total with Var_total = sum w (x - xbar)^2 / sum w and
    Var_between = sum_g W_g (xbar_g - xbar)^2 / sum w (W_g the weight of group g).

    Args:
        x: (n,) values; w: (n,) weights >= 0; group: (n,) int group index in [0, n_groups).
    """
    total_w = jnp.sum(w)
    mean = jnp.sum(w * x) / total_w
    dev = x - mean
    group_w = jax.ops.segment_sum(w, group, n_groups)
    group_dev = jax.ops.segment_sum(w * dev, group, n_groups) / jnp.where(group_w > 0, group_w, 1.0)
    between = jnp.sum(group_w * group_dev**2)
    return between / jnp.sum(w * dev**2)
