"""The MSM estimation end to end: recovery of known parameters, identification, files, resume."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import jaxmodel
from estimation import CalibrationConfig, calibrate
from estimation.errors import ConfigError, OutputError
from jaxmodel import MOMENT_NAMES
from tests.helpers import Interrupt, stop_at

# One size for every estimation test, so that the compiled optimiser batch is shared.
SIZE = dict(n_agents=5000, n_firms=50, n_starts=2, n_sim=6)
TRUTH = {"alpha": 0.45, "sigma_nu": 0.35, "sigma": 1.3, "eta1": 0.8, "xi": 0.3}


@pytest.fixture(scope="module")
def recovery(tmp_path_factory):
    """Targets simulated at TRUTH on draws of seed 11; the estimation uses seed 0 and starts elsewhere."""
    settings = jaxmodel.Settings(n_agents=SIZE["n_agents"], n_firms=SIZE["n_firms"])
    params = jaxmodel.baseline().replace(**TRUTH)
    values = np.asarray(jaxmodel.moments(params, jaxmodel.make_draws(jax.random.key(11), settings), settings).vector())
    from estimation.msm import simulated_moments

    sims = np.asarray(simulated_moments(params, jax.random.key(12), settings, 8))
    se = sims.std(axis=0, ddof=1)  # the targets' own simulation noise at this N
    path = tmp_path_factory.mktemp("recovery") / "targets.csv"
    pd.DataFrame({"moment": MOMENT_NAMES, "value": values, "se": se, "source": "simulated at TRUTH"}).to_csv(path, index=False)
    return calibrate(targets=str(path), seed=0, **SIZE)


def test_parameters_are_recovered_within_two_standard_errors(recovery):
    names = list(recovery.free.names)
    assert names == list(TRUTH)
    start = recovery.starts[0].start
    for j, name in enumerate(names):
        assert start[j] != pytest.approx(TRUTH[name])  # the first start is the baseline, not the truth
        assert abs(recovery.estimates[j] - TRUTH[name]) <= 2 * recovery.se[j], name
    assert recovery.identification.identified
    # Targets and estimation differ only by simulation noise: the J test does not reject.
    assert recovery.j_test.p_value > 0.01


def test_under_identified_free_set_is_reported_not_estimated():
    # alpha and A1 enter the model only through their product (the AI floor alpha A a_k phi_k).
    result = calibrate(free=("alpha", "A1", "sigma", "eta1", "xi"), max_iter=3, flip_checks=0, **SIZE)
    ident = result.identification
    assert ident.rank == 4 and ident.n_params == 5 and not ident.identified
    assert np.isnan(result.se).all() and result.decomposition is None
    null = [w for w in ident.weak_directions if w["singular_value"] < 1e-8 * ident.singular_values[0]]
    assert len(null) == 1 and set(null[0]["combination"]) == {"alpha", "A1"}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``levelfield calibrate`` in this process (it shares the compiled optimiser with the others)."""
    import contextlib
    import io

    from estimation.cli import main

    out = tmp_path_factory.mktemp("cli") / "results"
    buffer = io.StringIO()
    # rich's console writes to whatever sys.stdout is at the time of writing.
    with contextlib.redirect_stdout(buffer):
        code = main(["calibrate", "--agents", "5000", "--firms", "50", "--starts", "2", "--sim-sets", "6",
                     "--max-iter", "25", "--regime-draws", "64", "--out", str(out)])
    assert code == 0
    return out, buffer.getvalue()


def test_cli_writes_every_file_and_pandas_reads_them(cli_run):
    out, proc = cli_run
    k = 5
    shapes = {"estimates.csv": (k, None), "moments.csv": (6, None), "jacobian.csv": (6, k), "weights.csv": (6, 6),
              "moments_cov.csv": (6, 6), "cov.csv": (k, k), "sensitivity.csv": (k, 6), "delta_gini.csv": (6, None)}
    for name, (rows, cols) in shapes.items():
        frame = pd.read_csv(out / name, index_col=None if cols is None else 0)
        assert frame.shape[0] == rows and (cols is None or frame.shape[1] == cols), name
    estimates = pd.read_csv(out / "estimates.csv")
    assert list(estimates["parameter"]) == ["alpha", "sigma_nu", "sigma", "eta1", "xi"]
    assert {"estimate", "se", "ci_lower", "ci_upper", "at_bound"} <= set(estimates.columns)
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["n_agents"] == 5000 and report["versions"]["jax"]
    assert len(report["delta_gini"]["flip_checks"]) == 2
    for png in ("fit.png", "sensitivity.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The folder was published in one rename: no partial sibling is left behind.
    assert not (out.parent / f".{out.name}.partial").exists()
    for table in ("Estimates", "Fit of the targets", "Hansen J", "Identification", "Delta Gini", "Results in"):
        assert table in proc


def _matrix(path: Path) -> np.ndarray:
    return pd.read_csv(path, index_col=0).loc[list(MOMENT_NAMES), list(MOMENT_NAMES)].to_numpy()


def test_j_under_diagonal_weights_is_the_generalised_form_from_the_folder(cli_run):
    """J = g' S^+ g with S = (I - H) Sigma (I - H)', H = G (G'WG)^-1 G'W, recomputed here from the
    folder's CSV files by another route (explicit S, NumPy's pinv): the files hold 17 significant
    digits and S^+ is well conditioned on its range, so 1e-7 relative. Parameters at a bound of the
    box (estimates.csv ``at_bound``) are held there, so their columns leave G and df = m - k_interior."""
    out, proc = cli_run
    report = json.loads((out / "report.json").read_text())
    estimates = pd.read_csv(out / "estimates.csv").set_index("parameter")
    interior = [n for n in estimates.index if pd.isna(estimates.loc[n, "at_bound"])]
    G = pd.read_csv(out / "jacobian.csv", index_col=0).loc[list(MOMENT_NAMES), interior].to_numpy()
    W, sigma = _matrix(out / "weights.csv"), _matrix(out / "moments_cov.csv")
    g = pd.read_csv(out / "moments.csv").set_index("moment").loc[list(MOMENT_NAMES), "error"].to_numpy()
    H = G @ np.linalg.inv(G.T @ W @ G) @ G.T @ W
    S = (np.eye(6) - H) @ sigma @ (np.eye(6) - H).T
    expected = float(g @ np.linalg.pinv(S, rcond=1e-10, hermitian=True) @ g)
    j = report["j_test"]
    assert j["form"] == "g' S^+ g" and j["weights"] == "diagonal" and j["df"] == 6 - G.shape[1]
    assert j["J"] == pytest.approx(expected, rel=1e-7)
    text = " ".join(proc.split())  # rich wraps lines at the terminal's width
    assert "J = g' S^+ g" in text
    # Delta Gini's delta-method SE from the folder: sqrt(a'Va), a the Jacobian's Delta Gini row.
    u = report["delta_gini"]["uncertainty"]
    a = pd.read_csv(out / "jacobian.csv", index_col=0).loc["gini_change"].to_numpy()
    V = pd.read_csv(out / "cov.csv", index_col=0).to_numpy()
    assert u["se"] == pytest.approx(float(np.sqrt(a @ V @ a)), rel=1e-9)
    assert u["draws"] == 64 and 0.0 <= u["probability_concentrating"] <= 1.0
    assert "P(concentrating)" in text


def test_existing_results_are_never_overwritten_without_force(cli_run):
    out, _ = cli_run
    with pytest.raises(OutputError, match="already exists"):
        calibrate(out=out, **SIZE)


def test_resume_after_an_interruption_gives_the_same_estimate(tmp_path: Path):
    config = CalibrationConfig(max_iter=12, flip_checks=0, **SIZE)
    whole = calibrate(config)

    out = tmp_path / "run"
    with pytest.raises(Interrupt):
        calibrate(config, out=out, progress=stop_at(5))
    assert not out.exists() and (tmp_path / ".run.partial" / "checkpoint.npz").exists()
    with pytest.raises(OutputError, match="--resume"):
        calibrate(config, out=out)
    with pytest.raises(OutputError, match="different settings for seed"):
        calibrate(config, out=out, resume=True, seed=3)
    resumed = calibrate(config, out=out, resume=True)
    # The checkpoint holds the optimiser's exact state: the resumed run is the same computation.
    np.testing.assert_allclose(resumed.estimates, whole.estimates, rtol=0, atol=1e-10)
    assert resumed.starts[0].history == whole.starts[0].history
    assert (out / "report.json").exists()


def test_bad_configuration_is_refused_before_any_work(tmp_path: Path):
    with pytest.raises(ConfigError, match="n_starts"):
        calibrate(n_starts=0)
    with pytest.raises(ConfigError, match="cannot also be fixed"):
        calibrate(fixed={"xi": 0.2})
    bad = tmp_path / "w.csv"
    pd.DataFrame(np.eye(6) - 2 * np.eye(6)[0:1].T @ np.eye(6)[0:1], index=MOMENT_NAMES, columns=MOMENT_NAMES).to_csv(bad)
    with pytest.raises(ConfigError, match="positive definite"):
        calibrate(weights=str(bad))
    with pytest.raises(ConfigError, match="not one of"):
        calibrate(weights="optimum")


def test_two_step_optimal_weights(tmp_path: Path):
    out = tmp_path / "two-step"
    result = calibrate(weights="optimal", max_iter=4, flip_checks=0, regime_draws=0, out=out, **SIZE)
    assert result.stage2 is not None
    # Second-step weights are the inverse of the first step's Omega + Omega_sim: positive definite.
    assert np.linalg.eigvalsh(result.weights).min() > 0
    assert not np.allclose(result.weights, np.diag(1 / result.targets.se**2))
    assert result.j_test.weights == "optimal"
    # Under two-step optimal weights J is Hansen's g' Sigma^-1 g (Sigma = Omega + Omega_sim at the estimate).
    g = result.errors
    assert result.j_test.form == "g' Sigma^-1 g"
    assert result.j_test.J == pytest.approx(float(g @ np.linalg.solve(result.moments_cov, g)), rel=1e-10)
    # W2 recomputed from the folder alone: inv(diag(se^2) + Omega_sim at the first step). The CSVs hold
    # 17 significant digits and the matrix is well conditioned (target SEs within a factor 20): 1e-9.
    se = pd.read_csv(out / "moments.csv").set_index("moment").loc[list(MOMENT_NAMES), "se"].to_numpy()
    w2 = np.linalg.inv(np.diag(se**2) + _matrix(out / "omega_sim_first_step.csv"))
    np.testing.assert_allclose(w2, _matrix(out / "weights.csv"), rtol=1e-9, atol=0)
