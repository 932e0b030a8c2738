"""The properties of MODEL.md section 6 at N = 100_000, and the reference run of the spec."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmodel
from jaxmodel import tasks
from tests.conftest import BIG

# MODEL.md section 6: a reference run of the specification at the baseline (N = 100_000, F = 500,
# three seeds), seed-to-seed spread about 0.002 or less. m1 is the CV change within firms; the CV over
# all workers gives -0.166 (REFERENCE_ALL_WORKERS, a diagnostic).
REFERENCE = dict(
    cv_change=-0.199, productivity_gain=0.303, college_premium_change=-0.114,
    credential_reliance_change=0.108, between_firm_share_change=0.003, gini_change=-0.002,
)


REFERENCE_ALL_WORKERS = -0.166

# Per-moment tolerances from the measured seed-to-seed standard deviation of each moment at this
# size (10 seeds, 100..109, on 2026-11-26: 0.00092, 0.00121, 0.00196, 0.00076, 0.00052, 0.00018;
# m1 within firms on 2026-12-01: 0.00090, and 0.00092 over all workers, so 0.0035 for both):
# the difference of two independent three-seed means (ours and MODEL.md's) has standard deviation
# sd sqrt(2/3); we allow 4 of those plus 0.0005 for MODEL.md's rounding to 3 decimals. A shared
# +-0.004 would let m6 = -0.002 come out +0.002; this lets it move by 0.0011 at most.
REFERENCE_TOL = dict(
    cv_change=0.0035, productivity_gain=0.0045, college_premium_change=0.0069,
    credential_reliance_change=0.0030, between_firm_share_change=0.0022, gini_change=0.0011,
)


def test_reference_run_of_the_specification(baseline):
    runs = [
        jaxmodel.moments(baseline, jaxmodel.make_draws(jax.random.key(100 + s), BIG), BIG) for s in range(3)
    ]
    for name, ref in REFERENCE.items():
        mean = np.mean([float(getattr(m, name)) for m in runs])
        assert mean == pytest.approx(ref, abs=REFERENCE_TOL[name]), name
    pooled = np.mean([float(m.cv_change_all_workers) for m in runs])
    assert pooled == pytest.approx(REFERENCE_ALL_WORKERS, abs=REFERENCE_TOL["cv_change"])
    # The tolerance pins the regime: Delta Gini's three-seed mean cannot reach 0.
    assert REFERENCE["gini_change"] + REFERENCE_TOL["gini_change"] < 0
    # Pre-AI Gini 0.497, college share 0.43, between-firm variance share 0.24 (rounded to 0.01).
    assert np.mean([float(m.before["gini"]) for m in runs]) == pytest.approx(0.497, abs=0.005)
    assert np.mean([float(m.before["college_share"]) for m in runs]) == pytest.approx(0.43, abs=0.01)
    assert np.mean([float(m.before["between_firm_share"]) for m in runs]) == pytest.approx(0.24, abs=0.01)


def test_fixed_points_converged(baseline_big):
    for state in (baseline_big.before, baseline_big.after):
        assert float(state["fp_residual"]) < BIG.fp_tol
        assert 0 < int(state["fp_iterations"]) < BIG.fp_max_iter


def _weighted_cv(state, params):
    a = tasks.exposure(tasks.task_grid(BIG.n_tasks), params.z_lo, params.z_hi, params.w_a)
    return float(jnp.sum(a * state.task_cv) / jnp.sum(a))


def test_homogenization_proposition_1(baseline, big_draws, baseline_big):
    """Property 1: m1 < 0 under "additive"; within-task CV (within firms) falls as A rises."""
    assert float(baseline_big.cv_change) < 0
    states = [jaxmodel.solve(baseline, big_draws, BIG, A) for A in (0.0, 0.5, 1.0, 1.5, 2.0)]
    cvs = [_weighted_cv(state, baseline) for state in states]
    assert all(b < a for a, b in zip(cvs, cvs[1:])), cvs
    # The diagnostic of the state is the same exposure-weighted mean.
    assert float(states[-1].cv_within_firms) == pytest.approx(cvs[-1], rel=1e-12)


def test_homogenization_reverses_under_strong_amplification(baseline, big_draws):
    """Property 2: "partial_multiplicative" with mu = 1.5 gives m1 > 0."""
    settings = BIG.replace(spec="partial_multiplicative")
    m = jaxmodel.moments(baseline.replace(mu=1.5), big_draws, settings)
    assert float(m.cv_change) > 0


def test_education_returns_proposition_3(baseline, big_draws, baseline_big):
    """Property 3: m3 < 0 with sigma = 1.5 and m3 > 0 with sigma = 0.7."""
    assert baseline.sigma == 1.5 and float(baseline_big.college_premium_change) < 0
    assert float(jaxmodel.moments(baseline.replace(sigma=0.7), big_draws, BIG).college_premium_change) > 0


def test_credential_reliance_proposition_4(baseline, big_draws, baseline_big):
    """Property 4: m4 > 0 when eta0 > 0; V_D falls as A rises."""
    assert baseline.eta0 > 0 and float(baseline_big.credential_reliance_change) > 0
    assert float(jaxmodel.moments(baseline.replace(eta0=1.5), big_draws, BIG).credential_reliance_change) > 0
    v_d = [float(jaxmodel.solve(baseline, big_draws, BIG, A).diagnostic_variance) for A in (0.0, 0.5, 1.0, 1.5, 2.0)]
    assert all(b < a for a, b in zip(v_d, v_d[1:])), v_d


def test_two_regimes(baseline, big_draws):
    """Property 5: commodity AI is equalizing; proprietary AI with concentrated assets concentrates."""
    commodity = jaxmodel.moments(baseline.replace(eta0=1.0, eta1=0.0), big_draws, BIG)
    assert commodity.regime == "equalizing" and float(commodity.gini_change) < 0
    proprietary = jaxmodel.moments(
        baseline.replace(eta0=0.0, eta1=1.0, psi=1.0, gini_K=0.8, xi=0.05), big_draws, BIG
    )
    assert proprietary.regime == "concentrating" and float(proprietary.gini_change) > 0


def test_sigma_one_is_the_continuous_cobb_douglas_limit(baseline, big_draws):
    at_one = jaxmodel.moments(baseline.replace(sigma=1.0), big_draws, BIG).vector()
    for s in (1.0 - 1e-6, 1.0 + 1e-6):
        near = jaxmodel.moments(baseline.replace(sigma=s), big_draws, BIG).vector()
        # Derivatives in sigma are O(0.1) (see the gradient test): a 1e-6 step moves moments < 1e-6;
        # the fixed-point tolerance adds < 1e-9.
        assert float(jnp.max(jnp.abs(near - at_one))) < 1e-6


def test_same_seed_same_numbers(baseline, big_draws, baseline_big):
    again = jaxmodel.moments(baseline, jaxmodel.make_draws(jax.random.key(0), BIG), BIG)
    assert jnp.array_equal(again.vector(), baseline_big.vector())
    assert again.to_dict() == baseline_big.to_dict()


def test_new_parameter_values_do_not_recompile(baseline, big_draws, baseline_big):
    from jaxmodel import outcomes

    size = outcomes.moments_jit._cache_size()
    jaxmodel.moments(baseline.replace(xi=0.3, alpha=0.4), big_draws, BIG)
    assert outcomes.moments_jit._cache_size() == size


def _max_intermediate_size(jaxpr) -> int:
    """Largest array (elements) produced anywhere in a jaxpr, sub-jaxprs included."""
    best = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            shape = getattr(var.aval, "shape", ())
            best = max(best, int(np.prod(shape)) if shape else 1)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    best = max(best, _max_intermediate_size(getattr(inner, "jaxpr", inner)))
    return best


def test_no_n_by_t_array_is_ever_formed(baseline, big_draws):
    """Memory: task sums factorise (MODEL.md section 4); the largest arrays are the per-branch
    incomes of both states, (2 states, 2 branches, O, N/O) = 4N elements, far below N x T = 40N."""
    from jaxmodel import outcomes

    closed = jax.make_jaxpr(lambda p, d: outcomes.moments_jit(p, d, BIG))(baseline, big_draws)
    largest = _max_intermediate_size(closed.jaxpr)
    assert largest <= 4 * BIG.n_agents < BIG.n_agents * BIG.n_tasks


def test_moments_are_finite_and_sane(baseline_big):
    values = baseline_big.to_dict()
    assert all(np.isfinite(v) for k, v in values.items() if k != "regime")
    for state in ("before", "after"):
        assert 0 < values[f"gini_{state}"] < 1
        assert 0 < values[f"college_share_{state}"] < 1
        assert 0 < values[f"capital_share_{state}"] < 1
        assert 0 < values[f"diagnostic_variance_{state}"] < 1
