"""The XLA options ``import jaxmodel`` sets (``jaxmodel.compilation``): where they go, when they do
not, and that they change how XLA:CPU emits the programs, not what the programs compute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jaxlib
import numpy as np
import pytest

from jaxmodel import compilation

ROOT = Path(__file__).resolve().parents[2]
FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def test_the_options_are_appended_once_and_never_over_the_users():
    env = {}
    assert compilation.apply(env, version="0.10.2") == [FLAG]
    assert env["XLA_FLAGS"] == FLAG
    assert compilation.apply(env, version="0.10.2") == []  # already there: not twice
    assert env["XLA_FLAGS"] == FLAG
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    compilation.apply(env, version="0.9.0")
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {FLAG}"
    mine = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_REDUCE"}
    assert compilation.apply(mine, version="0.10.2") == []
    assert mine["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_REDUCE"


@pytest.mark.parametrize("version", ["0.8.2", "0.11.0", "1.0.0", "0.12.0.1"])
def test_a_jaxlib_not_verified_gets_no_option(version):
    """An option XLA does not know aborts the process when JAX starts, so none is set there."""
    env = {}
    assert compilation.apply(env, version=version) == [] and "XLA_FLAGS" not in env


def test_the_switch_turns_the_options_off():
    for value in ("off", "OFF", "0", "false"):
        env = {"LEVELFIELD_XLA_OPTIONS": value}
        assert compilation.apply(env, version="0.10.2") == [] and "XLA_FLAGS" not in env


def test_release_reads_major_and_minor():
    assert compilation.release("0.10.2") == (0, 10)
    assert compilation.release("0.12.0.1") == (0, 12)
    assert compilation.release("1.0rc1") == (1, 0)
    assert compilation.release("2") == (2, 0)


_PROBE = r"""
import json, os, sys
import jax, jax.numpy as jnp
import jaxmodel
s = jaxmodel.Settings(n_agents=2000, n_firms=20)
draws = jaxmodel.make_draws(0, s)
m = jaxmodel.moments(jaxmodel.baseline(), draws, s)
reduction = jax.jit(lambda x: jnp.sum(jnp.sin(x) * x, axis=1)).lower(jnp.ones((512, 512))).compile().as_text()
print(json.dumps({"flags": os.environ.get("XLA_FLAGS", ""), "moments": [float(v) for v in m.vector()],
                  "library_fusions": "ynn_fusion" in reduction}))
"""


def _probe(**env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "LEVELFIELD_XLA_OPTIONS")}
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env={**clean, "JAX_PLATFORMS": "cpu", **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(compilation.release(jaxlib.__version__) not in compilation.VERIFIED,
                    reason=f"jaxlib {jaxlib.__version__}: no option is set")
def test_a_new_process_compiles_without_library_fusions_and_computes_the_same_moments():
    on, off = _probe(), _probe(LEVELFIELD_XLA_OPTIONS="off")
    assert FLAG in on["flags"] and FLAG not in off["flags"]
    assert not on["library_fusions"]
    # The option moves work between XLA's emitters and YNNPACK's kernels, which may add a sum's
    # terms in another order: rounding, about 1e-16 relative per addition (the largest difference
    # measured, N = 2x10^4: 6e-15; benchmarks/results/compiler_options.json). 1e-12 leaves a
    # hundredfold for the fixed point's iterations to amplify it, and is far below any change in
    # what is computed (a moment's target SE is 1e-3 or more).
    np.testing.assert_allclose(on["moments"], off["moments"], rtol=1e-10, atol=1e-12)
