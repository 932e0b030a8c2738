"""Parameters, settings and draws: the MODEL.md tables, and refusal of every bad value."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import pytest

import jaxmodel
from jaxmodel import DOMAINS, PARAM_NAMES, InvalidDrawsError, InvalidParameterError, InvalidSettingError

# The MODEL.md section 3 table, typed in independently of jaxmodel.params.
MODEL_MD_BASELINE = dict(
    sigma=1.5, lam=1.0, A1=1.0, alpha=0.6, z_lo=0.4, z_hi=0.85, w_a=0.05, sigma_nu=0.5, mu=0.0,
    rho=-1.0, omega=0.5, sigma_theta=0.7, gamma=0.4, c_bar=0.6, zeta=0.3, sigma_c=0.1, tau=0.05,
    sigma_eps=0.5, gini_K=0.6, r_K=0.6, eta0=0.5, eta1=0.5, psi=0.5, xi=0.15, owner_share=0.05,
    rho_occ=0.7, b_occ=0.1, rho_firm=0.5,
)


def test_baseline_is_the_model_md_table():
    assert jaxmodel.baseline().to_dict() == MODEL_MD_BASELINE


def _outside(name: str) -> list[float]:
    """Values just outside the domain of ``name`` (and non-finite ones)."""
    d = DOMAINS[name]
    values = [math.nan, math.inf]
    if d.lo is not None:
        values.append(d.lo if d.lo_open else d.lo - 1e-9)
    if d.hi is not None:
        values.append(d.hi if d.hi_open else d.hi + 1e-9)
    if d.exclude is not None:
        values.append(d.exclude)
    return values


CASES = [(name, value) for name in PARAM_NAMES for value in _outside(name)]


@pytest.mark.parametrize(("name", "value"), CASES, ids=[f"{n}={v}" for n, v in CASES])
def test_each_parameter_outside_its_domain_is_refused(name, value):
    base = jaxmodel.baseline()
    with pytest.raises(InvalidParameterError) as info:
        base.replace(**{name: value})
    message = str(info.value)
    assert name in message
    if math.isfinite(value):
        assert str(DOMAINS[name]) in message


def test_domain_text_names_the_interval():
    assert str(DOMAINS["xi"]) == "[0, 1]"
    assert str(DOMAINS["gini_K"]) == "[0, 1)"
    assert str(DOMAINS["sigma"]) == "(0, inf)"
    assert "except 0" in str(DOMAINS["rho"])


def test_band_must_be_ordered():
    with pytest.raises(InvalidParameterError, match="z_lo"):
        jaxmodel.baseline().replace(z_lo=0.9, z_hi=0.8)


def test_unknown_and_non_scalar_parameters_are_refused():
    with pytest.raises(InvalidParameterError, match="unknown parameter"):
        jaxmodel.baseline().replace(kappa=1.0)
    with pytest.raises(InvalidParameterError, match="one real number"):
        jaxmodel.baseline().replace(xi=jnp.ones(3))


def test_moments_refuse_bad_parameters_before_computing(small_draws):
    bad = jaxmodel.Params(**{**MODEL_MD_BASELINE, "tau": -1.0})
    with pytest.raises(InvalidParameterError, match="tau=-1"):
        jaxmodel.moments(bad, small_draws, jaxmodel.Settings(n_agents=20_000, n_firms=100))


def test_params_is_a_pytree_of_floats():
    leaves = jax.tree_util.tree_leaves(jaxmodel.baseline())
    assert len(leaves) == len(PARAM_NAMES) == 28
    doubled = jax.tree_util.tree_map(lambda x: 2 * x, jaxmodel.baseline())
    assert doubled.sigma == 3.0


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        (dict(n_agents=1001), "multiple of n_firms"),
        (dict(n_agents=1000, n_occupations=7), "n_occupations=7"),
        (dict(n_agents=0), "positive integer"),
        (dict(n_firms=-5), "positive integer"),
        (dict(n_tasks=2.5), "positive integer"),
        (dict(n_occupations=True), "positive integer"),
        (dict(spec="multiplicative"), "spec='multiplicative'"),
        (dict(precision="float16"), "precision"),
        (dict(fp_tol=0.0), "fp_tol"),
        (dict(fp_tol=2.0), "fp_tol"),
        (dict(fp_damping=0.0), "fp_damping"),
        (dict(fp_damping=1.5), "fp_damping"),
        (dict(fp_damping="half"), "fp_damping"),
        (dict(fp_max_iter=0), "fp_max_iter"),
        (dict(n_agents=2_000_000_000), "too large"),
    ],
)
def test_bad_settings_are_refused(changes, fragment):
    base = dict(n_agents=1000, n_firms=100)
    with pytest.raises(InvalidSettingError, match=fragment.replace("(", r"\(")):
        jaxmodel.Settings(**{**base, **changes})


def test_settings_are_hashable_and_static():
    a = jaxmodel.Settings(n_agents=1000, n_firms=100)
    b = jaxmodel.Settings(n_agents=1000, n_firms=100)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(InvalidSettingError, match="unknown setting"):
        a.replace(agents=5)


def test_draws_must_match_settings(small_draws):
    other = jaxmodel.Settings(n_agents=10_000, n_firms=100)
    with pytest.raises(InvalidDrawsError, match="n_agents=10000"):
        jaxmodel.moments(jaxmodel.baseline(), small_draws, other)


def test_same_key_same_draws_and_stratified_assets():
    s = jaxmodel.Settings(n_agents=1000, n_firms=100)
    a, b = jaxmodel.make_draws(7, s), jaxmodel.make_draws(7, s)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert (x == y).all()
    # u_K_j = Phi^{-1}((j - 1/2)/F): increasing and symmetric about 0 (exact quantiles).
    assert (jnp.diff(a.u_K) > 0).all()
    assert jnp.allclose(a.u_K, -a.u_K[::-1], atol=1e-12)
