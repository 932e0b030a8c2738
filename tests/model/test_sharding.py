"""Agents sharded over 4 virtual CPU devices give the single-device moments and Jacobian."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, os
import jax, jax.numpy as jnp, numpy as np
import jaxmodel as jm
from jaxmodel.sharding import shard_draws
assert jax.device_count() == 4
s = jm.Settings(n_agents=8000, n_firms=40)
p = jm.baseline()
d = jm.make_draws(0, s)
ds = shard_draws(d)
assert len(ds.u_theta.sharding.device_set) == 4 and len(ds.u_theta.addressable_shards) == 4
names = ["alpha", "sigma", "xi"]
def f(x, draws):
    v = jm.moments(jm.Params(**{**p.to_dict(), **dict(zip(names, x))}), draws, s).vector()
    return v, v
x0 = jnp.array([p.alpha, p.sigma, p.xi])
# One program per placement: the moments are the primal output of their Jacobian's.
j_one, one = jax.jacfwd(lambda x: f(x, d), has_aux=True)(x0)
j_many, many = jax.jacfwd(lambda x: f(x, ds), has_aux=True)(x0)
print(json.dumps({"moments": float(jnp.max(jnp.abs(one - many))), "jacobian": float(jnp.max(jnp.abs(j_one - j_many))),
                  "value": float(one[5])}))
"""


def test_sharded_moments_and_jacobian_equal_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=900, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # Sums over shards are added in another order (all-reduce): differences of rounding only.
    assert out["moments"] < 1e-10 and out["jacobian"] < 1e-10
    assert abs(out["value"]) > 0
