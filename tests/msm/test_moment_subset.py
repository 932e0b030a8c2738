"""Estimation on a subset of the six moments (issue 22 item 7): ``--moments`` and targets files with
fewer rows.

One small calibration on the five moments other than Delta Gini with four free parameters runs
through the command line; the other runs go through ``calibrate`` in this process with the same
settings, free-set size and number of starts, so they share its compiled programs (each compile
of a new shape costs about a minute on two cores; the runs after the first cost a few seconds).
The numbers are recomputed from the results folder's own files in NumPy.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jaxmodel import MOMENT_NAMES
from tests.helpers import TARGETS_CSV, Interrupt, run_cli, stop_at

FREE = "alpha,sigma,eta1,xi"
SIZE = ["--agents", "4000", "--firms", "40", "--starts", "1", "--max-iter", "3", "--sim-sets", "2",
        "--flip-checks", "0"]
FIVE = tuple(MOMENT_NAMES[:5])  # every moment but gini_change
FOUR = tuple(MOMENT_NAMES[:4])


@pytest.fixture(scope="module")
def five(tmp_path_factory) -> Path:
    """``levelfield calibrate --moments m1,...,m5 --free alpha,sigma,eta1,xi`` at small N."""
    out = tmp_path_factory.mktemp("subset") / "five"
    code, _, err = run_cli("calibrate", *SIZE, "--free", FREE, "--moments", "m1,m2,m3,m4,m5", "--out", str(out),
                           "--quiet")
    assert code == 0, err
    return out


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text("utf-8"))


def _config(folder: Path, **changes):
    """The run's configuration as recorded in report.json (what --replay uses), with ``changes``."""
    from estimation.msm import CalibrationConfig

    return dataclasses.replace(CalibrationConfig.from_dict(_report(folder)["config"]), **changes)


def test_the_criterion_weighs_the_targeted_moments_only(five):
    """criterion = g'Wg over the five targeted moments (moments.csv, weights.csv), W is 0 in
    gini_change's row and column, and the folder says which moments were targeted."""
    moments = pd.read_csv(five / "moments.csv")
    report = _report(five)
    assert list(moments["moment"]) == list(MOMENT_NAMES)
    assert list(moments["targeted"]) == [True] * 5 + [False]
    assert report["targeted_moments"] == list(FIVE) == report["config"]["moments"]
    assert [t["targeted"] for t in report["targets"]] == [True] * 5 + [False]
    W = pd.read_csv(five / "weights.csv", index_col=0).loc[list(MOMENT_NAMES), list(MOMENT_NAMES)].to_numpy()
    assert (W[5] == 0).all() and (W[:, 5] == 0).all()
    t = moments["targeted"].to_numpy(bool)
    g = (moments["model"] - moments["target"]).to_numpy()[t]
    se = moments["se"].to_numpy()[t]
    np.testing.assert_allclose(W[np.ix_(t, t)], np.diag(1 / se**2), rtol=1e-15)
    expected = float(np.sum((g / se) ** 2))
    assert report["criterion"] == pytest.approx(expected, rel=1e-12)
    # The untargeted moment is still simulated and reported (its error against its target is shown).
    assert np.isfinite(moments.loc[5, ["model", "target", "error", "simulation_sd"]].to_numpy(float)).all()
    # Marked in report.html and in the Delta Gini decomposition, which it never moves.
    assert "not targeted" in (five / "report.html").read_text("utf-8")
    dg = pd.read_csv(five / "delta_gini.csv").set_index("moment")
    assert not dg.loc["gini_change", "targeted"] and np.isinf(dg.loc["gini_change", "se_to_flip_sign"])
    assert dg.loc["gini_change", "share_of_total_effect"] == 0.0
    assert dg["share_of_total_effect"].sum() == pytest.approx(1.0, abs=1e-12)


def test_j_uses_the_targeted_moments_and_their_degrees_of_freedom(five):
    """J = g' S^+ g over the five targeted moments, with 5 - k degrees of freedom (k: the free
    parameters not at a bound), recomputed here from the folder's files."""
    report = _report(five)
    moments = pd.read_csv(five / "moments.csv")
    estimates = pd.read_csv(five / "estimates.csv")
    t = moments["targeted"].to_numpy(bool)
    names = list(MOMENT_NAMES)
    # at_bound: a side, or empty (NaN as pandas reads an empty cell).
    interior = [p for p, b in zip(estimates["parameter"], estimates["at_bound"]) if not isinstance(b, str) or not b]
    G = pd.read_csv(five / "jacobian.csv", index_col=0).loc[names, interior].to_numpy()[t]
    W = pd.read_csv(five / "weights.csv", index_col=0).loc[names, names].to_numpy()[np.ix_(t, t)]
    Sigma = pd.read_csv(five / "moments_cov.csv", index_col=0).loc[names, names].to_numpy()[np.ix_(t, t)]
    g = (moments["model"] - moments["target"]).to_numpy()[t]
    H = G @ np.linalg.solve(G.T @ W @ G, G.T @ W)
    S = (np.eye(5) - H) @ Sigma @ (np.eye(5) - H).T
    j = report["j_test"]
    assert j["form"] == "g' S^+ g"
    assert j["df"] == 5 - len(interior)
    assert j["J"] == pytest.approx(g @ np.linalg.pinv(S, rcond=1e-10, hermitian=True) @ g, rel=1e-6)
    # Identification: the singular values of W^1/2 G over the five moments.
    G_all = pd.read_csv(five / "jacobian.csv", index_col=0).loc[names, list(estimates["parameter"])].to_numpy()[t]
    se = moments["se"].to_numpy()[t]
    np.testing.assert_allclose(report["identification"]["singular_values"],
                               np.linalg.svd(G_all / se[:, None], compute_uv=False), rtol=1e-9)


def test_the_untargeted_target_value_leaves_the_estimate_unchanged(five, tmp_path):
    """The recorded configuration (as --replay reads it) with gini_change's target moved far away
    gives the same estimate and criterion bit for bit."""
    from estimation.msm import calibrate

    path = tmp_path / "moved.csv"
    path.write_text(TARGETS_CSV.replace("gini_change,0.001,0.004", "gini_change,0.5,0.0001"))
    result = calibrate(_config(five, targets=str(path)))
    estimates = pd.read_csv(five / "estimates.csv")
    np.testing.assert_array_equal(result.estimates, estimates["estimate"].to_numpy())
    assert result.criterion == _report(five)["criterion"]
    assert result.config.moments == FIVE and result.targets.values[5] == 0.5


def test_a_free_set_larger_than_the_moments_is_refused_in_one_line(tmp_path):
    start = time.perf_counter()
    code, _, err = run_cli("calibrate", *SIZE, "--free", FREE, "--moments", "m1,m2,m6", "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--moments: 3 moment(s) cannot identify 4 free parameters" in err
    three = tmp_path / "three.csv"
    three.write_text("moment,value,se\nm1,-0.22,0.07\nm2,0.25,0.05\nm6,0.001,0.004\n")
    code, _, err = run_cli("calibrate", *SIZE, "--free", FREE, "--targets", str(three), "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "3 targeted moment(s) (cv_change, productivity_gain, gini_change) cannot identify 4 free" in err
    assert not (tmp_path / "o").exists()
    assert time.perf_counter() - start < 30  # before any compilation


def test_a_four_row_targets_file_estimates_as_moments_with_those_four(five, tmp_path):
    """A targets file with the rows of m1..m4 only gives what --moments m1,m2,m3,m4 gives with the
    full file, bit for bit: four moments, four free parameters, no over-identifying restriction."""
    from estimation.msm import calibrate

    path = tmp_path / "four.csv"
    lines = TARGETS_CSV.strip().splitlines()
    path.write_text("\n".join(lines[:5]) + "\n")
    full = tmp_path / "six.csv"
    full.write_text(TARGETS_CSV)
    by_file = calibrate(_config(five, targets=str(path), moments=None))
    by_option = calibrate(_config(five, targets=str(full), moments=("m1", "m2", "m3", "m4")))
    assert by_file.config.moments == by_option.config.moments == FOUR
    assert by_file.targets.used == by_option.targets.used == FOUR
    np.testing.assert_array_equal(by_file.estimates, by_option.estimates)
    np.testing.assert_array_equal(by_file.weights, by_option.weights)
    assert by_file.criterion == by_option.criterion
    assert by_file.j_test.df == by_option.j_test.df == 4 - sum(b is None for b in by_file.binding)
    rows = by_file.moments_table()
    assert [r["targeted"] for r in rows] == [True] * 4 + [False] * 2
    assert np.isnan([rows[4]["target"], rows[5]["se"]]).all() and np.isfinite(rows[5]["model"])


def test_weights_factor_with_zero_rows_and_full_rank():
    """``optimiser._weights_factor``: C C' = W for a W with zero rows and columns (exactly 0 there),
    and jnp.linalg.cholesky(W) bit for bit for a full-rank W, eagerly and compiled."""
    from types import SimpleNamespace

    from estimation.msm.optimiser import _weights_factor

    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    full = a @ a.T + 6 * np.eye(6)
    for W in (full, np.diag(1 / np.array([0.07, 0.05, 0.02, 0.01, 0.01, 0.004]) ** 2)):
        W = jnp.asarray(W)
        expected = np.asarray(jnp.linalg.cholesky(W))
        np.testing.assert_array_equal(np.asarray(_weights_factor(SimpleNamespace(weights=W))), expected)
        compiled = jax.jit(lambda w: _weights_factor(SimpleNamespace(weights=w)))(W)
        np.testing.assert_array_equal(np.asarray(compiled), np.asarray(jax.jit(jnp.linalg.cholesky)(W)))
    mask = np.array([True, True, False, True, True, False])
    W = np.where(mask[:, None] & mask[None, :], full, 0.0)
    C = np.asarray(_weights_factor(SimpleNamespace(weights=jnp.asarray(W))))
    assert np.isfinite(C).all() and (C[~mask] == 0).all() and (C[:, ~mask] == 0).all()
    np.testing.assert_allclose(C @ C.T, W, rtol=0, atol=1e-13 * np.abs(W).max())
    np.testing.assert_array_equal(np.tril(C), C)


def test_the_targeted_moments_round_trip_through_the_configuration():
    """CalibrationConfig.moments: to_dict/from_dict round trip (a list in JSON), no key when None
    (every moment the file gives: reports of older versions read the same), a wrong type refused."""
    from estimation.errors import ConfigError
    from estimation.msm import CalibrationConfig

    subset = CalibrationConfig(moments=FIVE)
    assert subset.to_dict()["moments"] == list(FIVE)
    assert CalibrationConfig.from_dict(json.loads(json.dumps(subset.to_dict()))) == subset
    assert "moments" not in CalibrationConfig().to_dict()
    assert CalibrationConfig.from_dict(CalibrationConfig().to_dict()) == CalibrationConfig()
    with pytest.raises(ConfigError, match="moments"):
        CalibrationConfig.from_dict({"moments": "m1,m2"})


def test_a_subset_run_interrupted_and_resumed_gives_the_same_files(five, tmp_path):
    """A calibration on m1..m5 stopped after its first optimiser iteration and continued with
    ``resume=True`` (what ``--resume`` calls) targets the same five moments and ends with the
    uninterrupted run's estimate and criterion bit for bit: the checkpoint's configuration records
    the subset, so the resumed run cannot silently fall back to all six moments."""
    from estimation.errors import OutputError
    from estimation.msm import calibrate

    config = _config(five)
    out = tmp_path / "run"
    with pytest.raises(Interrupt):
        calibrate(config, out=out, progress=stop_at(1))
    assert not out.exists() and (tmp_path / ".run.partial" / "checkpoint.npz").exists()
    with pytest.raises(OutputError, match="different settings for moments"):
        calibrate(dataclasses.replace(config, moments=None), out=out, resume=True)
    resumed = calibrate(config, out=out, resume=True)
    assert resumed.config.moments == FIVE and _report(out)["targeted_moments"] == list(FIVE)
    np.testing.assert_array_equal(resumed.estimates, pd.read_csv(five / "estimates.csv")["estimate"].to_numpy())
    assert _report(out)["criterion"] == _report(five)["criterion"]
