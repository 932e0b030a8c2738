"""Credential reliance where the credential does not vary (issue 12, item 4).

R = sum_o abar_o b^D_o / sum_o abar_o (MODEL.md section 5) needs b^D_o, the coefficient of the
credential in occupation o's projection of log h on [1, s, e]. Where (almost) nobody or everybody in
an occupation is predicted to go to college, e is collinear with the intercept and b^D_o is not
identified: its value came from the numerical ridge, not from the data. The rule
(``jaxmodel.screening.credential_support``): an occupation enters R with weight abar_o g_o, where
g_o = clip(min(n0_o, n1_o) / 5 - 1, 0, 1) and n1_o, n0_o are its expected numbers of college and
non-college agents; m4 compares R on the occupations supported in both states.

The degenerate case below was found by a reviewer: with rho_occ = 1 (occupations sorted by
ability), no cost heterogeneity, a high cost falling steeply with ability and a near-deterministic
choice (tau = 0.005), college shares by occupation are 0 (six occupations), ~1e-215, ~0.5 and 1
(two occupations). Before the rule, the ridge decided m4 there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmodel
from jaxmodel import screening

SETTINGS = jaxmodel.Settings(n_agents=20_000, n_firms=100)
DEGENERATE = dict(rho_occ=1.0, sigma_c=0.0, c_bar=5.0, zeta=20.0, tau=0.005)


@pytest.fixture(scope="module")
def degenerate():
    params = jaxmodel.baseline().replace(**DEGENERATE)
    draws = jaxmodel.make_draws(jax.random.key(0), SETTINGS)
    states = {label: jaxmodel.solve(params, draws, SETTINGS, A) for label, A in (("before", 0.0), ("after", params.A1))}
    return params, draws, states, jaxmodel.moments(params, draws, SETTINGS)


def test_support_is_the_documented_ramp():
    """g_o = clip(min(n0, n1)/5 - 1, 0, 1) on hand-made weights: 0 up to 5 expected holders of the
    rarer credential, linear to 1 at 10, 1 beyond; symmetric in the two credentials. Exact
    arithmetic on small integers and halves, so compared with ==."""
    M = 40
    rows = []
    for n1 in (0.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 35.0, 37.5, 40.0):
        P = np.zeros(M)
        P[: int(n1)] = 1.0
        if n1 % 1:
            P[int(n1)] = 0.5
        rows.append(P)
    P = jnp.asarray(np.array(rows))  # (O, M)
    w = jnp.stack([1.0 - P, P])
    g = np.asarray(screening.credential_support(w))
    expected = [0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    # n0 = 40 - n1: 30 -> n0 = 10 (1), 35 -> 5 (0), 37.5 -> 2.5 (0), 40 -> 0 (0).
    assert g.tolist() == expected


def test_degenerate_occupations_leave_reliance(degenerate):
    """Occupations where the credential does not vary get g_o = 0, and R is the abar-weighted mean
    of b^D_o over the rest, recomputed here from the state's fields (same floats, same formula
    written out: 1e-14 relative for a ratio of sums of ten terms)."""
    params, _, states, m = degenerate
    for label, state in states.items():
        P = np.asarray(state.P)
        n1, n0 = P.sum(1), (1.0 - P).sum(1)
        support = np.asarray(state.credential_support)
        assert np.all(support[np.minimum(n0, n1) < 5.0] == 0.0), label
        assert np.all(support[np.minimum(n0, n1) >= 10.0] == 1.0), label
        # The case is degenerate: most occupations are out, at least one is in.
        assert 1 <= support.sum() <= 3, (label, support)
        abar, coef = np.asarray(state.occupation_exposure), np.asarray(state.credential_coef)
        expected = np.sum(abar * support * coef) / np.sum(abar * support)
        assert abs(float(state.credential_reliance) - expected) < 1e-14 * abs(expected), label
        # The identified coefficients are of the order of the education effect on log h, not 0.
        assert np.all(np.abs(coef[support == 1.0]) > 0.1), (label, coef)
    common = np.minimum(np.asarray(states["before"].credential_support), np.asarray(states["after"].credential_support))
    assert float(m.after["credential_occupations"]) == float(m.before["credential_occupations"]) == common.sum()
    change = float(m.after["credential_reliance"]) - float(m.before["credential_reliance"])
    assert float(m.credential_reliance_change) == pytest.approx(change, abs=1e-15)


def test_degenerate_case_is_finite_and_the_unseen_credential_is_unpaid(degenerate):
    """The ridge's role: in an occupation where the credential never varies, the wage projection
    pays it nothing (coefficient 0, not NaN or an arbitrary number) and everything stays finite.
    1e-9 on a coefficient of order 0.4 in supported occupations: the ridge's shrinkage of an
    unidentified coefficient is of the order of the college share divided by 1e-12, and these
    shares are 0 or 1 - 0 to within 1e-200."""
    _, _, states, m = degenerate
    assert np.all(np.isfinite(np.asarray(m.vector())))
    for label, state in states.items():
        P = np.asarray(state.P)
        share = P.mean(1)
        degenerate_occ = (share < 1e-100) | (share > 1.0 - 1e-15)
        assert degenerate_occ.sum() >= 6, (label, share)
        wage_credential = np.asarray(state.wage_coef)[:, 2]
        assert np.all(np.isfinite(np.asarray(state.wage_coef))), label
        assert np.all(np.abs(wage_credential[degenerate_occ]) < 1e-9), (label, wage_credential)
        assert np.all(np.abs(np.asarray(state.credential_coef)[degenerate_occ]) < 1e-9), label


def test_rule_is_silent_when_every_occupation_has_both_credentials(baseline, small_draws):
    """At the baseline every occupation has thousands of each credential: g_o = 1 and R is exactly
    MODEL.md's abar-weighted mean of b^D_o (1e-14 relative: the same sums in another order)."""
    for A in (0.0, float(baseline.A1)):
        state = jaxmodel.solve(baseline, small_draws, SETTINGS, A)
        assert np.all(np.asarray(state.credential_support) == 1.0)
        abar, coef = np.asarray(state.occupation_exposure), np.asarray(state.credential_coef)
        assert float(state.credential_reliance) == pytest.approx(np.sum(abar * coef) / np.sum(abar), rel=1e-14)


def test_reliance_change_differentiable_in_the_degenerate_case(degenerate):
    """Exact derivatives stay finite and match central differences where occupations are out of R:
    d m4 / d xi by forward mode against (m4(xi + h) - m4(xi - h)) / 2h with h = 1e-5. The moment
    is smooth in xi here (no occupation near the ramp's ends), so the difference quotient is
    accurate to O(h^2) plus fixed-point noise 1e-10 / h = 1e-5; 1e-4 absolute on a derivative of
    order 1e-2 leaves room for both."""
    params, draws, _, _ = degenerate

    def m4(xi):
        return jaxmodel.moments(params.replace(xi=xi), draws, SETTINGS).credential_reliance_change

    xi = float(params.xi)
    exact = float(jax.jacfwd(m4)(jnp.asarray(xi)))
    h = 1e-5
    numeric = (float(m4(xi + h)) - float(m4(xi - h))) / (2 * h)
    assert np.isfinite(exact)
    assert abs(exact - numeric) < 1e-4, (exact, numeric)
