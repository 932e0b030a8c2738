"""MSM inference functions: known answers, and agreement with estimagic on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest

from estimation import inference
from estimation.msm.parameters import free_parameters
from estimation.errors import ConfigError


def _random_problem(seed: int, m: int = 6, k: int = 5):
    rng = np.random.default_rng(seed)
    G = rng.normal(size=(m, k))
    A = rng.normal(size=(m, m))
    omega = A @ A.T + m * np.eye(m)
    B = rng.normal(size=(m, m))
    W = B @ B.T + np.eye(m)
    return G, W, omega


@pytest.mark.parametrize("seed", range(4))
def test_agrees_with_estimagic(seed):
    from estimagic import msm_covs, msm_sensitivity

    G, W, omega = _random_problem(seed)
    cov = inference.cov_robust(G, W, omega)
    # Same algebra in a different order: agreement to 1e-10 relative (matrices of order 1-100).
    np.testing.assert_allclose(cov, msm_covs.cov_robust(G, W, omega), rtol=1e-10, atol=1e-12)
    opt_w = np.linalg.inv(omega)
    np.testing.assert_allclose(inference.cov_optimal(G, opt_w), msm_covs.cov_optimal(G, opt_w), rtol=1e-10, atol=1e-12)
    lam = inference.sensitivity_to_bias(G, W)
    np.testing.assert_allclose(lam, msm_sensitivity.calculate_sensitivity_to_bias(G, W), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        inference.sensitivity_to_noise(lam, omega, cov),
        msm_sensitivity.calculate_actual_sensitivity_to_noise(lam, W, omega, cov), rtol=1e-10, atol=1e-12,
    )
    np.testing.assert_allclose(
        inference.sensitivity_to_removal(G, W, omega, cov),
        msm_sensitivity.calculate_actual_sensitivity_to_removal(G, W, omega, cov), rtol=1e-10, atol=1e-12,
    )


def test_identity_moment_map_gives_cov_equal_omega():
    _, W, omega = _random_problem(7, k=6)
    np.testing.assert_allclose(inference.cov_robust(np.eye(6), W, omega), omega, rtol=1e-10, atol=1e-12)


def test_sandwich_collapses_under_optimal_weights():
    G, _, omega = _random_problem(8)
    W = np.linalg.inv(omega)
    np.testing.assert_allclose(inference.cov_robust(G, W, omega), inference.cov_optimal(G, W), rtol=1e-9)


def test_j_statistic_known_answers():
    omega = np.diag([0.04, 0.01, 0.09])
    # Exactly identified: the errors are 0 at the estimate, J = 0 and there is no test.
    zero = inference.j_statistic(np.zeros(3), omega, n_params=3)
    assert zero["J"] == 0.0 and zero["df"] == 0 and zero["p_value"] is None
    # One over-identifying restriction, error of 1.96 se on one moment: J = 1.96^2, p = 0.05.
    j = inference.j_statistic(np.array([1.96 * 0.2, 0.0, 0.0]), omega, n_params=2)
    assert j["J"] == pytest.approx(1.96**2, rel=1e-12)
    assert j["df"] == 1 and j["p_value"] == pytest.approx(0.05, abs=1e-4)


def test_confidence_intervals_are_normal_quantiles():
    lo, hi = inference.confidence_intervals(np.array([1.0]), np.array([0.5]))
    assert lo[0] == pytest.approx(1 - 1.959964 * 0.5, abs=1e-6) and hi[0] == pytest.approx(1 + 1.959964 * 0.5, abs=1e-6)


def test_identification_detects_rank_and_names_the_direction():
    rng = np.random.default_rng(3)
    G = rng.normal(size=(6, 3))
    G[:, 2] = 2.0 * G[:, 0] - G[:, 1]  # third column a combination of the first two
    ident = inference.identification(G, np.eye(6), ["a", "b", "c"])
    assert ident["rank"] == 2 and not ident["identified"] and ident["condition_number"] > 1e12
    (weak,) = ident["weak_directions"]
    v = np.array([weak["combination"].get(n, 0.0) for n in "abc"])
    # The null direction of G is proportional to (2, -1, -1).
    np.testing.assert_allclose(np.abs(v / np.linalg.norm(v)), np.abs(np.array([2, -1, -1]) / np.sqrt(6)), atol=1e-8)
    full = inference.identification(rng.normal(size=(6, 3)), np.eye(6), ["a", "b", "c"])
    assert full["identified"] and full["rank"] == 3 and np.isfinite(full["condition_number"])


def test_free_parameter_maps_round_trip_and_stay_inside():
    free = free_parameters(("alpha", "xi", "lam", "gamma"), {"alpha": (0.1, 3.0)})
    theta = np.array([0.7, 0.2, -0.4, 1.3])
    u = free.to_u(theta)
    # exp/log and logistic/logit in float64: the round trip loses a few ulps.
    np.testing.assert_allclose(np.asarray(free.to_theta(u)), theta, rtol=1e-12)
    # Any u maps inside the bounds, and the bounds are reached at finite u (sin^2 = 1, 0; u^2 = 0).
    for u in np.linspace(-7.0, 7.0, 57):
        t = np.asarray(free.to_theta(np.array([u, u, u, u])))
        assert 0.1 <= t[0] <= 3.0 and 0.0 <= t[1] <= 1.0 and t[3] >= -1.0
    at_bounds = np.asarray(free.to_theta(np.array([np.pi / 2, 0.0, 5.0, 0.0])))
    # alpha's 3.0 (a --bound) and gamma's -0.9 (its default search box) are not domain bounds.
    assert free.binding(at_bounds) == ["upper (search box)", "lower", None, "lower (search box)"]


@pytest.mark.parametrize(
    ("names", "bounds", "fragment"),
    [
        (("alpha", "kappa"), {}, "unknown parameter"),
        (("alpha", "alpha"), {}, "given twice"),
        (("alpha",), {"xi": (0.0, 1.0)}, "not free"),
        (("xi",), {"xi": (-0.5, 1.0)}, "domain"),
        (("alpha",), {"alpha": (2.0, 1.0)}, "below the upper"),
        (("rho",), {"rho": (-1.0, 1.0)}, "excludes"),
        ((), {}, "at least one"),
        (("z_lo", "z_hi"), {}, "cannot both be free"),
    ],
)
def test_bad_free_parameters_are_refused(names, bounds, fragment):
    with pytest.raises(ConfigError, match=fragment):
        free_parameters(names, bounds)


def _at_an_estimate(rng, m: int, k: int, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(G, Sigma, g) with g satisfying the first-order condition G'W g = 0 of an estimate made with W."""
    G = rng.normal(size=(m, k))
    A = rng.normal(size=(m, m))
    sigma = A @ A.T / m + 0.1 * np.eye(m)
    raw = rng.normal(size=m)
    g = raw - G @ np.linalg.solve(G.T @ W @ G, G.T @ W @ raw)
    return G, sigma, g


def test_j_test_under_optimal_weights_is_g_sigma_inverse_g():
    """With W = Sigma^-1 and G'Wg = 0, g' S^+ g = g' Sigma^-1 g (the generalised form reduces to Hansen's)."""
    rng = np.random.default_rng(0)
    for m, k in ((6, 5), (6, 3), (4, 2)):
        A = rng.normal(size=(m, m))
        sigma = A @ A.T / m + 0.1 * np.eye(m)
        W = np.linalg.inv(sigma)
        G = rng.normal(size=(m, k))
        raw = rng.normal(size=m)
        g = raw - G @ np.linalg.solve(G.T @ W @ G, G.T @ W @ raw)
        general = inference.j_test(g, sigma, k, jacobian=G, weights=W)
        plain = inference.j_test(g, sigma, k)
        # Same number by two algebraic routes: rounding of 6 x 6 solves, 1e-10 relative.
        assert general["J"] == pytest.approx(plain["J"], rel=1e-10) and general["df"] == plain["df"] == m - k
        assert general["form"] == "g' S^+ g" and plain["form"] == "g' Sigma^-1 g"


@pytest.mark.parametrize("kind", ["diagonal", "identity"])
def test_j_test_under_other_weights_is_the_generalised_form(kind):
    """Under W other than Sigma^-1, J = g' S^+ g with S = (I - H) Sigma (I - H)', computed here by an
    independent route (NumPy's pinv of the explicit S; H from lstsq), with df = m - k."""
    rng = np.random.default_rng(1)
    m, k = 6, 3
    W = np.eye(m) if kind == "identity" else np.diag(1.0 / rng.uniform(0.01, 0.1, m) ** 2)
    G, sigma, g = _at_an_estimate(rng, m, k, W)
    C = np.linalg.cholesky(W)
    H = G @ np.linalg.lstsq(C.T @ G, C.T, rcond=None)[0]  # G (G'WG)^-1 G'W via least squares on C'G
    S = (np.eye(m) - H) @ sigma @ (np.eye(m) - H).T
    expected = float(g @ np.linalg.pinv(S, rcond=1e-10, hermitian=True) @ g)
    got = inference.j_test(g, sigma, k, jacobian=G, weights=W)
    assert got["df"] == m - k == np.linalg.matrix_rank(S, tol=1e-10 * np.abs(S).max())
    assert got["J"] == pytest.approx(expected, rel=1e-8)
    # And it is not Hansen's g' Sigma^-1 g, which is wrong under these weights.
    assert abs(got["J"] - inference.j_test(g, sigma, k)["J"]) > 1e-3 * got["J"]
