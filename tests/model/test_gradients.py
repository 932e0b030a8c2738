"""Exact derivatives: autodiff (forward and reverse) against central finite differences in float64.

The education fixed point is differentiated by the implicit function theorem, so these tests also
check that the fixed point's tangent and transposed systems are solved correctly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmodel
from jaxmodel import PARAM_NAMES, outcomes
from tests.conftest import BIG, SMALL

# A tight fixed-point tolerance: a residual r in P moves a moment by about r times its sensitivity,
# which a central difference divides by 2h; with r = 1e-13 and h = 1e-5 that is ~1e-8.
TIGHT_BIG = BIG.replace(fp_tol=1e-13)
TIGHT_SMALL = SMALL.replace(fp_tol=1e-13)
# Rank assignments are piecewise constant in these (MODEL.md section 4): derivative exactly 0.
PIECEWISE_CONSTANT = ("rho_occ", "rho_firm")


def _vector_fn(base, draws, settings, names):
    def f(x):
        params = jaxmodel.Params(**{**base.to_dict(), **dict(zip(names, x))})
        return outcomes.moments_jit(params, draws, settings).vector()

    return f


def _central_differences(f, x0, step=1e-5):
    f = jax.jit(f)
    cols = []
    for i in range(x0.size):
        h = step * max(1.0, abs(float(x0[i])))
        e = jnp.zeros_like(x0).at[i].set(h)
        cols.append((f(x0 + e) - f(x0 - e)) / (2 * h))
    return jnp.stack(cols, axis=1)


def _assert_close(auto, fd, names):
    # Central differences with h = 1e-5 x scale: truncation h^2 |f'''| ~ 1e-10, fixed-point error
    # ~1e-8 (above), rounding eps/h ~ 1e-11. 2e-7 absolute plus 1e-4 relative covers them with margin.
    err = np.abs(np.asarray(auto - fd))
    bound = 2e-7 + 1e-4 * np.abs(np.asarray(fd))
    bad = [(jaxmodel.MOMENT_NAMES[r], names[c]) for r, c in zip(*np.nonzero(err > bound))]
    assert not bad, f"autodiff and finite differences disagree for (moment, parameter): {bad}"


@pytest.fixture(scope="module")
def jacobian_small(baseline, small_draws):
    names = list(PARAM_NAMES)
    f = _vector_fn(baseline, small_draws, TIGHT_SMALL, names)
    x0 = jnp.array([baseline.to_dict()[n] for n in names])
    return names, f, x0, jax.jit(jax.jacfwd(f))(x0)


def test_forward_mode_matches_finite_differences_for_every_parameter(jacobian_small):
    """Property 7: every moment with respect to every parameter (N = 20_000)."""
    names, f, x0, jac = jacobian_small
    smooth = [i for i, n in enumerate(names) if n not in PIECEWISE_CONSTANT]
    fd = _central_differences(f, x0)
    _assert_close(jac[:, smooth], fd[:, smooth], [names[i] for i in smooth])
    # The derivative is informative: most parameters move most moments.
    assert int(jnp.sum(jnp.abs(jac) > 1e-6)) > 100


def test_forward_mode_at_n_100k_for_the_estimated_parameters(baseline, big_draws):
    """Property 7 at N = 100_000 for the default free parameters of the estimation."""
    names = ["alpha", "sigma_nu", "sigma", "eta1", "xi"]
    f = _vector_fn(baseline, big_draws, TIGHT_BIG, names)
    x0 = jnp.array([baseline.to_dict()[n] for n in names])
    _assert_close(jax.jit(jax.jacfwd(f))(x0), _central_differences(f, x0), names)


def test_rank_parameters_have_zero_derivative(jacobian_small):
    names, _, _, jac = jacobian_small
    for n in PIECEWISE_CONSTANT:
        assert jnp.all(jac[:, names.index(n)] == 0.0)


def test_reverse_mode_through_the_public_api_equals_forward_mode(baseline, small_draws, jacobian_small):
    """jax.jacrev of jaxmodel.moments on Params (reverse mode, transposed implicit system)."""
    names, _, _, fwd = jacobian_small
    rev = jax.jit(jax.jacrev(lambda p: jaxmodel.moments(p, small_draws, TIGHT_SMALL).vector()))(baseline)
    assert isinstance(rev, jaxmodel.Params)
    rev = jnp.stack([getattr(rev, n) for n in names], axis=1)
    # Both solve the same implicit system with one LU factorisation of I - D at x* (forward: the
    # system, reverse: its transpose), so they agree to rounding, amplified by the condition of
    # I - D (below 10 here): 1e-9 relative leaves a wide margin and catches any wrong transpose.
    assert jnp.allclose(fwd, rev, rtol=1e-9, atol=1e-12)
    # Stronger rent sharing lowers Delta Gini (owners' rents go to workers): d m6 / d xi < 0.
    assert float(rev[5, names.index("xi")]) < 0


@pytest.mark.parametrize(
    ("spec", "changes", "names"),
    [
        ("partial_multiplicative", dict(mu=0.5), ["mu", "sigma_nu", "alpha"]),
        ("ces", dict(rho=-1.0, omega=0.5), ["rho", "omega", "gamma"]),
    ],
)
def test_spec_parameters_match_finite_differences(baseline, small_draws, spec, changes, names):
    base = baseline.replace(**changes)
    settings = TIGHT_SMALL.replace(spec=spec)
    f = _vector_fn(base, small_draws, settings, names)
    x0 = jnp.array([base.to_dict()[n] for n in names])
    _assert_close(jax.jit(jax.jacfwd(f))(x0), _central_differences(f, x0), names)
