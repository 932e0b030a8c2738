"""``levelfield identify`` and ``estimation.identification``: known truths, numbers by hand, bad input.

Known truths from MODEL.md section 4, each under more than one spec:

- a parameter with no effect: under "additive" and "ces" S(h) does not involve mu, and under
  "partial_multiplicative" it does not involve rho (nor omega). Its Jacobian column is exactly 0 (the
  spec is static: the branch that would use it is never traced), so it must be reported as a zero
  column, not identified, with e_j in the null space, at the point and at every point of the sample.
- a product: alpha and A1 enter only through F_k = alpha A a_k phi_k (A = 0 before, A1 after), so
  m depends on alpha * A1 and G_alpha A1... = G_A1 alpha: the columns are exactly proportional, and
  the direction (alpha, -A1) leaves every moment unchanged. It must be in the null space (and both
  parameters not identified) at every point, whatever the values of alpha and A1.

Tolerances: the exact Jacobian is accurate to about fp_tol = 1e-10 relative (and to 1e-8, ``Settings.tangent_tol``,
where its linear systems are matrix-free), so
a direction that the algebra makes exactly null has a normalised singular value below about 1e-7,
against the null-space tolerance 1e-6 and the smallest singular value of an identified set (1e-2
and more here); the overlap of the expected direction with the reported null space is 1 up to the
same 1e-7 (checked to 1e-6). Numbers recomputed from the CSV files (17 significant digits) are
deterministic algebra: rtol 1e-9.
"""

from __future__ import annotations

import dataclasses
import json
import time

import jax
import numpy as np
import pandas as pd
import pytest

import jaxmodel
from estimation import identification as ident
from estimation.msm.parameters import free_parameters
from tests.helpers import run_cli

SMALL = ["--agents", "2000", "--firms", "20"]
S = 8  # sample points of the known-truth checks


def _model(spec: str, names: tuple[str, ...]) -> ident.Model:
    settings = jaxmodel.Settings(n_agents=2000, n_firms=20, spec=spec)
    base = jaxmodel.baseline().replace(mu=0.5) if spec == "partial_multiplicative" else jaxmodel.baseline()
    draws = jaxmodel.make_draws(jax.random.key(3), settings)
    return ident.Model(settings=settings, base=base, free=free_parameters(names), draws=draws,
                       assigned=jaxmodel.assign(base, draws, settings))


# One compiled program per spec: the free set (alpha, A1, <no-effect parameter>) carries both truths.
CASES = [("additive", "mu"), ("ces", "mu"), ("partial_multiplicative", "rho")]


@pytest.fixture(scope="module", params=CASES, ids=[f"{s}-{p}" for s, p in CASES])
def known(request):
    spec, inert = request.param
    names = ("alpha", "A1", inert)
    model = _model(spec, names)
    theta = np.array([float(getattr(model.base, n)) for n in names])
    targets = jaxmodel.moments(model.base, model.draws, model.settings).vector()
    se = np.array([0.07, 0.05, 0.02, 0.01, 0.01, 0.004])
    W, omega = np.diag(1 / se**2), np.diag(se**2)
    result = ident.study(model, theta, np.asarray(targets), se, W, omega, n_points=S, seed=1, slice_points=0, grid=0)
    return names, result


def _all_points(result):
    """(theta, PointDiagnostics) at the point and at every sample point (none may overflow)."""
    sample = result.sample
    assert sample.finite.all(), f"model overflowed at {np.flatnonzero(~sample.finite)}"
    widths = result.widths
    out = [(result.theta, result.point)]
    for s in range(sample.n_points):
        out.append((sample.thetas[s], ident.diagnose(sample.jacobians[s], result.weights, result.moments_cov,
                                                     sample.thetas[s], result.free.names, widths)))
    return out


def _overlap(direction: np.ndarray, rows: np.ndarray) -> float:
    """Length of the projection of the unit vector ``direction`` on the span of ``rows``."""
    if rows.size == 0:
        return 0.0
    q, _ = np.linalg.qr(rows.T)
    d = direction / np.linalg.norm(direction)
    return float(np.linalg.norm(q.T @ d))


def test_parameter_without_effect_is_a_zero_column_in_the_null_space(known):
    names, result = known
    j = 2
    for theta, d in _all_points(result):
        assert d.zero_column[j] and not d.identified[j], (theta, d.zero_column)
        assert d.null_weight[j] == pytest.approx(1.0, abs=1e-12)
        assert _overlap(np.eye(3)[j], d.null_directions) == pytest.approx(1.0, abs=1e-12)
        assert any(t.strip() == f"1 {names[j]}" for t in d.null_space_text), d.null_space_text
        assert np.isinf(d.se[j]) and d.rank <= 1
    assert (result.sample.share_identified()[names[j]]["finite_points"]) == 0.0
    assert (result.sample.zero_column[:, j]).all()


def test_product_alpha_times_A1_is_a_null_direction_everywhere(known):
    names, result = known
    for theta, d in _all_points(result):
        alpha, A1 = theta[0], theta[1]
        expected = np.array([alpha, -A1, 0.0])
        assert _overlap(expected, d.null_directions) == pytest.approx(1.0, abs=1e-6), (theta, d.null_directions)
        assert not d.identified[0] and not d.identified[1]
        assert not d.zero_column[0] and not d.zero_column[1]
        assert d.collinearity[0] > 1 - 1e-6 and d.collinearity[1] > 1 - 1e-6
        assert d.null_weight[0] > ident.NULL_WEIGHT_TOL and d.null_weight[1] > ident.NULL_WEIGHT_TOL
        # The named combination of that direction is proportional to (alpha, -A1).
        product = [(v, w) for v, w in zip(d.null_directions, d.null_normalised) if abs(v[2]) < 1e-9]
        assert len(product) == 1
        v, w = product[0]
        assert v[0] / v[1] == pytest.approx(-alpha / A1, rel=1e-5)
        assert w[0] == pytest.approx(-w[1], rel=1e-5)  # unit-length columns: (1, -1) / sqrt(2)
        text = d.combination_text(v, w)
        assert text in d.null_space_text
        assert "alpha" in text and "A1" in text and "-" in text
    share = result.sample.share_identified()
    assert share["alpha"]["finite_points"] == 0.0 and share["A1"]["finite_points"] == 0.0


def _expected_collinearity(J: np.ndarray, j: int) -> float:
    others = np.delete(J, j, axis=1)
    b = np.linalg.lstsq(others, J[:, j], rcond=None)[0]
    return float(np.linalg.norm(others @ b) / np.linalg.norm(J[:, j]))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("identify") / "run"
    code, stdout, err = run_cli("identify", *SMALL, "--points", "4", "--slice-points", "3", "--grid", "3",
                                "--out", str(out), "--quiet")
    assert code == 0, err
    return out


def test_results_folder_has_every_file(folder):
    for name in ("point.csv", "singular.csv", "null_space.csv", "jacobian.csv", "weights.csv", "moments_cov.csv",
                 "elasticities.csv", "elasticities.png", "sample.csv", "worst_points.csv", "overflow.csv",
                 "identified_share.csv", "condition_map.png", "slices.csv", "slices.png", "contour.csv",
                 "contour.png", "identification.json", "report.html", "timing.json"):
        assert (folder / name).is_file(), name
    page = (folder / "report.html").read_text("utf-8")
    assert "<script" not in page and page.count("data:image/png;base64,") == 4
    report = json.loads((folder / "identification.json").read_text("utf-8"))
    assert report["sample"]["points"] == 4 and len(pd.read_csv(folder / "sample.csv")) == 4
    assert "Omega_sim is left out" in report["moments_cov"]


def test_default_free_set_is_identified_at_the_baseline(folder):
    """The opposite case, so that the known-truth checks could fail: the default five parameters
    are identified at the baseline (full rank, no null direction, collinearity below 0.99)."""
    point = pd.read_csv(folder / "point.csv")
    assert point["identified"].all() and not point["zero_column"].any()
    assert (point["collinearity"] < 0.99).all() and np.isfinite(point["se"]).all()
    assert len(pd.read_csv(folder / "null_space.csv")) == 0
    report = json.loads((folder / "identification.json").read_text("utf-8"))
    assert report["at_point"]["rank"] == 5 and report["at_point"]["identified"]


def test_strength_and_collinearity_by_hand(folder):
    """Recompute the point's numbers in NumPy from jacobian.csv, weights.csv and moments_cov.csv."""
    G = pd.read_csv(folder / "jacobian.csv", index_col=0)
    names = list(G.columns)
    G = G.to_numpy()
    W = pd.read_csv(folder / "weights.csv", index_col=0).to_numpy()
    omega = pd.read_csv(folder / "moments_cov.csv", index_col=0).to_numpy()
    point = pd.read_csv(folder / "point.csv").set_index("parameter").loc[names]
    values, vectors = np.linalg.eigh(W)
    J = (vectors * np.sqrt(values)) @ vectors.T @ G
    singular = pd.read_csv(folder / "singular.csv")
    natural = singular[singular["scaling"] == "natural"]["singular_value"].to_numpy()
    np.testing.assert_allclose(natural, np.linalg.svd(J, compute_uv=False), rtol=1e-9)
    for j, n in enumerate(names):
        assert point.loc[n, "collinearity"] == pytest.approx(_expected_collinearity(J, j), rel=1e-9)
        cos = [abs(J[:, i] @ J[:, j]) / np.linalg.norm(J[:, i]) / np.linalg.norm(J[:, j]) for i in range(len(names))
               if i != j]
        assert point.loc[n, "pair_collinearity"] == pytest.approx(max(cos), rel=1e-9)
    bread = np.linalg.inv(G.T @ W @ G)
    V = bread @ G.T @ W @ omega @ W @ G @ bread
    se = np.sqrt(np.diag(V))
    theta = point["value"].to_numpy()
    box = json.loads((folder / "identification.json").read_text("utf-8"))["search_box"]
    width = np.array([box[n][1] - box[n][0] for n in names])
    np.testing.assert_allclose(point["se"].to_numpy(), se, rtol=1e-9)
    np.testing.assert_allclose(point["strength"].to_numpy(), np.abs(theta) / se, rtol=1e-9)
    np.testing.assert_allclose(point["se_box_share"].to_numpy(), se / width, rtol=1e-9)
    # Weights are the default diagonal 1/se^2 of the shipped targets.
    targets = pd.read_csv(folder / "moments.csv")
    np.testing.assert_allclose(np.diag(W), 1 / targets["se"].to_numpy() ** 2, rtol=1e-12)


def test_existing_folder_is_refused_without_force(folder):
    code, _, err = run_cli("identify", *SMALL, "--points", "4", "--out", str(folder), "--quiet")
    assert code == 2 and "already exists" in err and len(err.strip().splitlines()) == 1


def _fake_calibration(folder_in, tmp):
    """A calibration folder made from the identify run's files: report.json with the fields read,
    estimates.csv, weights.csv (not the default: the test sees them used) and moments_cov.csv."""
    cal = tmp / "cal"
    cal.mkdir()
    names = ["alpha", "sigma_nu", "sigma", "eta1", "xi"]
    moments = pd.read_csv(folder_in / "moments.csv")
    report = {"config": {"n_agents": 2000, "n_firms": 20, "seed": 0, "free": names, "bounds": {}, "fixed": {},
                         "weights": "identity"},
              "free_parameters": names,
              "targets": [{"moment": m, "value": v, "se": s} for m, v, s in
                          zip(moments["moment"], moments["target"], moments["se"])],
              "estimates": [{"parameter": n, "estimate": v} for n, v in zip(names, [0.7, 0.4, 1.6, 0.6, 0.2])]}
    (cal / "report.json").write_text(json.dumps(report))
    pd.DataFrame(report["estimates"]).to_csv(cal / "estimates.csv", index=False)
    eye = pd.DataFrame(np.eye(6), index=moments["moment"], columns=moments["moment"]).rename_axis("moment")
    eye.to_csv(cal / "weights.csv")
    (eye * 1e-4).to_csv(cal / "moments_cov.csv")
    pd.DataFrame(1e-4 * np.eye(5), index=names, columns=names).rename_axis("parameter").to_csv(cal / "cov.csv")
    return cal


def test_from_a_calibration_uses_its_point_weights_and_omega(folder, tmp_path):
    cal = _fake_calibration(folder, tmp_path)
    out = tmp_path / "from"
    code, _, err = run_cli("identify", "--from", str(cal), "--points", "4", "--slice-points", "3", "--grid", "3",
                           "--regime-draws", "64", "--out", str(out), "--quiet")
    assert code == 0, err
    report = json.loads((out / "identification.json").read_text("utf-8"))
    assert report["point"] == {"alpha": 0.7, "sigma_nu": 0.4, "sigma": 1.6, "eta1": 0.6, "xi": 0.2}
    np.testing.assert_array_equal(pd.read_csv(out / "weights.csv", index_col=0).to_numpy(), np.eye(6))
    np.testing.assert_array_equal(pd.read_csv(out / "moments_cov.csv", index_col=0).to_numpy(), 1e-4 * np.eye(6))
    assert "Omega + Omega_sim" in report["moments_cov"]
    # The regime with its uncertainty from the calibration's cov.csv (V = 1e-4 I): the delta-method SE
    # sqrt(a'Va) from the identify run's own Jacobian (17 digits in the CSV: 1e-9), and the share of
    # 64 draws within 4 Monte Carlo SEs (at most 4 * 0.5 / 8 = 0.25) plus a curvature allowance of 0.05
    # (sd 0.01 per parameter) of the first-order probability.
    regime = report["regime"]
    a = pd.read_csv(out / "jacobian.csv", index_col=0).loc["gini_change"].to_numpy()
    assert regime["se"] == pytest.approx(float(np.sqrt(1e-4 * a @ a)), rel=1e-9)
    assert regime["finite_draws"] == 64
    assert abs(regime["probability_concentrating"] - regime["probability_normal"]) <= 0.25 + 0.05
    assert 0.0 <= report["sample"]["share_concentrating"] <= 1.0


@pytest.mark.parametrize("argv, fragment", [
    (["--free", "alpha,nonsense"], "unknown parameter(s) nonsense"),
    (["--points", "1"], "--points 1 must be at least 2"),
    (["--points", "0"], "must be >= 1"),
    (["--slice-points", "1"], "--slice-points 1"),
    (["--regime-draws", "-1"], "--regime-draws -1 must be 0 (none) or more"),
    (["--moments", "m1,nonsense"], "--moments: unknown moment 'nonsense'"),
    (["--moments", "m1,cv_change"], "--moments: cv_change is given twice"),
    (["--moments", "m1", "--free", "alpha,sigma"], "1 moment(s) cannot identify 2 free parameters"),
    (["--targets", "{tmp}/four.csv"], "4 targeted moment(s)"),
    (["--targets", "{tmp}/four.csv", "--free", "alpha", "--moments", "m1,m6"], "--moments: no target for gini_change"),
    (["--from", "{tmp}/empty"], "no report.json there"),
    (["--from", "{tmp}/broken"], "not a levelfield calibration report"),
    (["--from", "{tmp}/no_weights"], "no weights.csv there"),
    (["--bound", "alpha=2:1"], "lower bound must be below"),
    (["--set", "alpha=9"], "outside the search box"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, argv, fragment):
    (tmp_path / "empty").mkdir()
    (tmp_path / "four.csv").write_text("moment,value,se\nm1,-0.22,0.07\nm2,0.25,0.05\nm3,-0.02,0.02\nm4,0.022,0.01\n")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "report.json").write_text("{not json")
    (tmp_path / "no_weights").mkdir()
    (tmp_path / "no_weights" / "report.json").write_text(json.dumps({
        "config": {"n_agents": 2000, "n_firms": 20, "seed": 0, "free": ["alpha"]}, "free_parameters": ["alpha"],
        "targets": [{"moment": m, "value": 0.0, "se": 1.0} for m in jaxmodel.MOMENT_NAMES],
        "estimates": [{"parameter": "alpha", "estimate": 0.6}]}))
    (tmp_path / "no_weights" / "estimates.csv").write_text("parameter,estimate\nalpha,0.6\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    start = time.perf_counter()
    code, _, err = run_cli("identify", *SMALL, *argv, "--out", str(tmp_path / "out"))
    assert code == 2, err
    assert fragment in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
    assert time.perf_counter() - start < 30  # refused before any compilation (each takes a minute here)


def test_a_subset_of_the_moments_weights_only_those(tmp_path):
    """--moments without m6: W is 0 in gini_change's row and column, and the singular values are those
    of W_s^1/2 G_s over the five moments alone, recomputed here from jacobian.csv (deterministic
    algebra on 17-digit CSVs: 1e-9 relative)."""
    out = tmp_path / "subset"
    code, _, err = run_cli("identify", *SMALL, "--free", "alpha,sigma,xi", "--moments", "m1,m2,m3,m4,m5",
                           "--points", "2", "--slice-points", "0", "--grid", "0", "--regime-draws", "0",
                           "--out", str(out), "--quiet")
    assert code == 0, err
    report = json.loads((out / "identification.json").read_text("utf-8"))
    five = list(jaxmodel.MOMENT_NAMES[:5])
    assert report["moments_used"] == five
    W = pd.read_csv(out / "weights.csv", index_col=0)
    assert (W.loc["gini_change"] == 0).all() and (W["gini_change"] == 0).all()
    G = pd.read_csv(out / "jacobian.csv", index_col=0).loc[five].to_numpy()
    se = pd.read_csv(out / "moments.csv").set_index("moment").loc[five, "se"].to_numpy()
    expected = np.linalg.svd(G / se[:, None], compute_uv=False)
    np.testing.assert_allclose(report["at_point"]["singular_values"], expected, rtol=1e-9)


def test_chained_warm_starts_give_the_cold_start_answers():
    """The sample's points run in a nearest-neighbour chain, each lane's fixed points started from its
    previous point's: every Jacobian, moment and fixed-point residual must be the one a cold start
    gives at that point, returned in the order the points were given (7 points in 3 lanes: the
    last lane is padded; one lane, the CPU's default, is the same scan without the vmap)."""
    batch = 3
    names = ("alpha", "sigma", "xi")
    model = _model("additive", names)
    free = model.free
    thetas = ident.sobol_points(free, 7, seed=4)
    order = ident.chain_order(thetas, ident._widths(model.free))
    assert sorted(order.tolist()) == list(range(7)) and order[0] == 0
    run = ident.jacobians(model, thetas, batch=batch)
    assert run["batch_size"] == batch
    assert (run["fp_residual"] <= model.settings.tol).all()
    one = jax.jit(lambda t: ident._moments_and_jacobian(t, ident.cold(model.settings), model.base, free.arrays(),
                                                        model.draws, model.assigned, model.settings))
    for s, theta in enumerate(thetas):
        G, m, _, _ = one(theta)
        # Both solves stop within fp_tol = 1e-10 of the same fixed point, from different starts; the
        # moments and their derivatives move by a modest multiple of that (1e-7 relative leaves room
        # for the Jacobian's conditioning, and is far below any difference in the point taken).
        np.testing.assert_allclose(run["moments"][s], np.asarray(m), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(run["jacobian"][s], np.asarray(G), rtol=1e-7, atol=1e-8)
    values = ident.moment_values(dataclasses.replace(model, start=run["aggregates"][0]), thetas, batch=batch,
                                 origin=thetas[0])
    np.testing.assert_allclose(values["moments"], run["moments"], rtol=1e-7, atol=1e-9)


def test_chain_order_takes_the_nearest_point_next():
    widths = np.array([1.0, 10.0])
    thetas = np.array([[0.0, 0.0], [0.9, 0.0], [0.1, 5.0], [0.2, 0.0]])
    # Scaled by the widths, (0.1, 5) is 0.1^2 + 0.5^2 = 0.26 from the origin and (0.2, 0) 0.04.
    assert ident.chain_order(thetas, widths).tolist() == [0, 3, 2, 1]
    assert ident.chain_order(thetas, widths, origin=np.array([1.0, 0.0])).tolist() == [1, 3, 0, 2]
