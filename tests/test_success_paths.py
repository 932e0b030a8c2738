"""Success paths of the command line that no other test walks, in this process (exit code 0).

- ``calibrate --force`` replaces an existing results folder; without it the command refuses (2);
- ``calibrate --weights identity`` and ``--weights FILE`` use exactly those weights;
- ``simulate --set xi=0.4`` moves the moments, Delta Gini down (stronger rent sharing);
- ``simulate --precision float32`` agrees with float64;
- ``calibrate --targets FILE --bound ...`` flags a binding bound, and ``--replay`` of it reproduces
  every file.

Sizes are the smallest the other CLI tests use (N = 5000, F = 50), and the calibrations stop after
10 iterations with no flip checks: these tests are about which path runs, not about the estimate.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from estimation.calibration import load_weight_matrix
from estimation.cli import main
from jaxmodel import MOMENT_NAMES

CALIBRATE = ["calibrate", "--agents", "5000", "--firms", "50", "--starts", "2", "--sim-sets", "6",
             "--flip-checks", "0", "--max-iter", "10"]
SIMULATE = ["simulate", "--agents", "5000", "--firms", "50", "--json"]

# A user weighting matrix: symmetric, positive definite, with off-diagonal entries (so that it is
# none of the built-in choices), and every entry a small integer, which any CSV parser reads back
# exactly: weights.csv must then equal it bit for bit.
USER_WEIGHTS = np.diag([200.0, 400.0, 2500.0, 10_000.0, 10_000.0, 62_500.0])
USER_WEIGHTS[0, 1] = USER_WEIGHTS[1, 0] = 50.0
USER_WEIGHTS[4, 5] = USER_WEIGHTS[5, 4] = 1000.0


def _calibrate(*extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    # rich's console writes to whatever sys.stdout is at the time of writing.
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*CALIBRATE, *extra])
    return code, out.getvalue(), err.getvalue()


def _weights(folder: Path) -> np.ndarray:
    frame = pd.read_csv(folder / "weights.csv", index_col=0)
    assert list(frame.index) == list(frame.columns) == list(MOMENT_NAMES)
    return frame.to_numpy(float)


@pytest.fixture(scope="module")
def user_weights_run(tmp_path_factory):
    """``calibrate --weights FILE`` with a file in load_weight_matrix's format."""
    base = tmp_path_factory.mktemp("success")
    path = base / "my weights.csv"  # a space in the name, as users' files have
    pd.DataFrame(USER_WEIGHTS, index=MOMENT_NAMES, columns=MOMENT_NAMES).rename_axis("moment").to_csv(path)
    np.testing.assert_array_equal(load_weight_matrix(path), USER_WEIGHTS)  # the format it documents
    out = base / "results"
    code, stdout, stderr = _calibrate("--weights", str(path), "--out", str(out))
    assert code == 0, stderr[-2000:]
    return out, path, stdout


def test_a_user_weight_file_is_used_as_given(user_weights_run):
    out, path, stdout = user_weights_run
    np.testing.assert_array_equal(_weights(out), USER_WEIGHTS)
    report = json.loads((out / "report.json").read_text("utf-8"))
    np.testing.assert_array_equal(np.array(report["weights"]), USER_WEIGHTS)
    assert report["config"]["weights"] == str(path)
    # The file is recorded with its digest, so that --replay can refuse a changed file.
    recorded = report["inputs"]["weights"]
    assert recorded["path"] == str(path.absolute())
    assert recorded["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report["j_test"]["weights"].endswith("(J uses optimal weights)")
    # The criterion is g'Wg with these weights (rounding of a 6x6 quadratic form: 1e-12 relative).
    moments = pd.read_csv(out / "moments.csv")
    g = (moments["model"] - moments["target"]).to_numpy()
    assert report["criterion"] == pytest.approx(g @ USER_WEIGHTS @ g, rel=1e-12)
    assert "Results in" in stdout


def test_force_replaces_a_results_folder_and_without_it_the_command_refuses(user_weights_run, tmp_path):
    original, _, _ = user_weights_run
    out = tmp_path / "results"
    shutil.copytree(original, out)  # a copy: the other test keeps its folder whatever the order
    (out / "notes.txt").write_text("written by the user after the run")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    # Without --force: exit code 2, one line naming the folder and the option, nothing touched.
    code, stdout, stderr = _calibrate("--weights", "identity", "--out", str(out))
    assert code == 2
    assert stderr.strip().splitlines() == [stderr.strip()] and "already exists" in stderr and "--force" in stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not (tmp_path / ".results.partial").exists()

    # With --force: the whole folder is replaced by the new run's (identity weights this time).
    code, stdout, stderr = _calibrate("--weights", "identity", "--out", str(out), "--force")
    assert code == 0, stderr[-2000:]
    assert not (out / "notes.txt").exists()
    np.testing.assert_array_equal(_weights(out), np.eye(6))  # --weights identity, exactly
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert report["config"]["weights"] == "identity" and report["inputs"]["weights"] is None
    for name in ("estimates.csv", "moments.csv", "cov.csv", "fit.png", "timing.json"):
        assert (out / name).is_file(), name
    # Only the published folder is left: no partial run and no renamed old folder beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


@pytest.fixture(scope="module")
def baseline_json():
    """``simulate --json`` at the baseline (float64), shared by the comparisons below."""
    return _simulate()


def _simulate(*extra: str) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*SIMULATE, *extra])
    assert code == 0, err.getvalue()
    assert err.getvalue() == ""  # no warnings (non-finite moments, unconverged fixed point)
    payload = json.loads(out.getvalue())
    assert payload["warnings"] == []
    return payload


def test_stronger_rent_sharing_lowers_delta_gini(baseline_json):
    """MODEL.md section 4: workers receive xi of their firm's rents Pi_j, owners 1 - xi. Raising xi
    moves AI's rents from the (few, rich) owners to workers, so Delta Gini falls (README: "Delta Gini
    falls with rent sharing"; tests/test_gradients.py checks d m6 / d xi < 0 at the baseline)."""
    assert baseline_json["params"]["xi"] == 0.15
    shifted = _simulate("--set", "xi=0.4")
    assert shifted["params"]["xi"] == 0.4
    assert {k: v for k, v in shifted["params"].items() if k != "xi"} == \
           {k: v for k, v in baseline_json["params"].items() if k != "xi"}
    assert shifted["seed"] == baseline_json["seed"] == 0  # same draws: the difference is xi's
    changed = [m for m in MOMENT_NAMES if shifted[m] != baseline_json[m]]
    assert "gini_change" in changed
    assert shifted["gini_change"] < baseline_json["gini_change"]


def test_float32_agrees_with_float64(baseline_json):
    single = _simulate("--precision", "float32")
    assert single["settings"]["precision"] == "float32" and baseline_json["settings"]["precision"] == "float64"
    # The bound: every moment within 2e-3 (absolute) of float64 on the same draws.
    for name in MOMENT_NAMES:
        assert single[name] == pytest.approx(baseline_json[name], abs=2e-3), name
    # ... and it really ran in float32: not every moment is bit-identical to float64's.
    assert any(single[name] != baseline_json[name] for name in MOMENT_NAMES)
    assert single["regime"] in ("concentrating", "equalizing")


@pytest.fixture(scope="module")
def user_targets_runs(tmp_path_factory):
    """A calibration with a user targets file and a bound that binds, then ``--replay`` of it."""
    from estimation.targets import load_targets

    base = tmp_path_factory.mktemp("replay")
    shipped = load_targets()
    # The shipped scenario with m3 and m6 moved: a file of the user's, not the default.
    values = shipped.values.copy()
    values[2], values[5] = -0.03, 0.002
    targets = base / "my targets.csv"
    pd.DataFrame({"moment": MOMENT_NAMES, "value": values, "se": shipped.se,
                  "source": "a user's numbers"}).to_csv(targets, index=False)
    first = base / "first"
    # The default targets pull sigma_nu to 0; a lower bound of 0.2 must bind and be flagged.
    code, _, stderr = _calibrate("--targets", str(targets), "--bound", "sigma_nu=0.2:1", "--out", str(first))
    assert code == 0, stderr[-2000:]
    again = base / "again"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["calibrate", "--replay", str(first / "report.json"), "--out", str(again), "--quiet"])
    assert code == 0, err.getvalue()[-2000:]
    return first, again, targets, values


def test_replay_with_a_user_targets_file_reproduces_every_file(user_targets_runs):
    first, again, targets, values = user_targets_runs
    report = json.loads((first / "report.json").read_text("utf-8"))
    assert report["inputs"]["targets"]["path"] == str(targets.absolute())
    assert report["inputs"]["targets"]["sha256"] == hashlib.sha256(targets.read_bytes()).hexdigest()
    np.testing.assert_array_equal(pd.read_csv(first / "moments.csv")["target"].to_numpy(), values)
    files = {p.name: p.read_bytes() for p in sorted(first.iterdir()) if p.name != "timing.json"}
    assert {p.name: p.read_bytes() for p in sorted(again.iterdir()) if p.name != "timing.json"} == files


def test_a_bound_that_binds_is_flagged_in_estimates_csv(user_targets_runs):
    first, *_ = user_targets_runs
    estimates = pd.read_csv(first / "estimates.csv", keep_default_na=False).set_index("parameter")
    row = estimates.loc["sigma_nu"]
    assert row["lower_bound"] == 0.2 and row["upper_bound"] == 1.0
    # The optimiser's steps are bounded least-squares problems: a binding bound is reached exactly.
    assert row["estimate"] == pytest.approx(0.2, abs=1e-12)
    assert row["at_bound"] == "lower"
    # Every other flag agrees with the rule of estimation.parameters: within 0.1% of the range (or
    # of max(1, |bound|) for a one-sided bound).
    for name, r in estimates.iterrows():
        lo, hi, x = float(r["lower_bound"]), float(r["upper_bound"]), float(r["estimate"])
        two_sided = np.isfinite(lo) and np.isfinite(hi)
        near_lo = np.isfinite(lo) and x - lo <= 1e-3 * ((hi - lo) if two_sided else max(1.0, abs(lo)))
        near_hi = np.isfinite(hi) and hi - x <= 1e-3 * ((hi - lo) if two_sided else max(1.0, abs(hi)))
        assert r["at_bound"] == ("lower" if near_lo else "upper" if near_hi else ""), name
