"""The numbers in a calibration's results folder, recomputed from the folder's own files.

One small ``levelfield calibrate`` runs in this process (as tests/msm/test_calibration.py's ``cli_run``,
same size, so the compiled programs are shared when both files run in one session), and a second
with ``--weights optimal``. Every test then reads the CSV and JSON files back with pandas/json and
recomputes, in NumPy and independently of ``estimation.inference``/``estimation.sensitivity``, what
README "The calibration" and MODEL.md section 7 say the files hold: the sandwich covariance, the
standard errors and 95% Wald intervals, the Andrews-Gentzkow-Shapiro Lambda, the Delta Gini
decomposition, the flip checks, Hansen's J, and the two-step optimal weights.

Tolerances. ``estimation.output.calibration_files`` writes every float with ``%.17g`` (17 significant digits: an
exact float64 round trip) and report.json holds Python's repr (also exact, read back by json's
correctly rounded ``float``). pandas' default parser reads the CSVs back (its
``float_precision="round_trip"`` is deprecated in pandas 3), and
``test_csv_files_hold_the_arrays_exactly`` checks with zero tolerance that the CSVs equal
report.json bit for bit. What remains between a file and its recomputation is rounding in the
recomputation's own matrix products and inverses, bounded by about cond * eps relative to the size
of the result (``_linalg_tol``); a wrong sign, a transposed or missing factor is off by O(1).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from jaxmodel import MOMENT_NAMES

EPS = np.finfo(np.float64).eps
SIZE_ARGS = ["--agents", "5000", "--firms", "50", "--starts", "2", "--sim-sets", "6", "--max-iter", "25"]
N_SIM = 6
GINI = "gini_change"


def _run(out: Path, *extra: str) -> tuple[Path, str]:
    from estimation.cli import main

    buffer = io.StringIO()
    # rich's console writes to whatever sys.stdout is at the time of writing.
    with contextlib.redirect_stdout(buffer):
        code = main(["calibrate", *SIZE_ARGS, "--out", str(out), *extra])
    assert code == 0, buffer.getvalue()[-2000:]
    return out, buffer.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The default calibration (diagonal weights, two flip checks)."""
    out, _ = _run(tmp_path_factory.mktemp("results-files") / "results")
    return Files(out)


@pytest.fixture(scope="module")
def optimal_run(tmp_path_factory):
    """Two-step optimal weights, no flip checks."""
    out, _ = _run(tmp_path_factory.mktemp("results-files-optimal") / "results", "--weights", "optimal",
                  "--flip-checks", "0")
    return Files(out)


def _number(x):
    """report.json writes inf and nan as strings."""
    return float(x) if isinstance(x, str) else x


class Files:
    """The files of one results folder, read as a user would (pandas and json)."""

    def __init__(self, out: Path):
        self.out = out

        def matrix(name):
            return pd.read_csv(out / name, index_col=0)

        self.estimates = pd.read_csv(out / "estimates.csv")
        self.moments = pd.read_csv(out / "moments.csv")
        self.delta_gini = pd.read_csv(out / "delta_gini.csv") \
            if (out / "delta_gini.csv").exists() else None
        self.report = json.loads((out / "report.json").read_text("utf-8"))
        self.params = list(self.estimates["parameter"])
        self.moment_names = list(self.moments["moment"])
        assert self.moment_names == list(MOMENT_NAMES)
        # Every matrix is read with its labels and put in the order of estimates.csv / moments.csv.
        self.jacobian = matrix("jacobian.csv")
        self.weights_frame = matrix("weights.csv")
        self.moments_cov_frame = matrix("moments_cov.csv")
        self.cov_frame = matrix("cov.csv")
        self.sensitivity_frame = matrix("sensitivity.csv")
        m, p = self.moment_names, self.params
        self.G = self.jacobian.loc[m, p].to_numpy(float)  # (6, k)
        self.W = self.weights_frame.loc[m, m].to_numpy(float)  # (6, 6)
        self.Omega = self.moments_cov_frame.loc[m, m].to_numpy(float)  # (6, 6)
        self.V = self.cov_frame.loc[p, p].to_numpy(float)  # (k, k)
        self.Lambda = self.sensitivity_frame.loc[p, m].to_numpy(float)  # (k, 6)
        self.target = self.moments["target"].to_numpy(float)
        self.target_se = self.moments["se"].to_numpy(float)
        self.model = self.moments["model"].to_numpy(float)
        self.theta = self.estimates["estimate"].to_numpy(float)
        self.se = self.estimates["se"].to_numpy(float)


def _linalg_tol(*conds: float) -> float:
    """Relative tolerance for two float64 evaluations of one linear-algebra formula from the same
    exact inputs: rounding of a backward-stable inverse/solve is about cond * eps relative to the
    result's size; the factor 1e3 covers the handful of (6 x k) products around it. Never below
    1e-9 (the tolerance the issue asks for) and never so loose that the comparison means nothing."""
    tol = max(1e-9, 1e3 * max(conds) * EPS)
    assert tol < 1e-4, f"the matrices are too ill-conditioned (cond {max(conds):.2e}) for a meaningful check"
    return tol


def _assert_close(actual, expected, tol, what):
    """Elementwise, relative to the largest entry (off-diagonal entries can be near zero)."""
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    assert actual.shape == expected.shape, what
    scale = float(np.max(np.abs(expected)))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale, err_msg=what)


def _gwg(f: Files) -> np.ndarray:
    return f.G.T @ f.W @ f.G


def _lambda(f: Files) -> np.ndarray:
    """Andrews-Gentzkow-Shapiro Lambda = -(G'WG)^{-1} G'W, by a solve rather than an inverse."""
    return -np.linalg.solve(_gwg(f), f.G.T @ f.W)


def test_csv_files_hold_the_arrays_exactly(run):
    """The CSVs and report.json hold the same float64 numbers bit for bit (%.17g and repr both
    round-trip exactly), which is what lets the other tests use tolerances of rounding only."""
    r = run.report
    np.testing.assert_array_equal(run.G, np.array(r["jacobian"]["values"]))
    assert r["jacobian"]["rows"] == run.moment_names and r["jacobian"]["columns"] == run.params
    np.testing.assert_array_equal(run.W, np.array(r["weights"]))
    np.testing.assert_array_equal(run.Omega, np.array(r["moments_cov"]))
    np.testing.assert_array_equal(run.V, np.array(r["cov"]))
    np.testing.assert_array_equal(run.Lambda, np.array(r["sensitivity"]["values"]))
    assert r["sensitivity"]["rows"] == run.params and r["sensitivity"]["columns"] == run.moment_names
    assert run.params == r["free_parameters"] == ["alpha", "sigma_nu", "sigma", "eta1", "xi"]
    for row, rec in zip(r["estimates"], run.estimates.to_dict("records")):
        assert row["estimate"] == rec["estimate"]
        # A withheld SE (at a bound) is NaN: "nan" in report.json (its JSON form), empty in the CSV.
        assert row["se"] == rec["se"] or (row["se"] == "nan" and np.isnan(rec["se"]))


def test_moments_cov_is_target_variance_plus_simulation_noise(run):
    """moments_cov.csv = diag(se^2) + Omega_sim (README: "Omega + Omega_sim"), with Omega_sim the
    ddof-1 covariance over --sim-sets 6 draw sets: positive semi-definite of rank at most 5."""
    omega_sim = np.array(run.report["omega_sim"])
    # One addition per entry, the same in both: equal to the last bit.
    np.testing.assert_array_equal(run.Omega, np.diag(run.target_se**2) + omega_sim)
    # moments.csv's simulation_sd is sqrt(diag(Omega_sim)) (one sqrt, correctly rounded: exact).
    np.testing.assert_array_equal(run.moments["simulation_sd"].to_numpy(), np.sqrt(np.diag(omega_sim)))
    noise = run.Omega - np.diag(run.target_se**2)
    eig = np.linalg.eigvalsh((noise + noise.T) / 2)
    # Rank <= N_SIM - 1 = 5: the smallest eigenvalue is zero up to rounding of the 6x6 covariance
    # (~eps times the largest); 1e-9 relative is far above rounding and far below a real eigenvalue.
    assert eig[-1] > 0 and abs(eig[0]) <= 1e-9 * eig[-1], eig
    # The errors of moments.csv: error = model - target (one subtraction: exact), in SEs.
    np.testing.assert_array_equal(run.moments["error"].to_numpy(), run.model - run.target)
    np.testing.assert_array_equal(run.moments["error_in_se"].to_numpy(), (run.model - run.target) / run.target_se)


def test_cov_is_the_sandwich_formula(run):
    """cov.csv = (G'WG)^{-1} G'W Omega W G (G'WG)^{-1} from jacobian.csv, weights.csv, moments_cov.csv."""
    assert run.report["identification"]["identified"]
    gwg = _gwg(run)
    bread = np.linalg.inv(gwg)
    meat = run.G.T @ run.W @ run.Omega @ run.W @ run.G
    expected = bread @ meat @ bread
    _assert_close(run.V, expected, _linalg_tol(np.linalg.cond(gwg)), "cov.csv vs sandwich")
    # It is the sandwich, not the optimal-weights shortcut (G'WG)^{-1}: W here is diag(1/se^2),
    # not Omega^{-1}, and the two differ by far more than rounding.
    assert not np.allclose(run.V, bread, rtol=1e-3)


def test_se_and_95_percent_intervals_inside_the_bounds(run):
    """README: sandwich SEs on the natural scale, se = sqrt(diag(cov)), withheld (NaN, with a
    reason) at a binding bound; 95% intervals from the delta method on the unconstrained scale
    (``inference.bounded_intervals``), recomputed here from cov.csv and the bounds in estimates.csv
    to the last bit (the same float operations on the same numbers), and inside the bounds."""
    from estimation import inference

    binding = [b or None for b in run.estimates["at_bound"].fillna("").astype(str)]
    lo_b, hi_b = run.estimates["lower_bound"].to_numpy(float), run.estimates["upper_bound"].to_numpy(float)
    expected = inference.bounded_intervals(run.theta, run.V, lo_b, hi_b, binding)
    lower, upper = run.estimates["ci_lower"].to_numpy(), run.estimates["ci_upper"].to_numpy()
    np.testing.assert_array_equal(lower, expected["lower"])
    np.testing.assert_array_equal(upper, expected["upper"])
    assert list(run.estimates["interval"]) == expected["method"]
    given = ~np.array([bool(b) for b in binding])
    np.testing.assert_array_equal(run.se[given], np.sqrt(np.diag(run.V))[given])  # one sqrt of the same number
    assert np.isnan(run.se[~given]).all()
    notes = run.estimates["se_note"].fillna("").astype(str).to_numpy()
    assert all(("Andrews 1999" in n) == (not g) for n, g in zip(notes, given))
    assert (lo_b <= lower).all() and (lower <= run.theta).all() and (run.theta <= upper).all() and (upper <= hi_b).all()
    # The column estimate matches the end point of the best start (report.json's convergence).
    conv = run.report["convergence"]
    best = conv["starts"][conv["best_start"]]["end"]
    np.testing.assert_array_equal(run.theta, [best[p] for p in run.params])


def test_sensitivity_is_ags_lambda(run):
    """sensitivity.csv = Lambda = -(G'WG)^{-1} G'W (parameters x moments)."""
    gwg = _gwg(run)
    _assert_close(run.Lambda, _lambda(run), _linalg_tol(np.linalg.cond(gwg)), "sensitivity.csv vs Lambda")
    # Lambda G = -I (it is a left inverse of G up to sign): a second, formula-free check.
    _assert_close(run.Lambda @ run.G, -np.eye(len(run.params)), _linalg_tol(np.linalg.cond(gwg)), "Lambda G")


def test_delta_gini_decomposition_by_target(run):
    """delta_gini.csv (estimation.sensitivity): for target i, s_i = grad m6 . (-Lambda[:, i]) (the
    move of the implied Delta Gini per unit move of target i), s_i se_i (one-SE move), its share of
    sum |s se|, n_i = -m6 / (s_i se_i) SEs to flip the sign at first order, and n_i se_i."""
    dg = run.delta_gini
    assert list(dg["moment"]) == run.moment_names
    gini = run.moment_names.index(GINI)
    delta = run.model[gini]
    grad = run.G[gini]  # the row gini_change of jacobian.csv: d Delta Gini / d theta
    s = grad @ (-_lambda(run))
    # The sensitivities themselves against the independent recomputation (rounding of Lambda).
    s_file = dg["d_delta_gini_d_target"].to_numpy()
    _assert_close(s_file, s, _linalg_tol(np.linalg.cond(_gwg(run))), "d_delta_gini_d_target")
    # The other columns are a product, a ratio or a share of s_file: checked against s_file itself,
    # elementwise, to a few eps (one or two roundings each), so that a small s_i (a large n_i) is
    # checked as strictly as the others.
    effect = s_file * run.target_se
    np.testing.assert_allclose(dg["effect_of_one_se"], effect, rtol=4 * EPS, err_msg="effect_of_one_se")
    np.testing.assert_allclose(dg["share_of_total_effect"], np.abs(effect) / np.abs(effect).sum(), rtol=16 * EPS,
                               err_msg="share_of_total_effect")
    assert dg["share_of_total_effect"].sum() == pytest.approx(1.0, abs=1e-12)
    with np.errstate(divide="ignore"):
        flip = np.where(np.abs(s_file) > 1e-12, -delta / effect, np.inf)
    np.testing.assert_allclose(dg["se_to_flip_sign"], flip, rtol=4 * EPS, err_msg="se_to_flip_sign")
    np.testing.assert_allclose(dg["shift_to_flip_sign"], flip * run.target_se, rtol=8 * EPS,
                               err_msg="shift_to_flip_sign")
    # What the column means: moving target i by shift_i moves Delta Gini, at first order, to zero.
    np.testing.assert_allclose(delta + s_file * dg["shift_to_flip_sign"].to_numpy(), 0.0, atol=16 * EPS * abs(delta))
    # The same numbers in report.json, with the per-parameter gradient and the regime.
    dec = run.report["delta_gini"]["decomposition"]
    assert dec["delta_gini"] == delta
    assert dec["regime"] == ("concentrating" if delta > 0 else "equalizing") == run.report["regime"]
    # The parameters' effects use the sandwich SE, sqrt(diag(cov)), also where estimates.csv
    # withholds it at a bound (the decomposition is first-order arithmetic, not inference).
    for rec, p_se, g, name in zip(dec["parameters"], np.sqrt(np.diag(run.V)), grad, run.params):
        assert rec["parameter"] == name and rec["d_delta_gini_d_parameter"] == g
        assert rec["effect_of_one_se"] == pytest.approx(g * p_se, rel=4 * EPS, abs=1e-300)


def test_flip_checks_are_the_closest_and_say_whether_the_sign_flipped(run):
    """report.json's flip checks: the two targets with the smallest |se_to_flip_sign|; each records
    Delta Gini before and after re-estimating with the shifted target, and sign_flipped is true
    exactly when the two signs differ."""
    checks = run.report["delta_gini"]["flip_checks"]
    dg = run.delta_gini.set_index("moment")
    n = dg["se_to_flip_sign"]
    closest = list(n[np.isfinite(n)].abs().sort_values(kind="stable").index[:2])
    assert [c["moment"] for c in checks] == closest
    gini = run.moment_names.index(GINI)
    for c in checks:
        before, after = _number(c["delta_gini_before"]), _number(c["delta_gini_after_reestimation"])
        assert before == run.model[gini]
        assert c["sign_flipped"] is bool(np.sign(after) != np.sign(before)), c
        assert c["se_moved"] == dg.loc[c["moment"], "se_to_flip_sign"]
        assert c["shift"] == dg.loc[c["moment"], "shift_to_flip_sign"]
        assert _number(c["remaining_share"]) == pytest.approx(after / before, rel=4 * EPS)
        se_i = run.target_se[run.moment_names.index(c["moment"])]
        secant = c["shift"] * before / (before - after) / se_i
        assert _number(c["se_to_flip_sign_secant"]) == pytest.approx(secant, rel=1e-12)
        assert set(c["theta"]) == set(run.params) and all(math.isfinite(v) for v in c["theta"].values())


def test_hansen_j_and_its_p_value(run):
    """Under diagonal weights J is the generalised g' S^+ g (issue 22): g = model - target
    (moments.csv), S = (I - H) Omega (I - H)' with H = G (G'WG)^-1 G'W and Omega = moments_cov.csv,
    chi-squared with rank(S) = 6 - k degrees of freedom; p = chi2.sf. Parameters at a bound
    (estimates.csv ``at_bound``) are held there: their columns leave G and they use no degree of
    freedom. S^+ is recomputed here from the eigenvectors of S by another route (NumPy's pinv); S is
    well conditioned on its range, so the tolerance is that of the inverses in H and of Omega."""
    g = run.model - run.target
    j = run.report["j_test"]
    interior = [i for i, b in enumerate(run.estimates["at_bound"].fillna("").astype(str)) if not b]
    G = run.G[:, interior]
    gwg = G.T @ run.W @ G
    H = G @ np.linalg.inv(gwg) @ G.T @ run.W
    S = (np.eye(6) - H) @ run.Omega @ (np.eye(6) - H).T
    expected = g @ np.linalg.pinv(S, rcond=1e-10, hermitian=True) @ g
    assert j["form"] == "g' S^+ g"
    assert j["J"] == pytest.approx(expected, rel=_linalg_tol(np.linalg.cond(run.Omega), np.linalg.cond(gwg)))
    assert j["df"] == len(run.moment_names) - len(interior)
    # The p-value comes from jax's gammaincc in float64; scipy's chi2.sf is an independent
    # implementation. Both are accurate to ~1e-14 relative in this range; 1e-9 allows for the
    # relative error of J itself propagating through the tail (d log p / d log J = J f(J)/p, O(1)).
    assert j["p_value"] == pytest.approx(stats.chi2.sf(j["J"], j["df"]), rel=1e-9)
    assert j["weights"] == "diagonal"
    # The criterion is g'Wg with the weights of weights.csv.
    assert run.report["criterion"] == pytest.approx(g @ run.W @ g, rel=_linalg_tol(np.linalg.cond(run.W)))


def test_two_step_optimal_weights_are_the_inverse_of_target_plus_simulation_noise(optimal_run):
    """--weights optimal: weights.csv = inv(Sigma_targets + Omega_sim1), with Sigma_targets =
    diag(se^2) and Omega_sim1 the simulation noise at the FIRST-step estimate.

    Omega_sim1 is not written to the results folder (report.json's "omega_sim" and moments_cov.csv
    are at the final, second-step estimate), so the files allow checking its structure, not its
    values: inv(W) - diag(se^2) must be a ddof-1 covariance of --sim-sets 6 draw sets of the six
    moments, i.e. symmetric positive semi-definite with rank at most 5. W = inv(moments_cov) is NOT
    required (the two Omega_sim are at different parameter values). At this size the second step
    stops after one iteration next to the first-step estimate, so W and inv(moments_cov) happen to
    agree to about 1e-11 here and the files cannot tell the first-step Omega_sim from the final one;
    recomputing Omega_sim1 would need the project's simulation keys, which the files do not hold.
    Since issue 22 the folder holds Omega_sim1 (omega_sim_first_step.csv): W is recomputed from it."""
    f = optimal_run
    r = f.report
    assert r["config"]["weights"] == "optimal" and r["j_test"]["weights"] == "optimal"
    stage2 = r["convergence"]["stage2"]
    assert stage2 is not None and len(stage2["first_step_theta"]) == len(f.params)
    assert not np.allclose(f.W, np.diag(1 / f.target_se**2))  # not the first step's diagonal weights
    sigma_targets = np.diag(f.target_se**2)
    inv_w = np.linalg.inv(f.W)
    cond = np.linalg.cond(f.W)
    omega_sim1 = inv_w - sigma_targets
    # inv(W) carries rounding of about cond(W) eps ||inv(W)|| from the project's inverse and ours.
    atol = 1e3 * cond * EPS * np.abs(inv_w).max()
    np.testing.assert_allclose(omega_sim1, omega_sim1.T, rtol=0, atol=atol)
    eig = np.linalg.eigvalsh((omega_sim1 + omega_sim1.T) / 2)
    assert eig[-1] > 100 * atol, eig  # there is simulation noise, well above rounding
    assert eig[0] >= -atol, eig  # positive semi-definite
    assert abs(eig[0]) <= atol, eig  # rank <= N_SIM - 1 = 5 (the 6th eigenvalue is rounding)
    # Its variances are simulation variances at the same N and the same draw keys as the final
    # Omega_sim (report.json), only at the first-step estimate: the same order of magnitude.
    final = np.diag(np.array(r["omega_sim"]))
    ratio = np.diag(omega_sim1) / final
    assert ((ratio > 0.1) & (ratio < 10)).all(), ratio
    # The inference identities hold under these weights too.
    tol = _linalg_tol(np.linalg.cond(_gwg(f)))
    bread = np.linalg.inv(_gwg(f))
    _assert_close(f.V, bread @ (f.G.T @ f.W @ f.Omega @ f.W @ f.G) @ bread, tol, "cov.csv (optimal)")
    _assert_close(f.Lambda, _lambda(f), tol, "sensitivity.csv (optimal)")
    g = f.model - f.target
    assert r["j_test"]["J"] == pytest.approx(g @ np.linalg.solve(f.Omega, g), rel=_linalg_tol(np.linalg.cond(f.Omega)))
    assert r["j_test"]["form"] == "g' Sigma^-1 g"
    assert r["delta_gini"]["flip_checks"] == []
    saved = pd.read_csv(f.out / "omega_sim_first_step.csv", index_col=0).loc[f.moment_names, f.moment_names]
    np.testing.assert_allclose(np.linalg.inv(sigma_targets + saved.to_numpy(float)), f.W, rtol=_linalg_tol(cond), atol=0)
