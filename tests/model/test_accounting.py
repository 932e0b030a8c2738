"""Accounting identities of the solved economy (MODEL.md section 4), on jaxmodel's outputs.

Each identity is computed naively in NumPy from the fields of ``jaxmodel.State`` and, where a
quantity is not a State field (marginal products, task supplies, output Y), from the naive
reference of ``tests/model/test_reference_equations.py`` evaluated at jaxmodel's P*. The identities hold
exactly in exact arithmetic, so the tolerances only cover float64 rounding of sums of a few
thousand positive terms (about 1e-15 relative each) and, where the reference enters, the
differences between the reference and jaxmodel (at most 3e-11 relative for wages, see that file).
"""

from __future__ import annotations

import numpy as np
import pytest

from .test_reference_equations import (
    CASE_IDS,
    CASES,
    F,
    N,
    O,
    PER_FIRM,
    solved_case,
    to_layout,
)


@pytest.fixture(scope="module")
def case():
    """(params dict, {"before"/"after": (jaxmodel State, naive reference at its P*)}), solved once
    per session for both this file and test_reference_equations.py."""

    def get(spec: str, point: str):
        c = solved_case(spec, point)
        return c["p"], {name: (c["states"][name], c["refs"][name]) for name in ("before", "after")}

    return get


def branch_weights(state) -> np.ndarray:
    """w_i0 = 1 - P_i, w_i1 = P_i in jaxmodel's (2, O, M) layout."""
    P = np.asarray(state.P, dtype=np.float64)
    return np.stack([1.0 - P, P])


def owner_mass(p: dict) -> float:
    """m_o = pi_o N / ((1 - pi_o) F) (MODEL.md section 4)."""
    return p["owner_share"] * N / ((1.0 - p["owner_share"]) * F)


@pytest.mark.parametrize(("spec", "point"), CASES, ids=CASE_IDS)
def test_occupation_wage_bill_equals_sum_of_commodity_marginal_products(case, spec, point):
    """sum_{i in o, e} w_ie w^c_ie = sum_{i in o, e} w_ie MPc_ie for every occupation o.

    w^c from State.wage, MPc from the naive reference. The occupation factor makes this exact up
    to rounding in jaxmodel (1e-15); the reference's MPc differs from jaxmodel's by about 1e-14
    (prices agree to 1e-14, see test_reference_equations.py). 1e-12 relative leaves a margin of
    100 and catches a factor computed over the wrong agents or without the weights (errors of
    1e-3 or more).
    """
    p, states = case(spec, point)
    for name, (state, ref) in states.items():
        w = branch_weights(state)
        mpc = to_layout(ref["market"]["MPc"], ref["order"])
        bill = np.sum(w * np.asarray(state.wage), axis=(0, 2))
        expected = np.sum(w * mpc, axis=(0, 2))
        assert bill.shape == (O,)
        np.testing.assert_allclose(bill, expected, rtol=1e-12, atol=0, err_msg=name)


@pytest.mark.parametrize(("spec", "point"), CASES, ids=CASE_IDS)
def test_worker_plus_owner_income_equals_total_income(case, spec, point):
    """sum w W + sum_j m_o (owner income)_j = sum w w^c + sum_j Pi_j, and the capital share.

    State fields only. Both sides are sums of 4,000 positive float64 terms (relative rounding
    about 1e-15 each side, summed pairwise): 1e-12 relative leaves a margin of 100 and fails if
    any rent is paid twice or lost (e.g. xi applied to the owners too: an error of xi x rents,
    1e-2 of total income or more).
    """
    p, states = case(spec, point)
    m_o = owner_mass(p)
    for name, (state, _) in states.items():
        w = branch_weights(state)
        worker_total = np.sum(w * np.asarray(state.income))
        owner_total = m_o * np.sum(np.asarray(state.owner_income))
        total = np.sum(w * np.asarray(state.wage)) + np.sum(np.asarray(state.rents))
        assert worker_total + owner_total == pytest.approx(total, rel=1e-12, abs=0), name
        # The owners' share of total income, as jaxmodel reports it (same rounding argument).
        assert float(state.capital_share) == pytest.approx(owner_total / total, rel=1e-12, abs=0), name


@pytest.mark.parametrize(("spec", "point"), CASES, ids=CASE_IDS)
def test_euler_prices_exhaust_ces_output(case, spec, point):
    """sum_k p_k Y_k = Y (the CES aggregate is homogeneous of degree 1), and its consequences.

    p_k = dz (Y/Y_k)^(1/sigma) from State.prices; Y_k and Y from the naive reference (they are not
    State fields). sum_k p_k Y_k = Y^(1/sigma) sum_k dz Y_k^((sigma-1)/sigma) = Y exactly (at
    sigma = 1, sum_k dz Y = Y); in float64 the 40-term sum and the powers round to about 1e-15,
    and State.prices agree with the reference to 1e-14: 1e-12 relative leaves a margin of 100.
    Two consequences, also exact: output is exhausted by the marginal products,
    sum_ie w_ie (MPc_ie + MPp_ie) = N Y (tolerance as above), and total income is output plus the
    return to assets, sum w w^c + sum_j Pi_j = N Y + r_K mean(w^c) (N/F) sum_j K_j (State wages
    and rents against the reference's Y and K). The wage projection's coefficients (and the 1e-12
    ridge jaxmodel adds to them) do not enter these totals: the occupation factor makes each wage
    bill equal sum w MPc whatever the coefficients, so 1e-12 relative holds here too.
    """
    p, states = case(spec, point)
    for name, (state, ref) in states.items():
        mk, ec = ref["market"], ref["econ"]
        prices = np.asarray(state.prices, dtype=np.float64)
        assert np.sum(prices * mk["Yk"]) == pytest.approx(mk["Y"], rel=1e-12, abs=0), name
        assert np.sum(mk["w"] * (mk["MPc"] + mk["MPp"])) == pytest.approx(N * mk["Y"], rel=1e-12, abs=0), name
        w = branch_weights(state)
        wage_total = np.sum(w * np.asarray(state.wage))
        total = wage_total + np.sum(np.asarray(state.rents))
        asset_return = p["r_K"] * (wage_total / N) * PER_FIRM * np.sum(ec["K"])
        assert total == pytest.approx(N * mk["Y"] + asset_return, rel=1e-12, abs=0), name


@pytest.mark.parametrize(("spec", "point"), CASES, ids=CASE_IDS)
def test_rents_split_xi_to_workers_and_rest_to_owners(case, spec, point):
    """Each firm's rent Pi_j goes xi to its workers (equally per worker) and 1 - xi to its owners.

    Workers' part: sum over the firm's workers and branches of w_ie (W_ie - w^c_ie); each term is
    xi Pi_j / (N/F) times w_ie, and a worker's branch weights sum to 1. W - w^c is a difference of
    State fields, exact to about 1e-16 of the income W, and W is at most 8 times the largest
    rent per worker Pi_max / (N/F) at these points, so the bounds are absolute, 1e-12 of
    Pi_max / (N/F) per worker and 1e-12 of Pi_max per firm (4e-16 seen). Owners' part: m_o times
    the income of one owner person, one product and one quotient: 1e-13 relative. The two parts
    add up to Pi_j (1e-12 relative).
    """
    p, states = case(spec, point)
    xi, m_o = p["xi"], owner_mass(p)
    for name, (state, _) in states.items():
        w = branch_weights(state)
        firm = np.asarray(state.firm)
        rents = np.asarray(state.rents, dtype=np.float64)
        assert np.all(rents > 0), name
        share = np.asarray(state.income) - np.asarray(state.wage)  # (2, O, M)
        # The same rent share for both branches and for every worker of a firm.
        expected_share = xi * rents[firm] / PER_FIRM
        np.testing.assert_allclose(share, np.broadcast_to(expected_share, share.shape),
                                   rtol=0, atol=1e-12 * rents.max() / PER_FIRM, err_msg=name)
        to_workers = np.bincount(np.broadcast_to(firm, w.shape).ravel(), weights=(w * share).ravel(), minlength=F)
        to_owners = m_o * np.asarray(state.owner_income)
        np.testing.assert_allclose(to_workers, xi * rents, rtol=0, atol=1e-12 * rents.max(), err_msg=name)
        np.testing.assert_allclose(to_owners, (1.0 - xi) * rents, rtol=1e-13, atol=0, err_msg=name)
        np.testing.assert_allclose(to_workers + to_owners, rents, rtol=1e-12, atol=0, err_msg=name)


@pytest.mark.parametrize(("spec", "point"), CASES, ids=CASE_IDS)
def test_owners_are_the_share_pi_o_of_persons(case, spec, point):
    """F m_o / (N + F m_o) = pi_o, with m_o read off the State: (1 - xi) Pi_j / (owner income)_j.

    The owner mass implied by the State is the same at every firm and equals MODEL.md's
    m_o = pi_o N / ((1 - pi_o) F); the persons of the Gini (worker-branch weights summing to N,
    plus F owner groups of mass m_o) then hold owners in the share pi_o. One product and one
    quotient per firm: 1e-13 relative.
    """
    p, states = case(spec, point)
    assert p["xi"] < 1.0  # owners earn nothing at xi = 1, where m_o is not identified
    for name, (state, _) in states.items():
        implied = (1.0 - p["xi"]) * np.asarray(state.rents) / np.asarray(state.owner_income)
        np.testing.assert_allclose(implied, owner_mass(p), rtol=1e-13, atol=0, err_msg=name)
        w = branch_weights(state)
        worker_mass = np.sum(w)
        assert worker_mass == pytest.approx(N, rel=1e-14, abs=0), name
        owners = F * implied.mean()
        assert owners / (worker_mass + owners) == pytest.approx(p["owner_share"], rel=1e-13, abs=0), name


@pytest.mark.parametrize(("spec", "point"), CASES, ids=CASE_IDS)
def test_task_variance_splits_into_within_and_between_firms(case, spec, point):
    """V_k over all workers = V_k within firms + sum_j W_jk (ybar_jk - ybar_k)^2 / W_k (the law of
    total variance), with both CVs from State (task_cv within firms, task_cv_all_workers over all)
    and the firms' task means ybar_jk from the naive reference's (2, N, T) outputs at P*.

    Exact in exact arithmetic; the two State CVs come from different groupings of the same sums
    (about 1e-15 relative each), and the reference's outputs differ from jaxmodel's by ~1e-14
    (prices): 1e-10 relative on a variance leaves a wide margin and catches a within-firm variance
    taken about the wrong means (errors of 1e-3 or more, the between-firm share at these points).
    """
    _, states = case(spec, point)
    for name, (state, ref) in states.items():
        ec = ref["econ"]
        P = ref["P"]
        w = np.stack([1.0 - P, P])[:, :, None] * ec["task_weight_of_agent"][None]  # (2, N, T)
        y, firm = ec["y"], ec["firm"]
        W = np.sum(w, axis=(0, 1))
        mean = np.asarray(state.task_mean, dtype=np.float64)
        between = np.zeros_like(W)
        for j in range(F):
            wj = np.sum(w[:, firm == j], axis=(0, 1))
            yj = np.sum(w[:, firm == j] * y[:, firm == j], axis=(0, 1)) / wj
            between += wj * (yj - mean) ** 2
        v_all = (np.asarray(state.task_cv_all_workers) * mean) ** 2
        v_within = (np.asarray(state.task_cv) * mean) ** 2
        np.testing.assert_allclose(v_within + between / W, v_all, rtol=1e-10, atol=0, err_msg=name)
        assert np.all(between > 0), name
