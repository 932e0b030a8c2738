"""Success paths of the command line that no other test walks, in this process (exit code 0).

- ``calibrate --force`` replaces an existing results folder; without it the command refuses (2);
- ``calibrate --weights identity`` and ``--weights FILE`` use exactly those weights;
- ``simulate --set xi=0.4`` moves the moments, Delta Gini down (stronger rent sharing);
- ``simulate --precision float32`` agrees with float64;
- ``calibrate --targets FILE --bound ...`` flags a binding bound, and ``--replay`` of it reproduces
  every file;
- ``regimes``, ``scenario`` and ``panel-power`` with ``--from DIR`` compute at the estimates, settings
  and seed of the calibration in DIR, and differ from the same commands without ``--from``.

Sizes are the smallest the other CLI tests use (N = 5000, F = 50), and the calibrations stop after
10 iterations with no flip checks: these tests are about which path runs, not about the estimate.
The ``--from`` tests use N = 4000, F = 40 (the size of tests/msm/test_interruptions.py and
tests/regimes/test_regimes.py, whose compiled programs the session's cache then holds).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from estimation.cli import main
from estimation.msm import load_weight_matrix
from jaxmodel import DOMAINS, MOMENT_NAMES
from tests.helpers import run_cli

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
    return run_cli(*CALIBRATE, *extra)


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
    # Under a user's W, J is the generalised form that holds under any weights (inference.j_test).
    assert report["j_test"]["form"] == "g' S^+ g" and report["j_test"]["weights"] == str(path)
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
    falls with rent sharing"; tests/model/test_gradients.py checks d m6 / d xi < 0 at the baseline)."""
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
    from estimation.msm.targets import load_targets

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
    # 0.2 is a side of the search box that --bound set, not of sigma_nu's domain [0, inf).
    assert row["at_bound"] == "lower (search box)"
    assert row["se"] == "" and "Andrews 1999" in row["se_note"] and row["ci_lower"] == 0.2
    # Every other flag agrees with the rule of estimation.parameters: within 0.1% of the range (or
    # of max(1, |bound|) for a one-sided bound), "(search box)" where the bound is not the domain's.
    for name, r in estimates.iterrows():
        lo, hi, x = float(r["lower_bound"]), float(r["upper_bound"]), float(r["estimate"])
        domain = DOMAINS[name]
        two_sided = np.isfinite(lo) and np.isfinite(hi)
        near_lo = np.isfinite(lo) and x - lo <= 1e-3 * ((hi - lo) if two_sided else max(1.0, abs(lo)))
        near_hi = np.isfinite(hi) and hi - x <= 1e-3 * ((hi - lo) if two_sided else max(1.0, abs(hi)))
        side = "lower" if near_lo else "upper" if near_hi else ""
        if side and (lo if side == "lower" else hi) != (domain.lo if side == "lower" else domain.hi):
            side += " (search box)"
        assert r["at_bound"] == side, name


# --- `--from DIR` of regimes, scenario and panel-power (issue 12) --------------------------------
#
# One small calibration (the size and seed of tests/msm/test_interruptions.py's, whose compiled programs
# the session's cache then holds; tests/regimes/test_regimes.py runs regimes and scenario at the same N and
# F) feeds each command with --from. Each command is run a second time without --from but with the
# calibration's model options (--agents, --firms, --seed), so that the two runs differ only in the
# parameters: the calibrated ones against the baseline.

FROM_CALIBRATE = ["calibrate", "--agents", "4000", "--firms", "40", "--starts", "2", "--max-iter", "15",
                  "--sim-sets", "3", "--flip-checks", "0", "--quiet", "--seed", "3"]
#: The calibration's model options, given to the runs without --from.
SAME_MODEL = ["--agents", "4000", "--firms", "40", "--seed", "3"]

# Moments of the same parameters computed by two programs: the calibration's (moments and Jacobian
# in one jacfwd program, workers assigned once) and the commands' (jaxmodel.moments, or a vmapped
# batch of it). Both stop the education fixed point at MODEL.md's max |Gamma(P) - P| <= fp_tol =
# 1e-10, from the same cold start but along paths that may differ in the last bits, so the moments
# may differ by a small multiple of 1e-10 (they agree to about 1e-14 in practice). 1e-8 leaves a
# margin of 100 and is about 1e-5 of the smallest difference between the calibrated and the baseline
# moments at these settings (7.5e-4, in Delta Gini), which the tests below require to exceed 1e-5.
SAME_POINT_ATOL = 1e-8


def _main(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _csv_column(path: Path, key: str, value: str) -> dict[str, float]:
    """{row[key]: row[value]} of a results CSV, read with Python's float, which is correctly rounded:
    it reads back exactly the double that "%.17g" wrote (pandas 2's default parser may be one unit in
    the last place off, and pandas 3 deprecates its exact one)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {row[key]: float(row[value]) for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    """A finished calibration's results folder, its estimates and its configuration."""
    import jaxmodel

    out = tmp_path_factory.mktemp("from") / "calibration"
    code, _, stderr = _main(*FROM_CALIBRATE, "--out", str(out))
    assert code == 0, stderr[-2000:]
    estimates = _csv_column(out / "estimates.csv", "parameter", "estimate")
    report = json.loads((out / "report.json").read_text("utf-8"))
    # estimates.csv and report.json hold the same doubles.
    assert estimates == {row["parameter"]: float(row["estimate"]) for row in report["estimates"]}
    assert list(estimates) == ["alpha", "sigma_nu", "sigma", "eta1", "xi"] and report["config"]["fixed"] == {}
    # Every estimate differs from the baseline's value: otherwise a command that ignored --from
    # could pass the comparisons below.
    default = jaxmodel.baseline().to_dict()
    assert all(estimates[name] != float(default[name]) for name in estimates), estimates
    params = {name: float(value) for name, value in jaxmodel.baseline().replace(**estimates).to_dict().items()}
    model = _csv_column(out / "moments.csv", "moment", "model")
    return {"folder": out, "estimates": estimates, "params": params, "config": report["config"],
            "model_moments": np.array([model[name] for name in MOMENT_NAMES])}


def test_regimes_from_a_calibration_uses_its_estimates_settings_and_seed(calibration, tmp_path):
    """``regimes --from DIR`` solves the model at DIR's estimates (every other parameter at the
    baseline), with DIR's settings and seed: regimes.json records exactly those parameters, a point of
    its Delta Gini map equals Delta Gini computed directly at them, and every map value and boundary
    point differs from the same command's without --from (baseline parameters, same settings and
    seed)."""
    import jax

    import jaxmodel

    folder, config = calibration["folder"], calibration["config"]
    calibrated, default = tmp_path / "calibrated", tmp_path / "default"
    code, _, stderr = _main("regimes", "--from", str(folder), "--grid", "3", "--out", str(calibrated))
    assert code == 0, stderr[-2000:]
    code, _, stderr = _main("regimes", "--grid", "3", *SAME_MODEL, "--out", str(default))
    assert code == 0, stderr[-2000:]

    record = json.loads((calibrated / "regimes.json").read_text("utf-8"))
    assert record["origin"] == f"calibration in {folder}"
    assert record["params"] == calibration["params"]  # bit for bit (JSON writes doubles exactly)
    assert record["seed"] == config["seed"] == 3
    for key in ("n_agents", "n_firms", "n_occupations", "n_tasks", "spec", "precision", "fp_damping", "fp_solver"):
        assert record["settings"][key] == config[key], key
    other = json.loads((default / "regimes.json").read_text("utf-8"))
    assert other["params"] == {k: float(v) for k, v in jaxmodel.baseline().to_dict().items()}
    assert other["settings"] == record["settings"] and other["seed"] == record["seed"]  # only the parameters differ

    files = {"map_xi_gini_K.csv": (["xi", "gini_K"], "delta_gini"), "map_eta1_xi.csv": (["eta1", "xi"], "delta_gini"),
             "boundary.csv": (["structure", "xi"], "gini_K")}
    for name, (grid, value) in files.items():
        mine, theirs = pd.read_csv(calibrated / name), pd.read_csv(default / name)
        pd.testing.assert_frame_equal(mine[grid], theirs[grid])  # the same grid ...
        # ... and other values wherever both have one (alpha, sigma and sigma_nu, which no map or
        # boundary search overrides, differ from the baseline's).
        both = mine[value].notna() & theirs[value].notna()
        assert both.any(), name
        assert (mine.loc[both, value] != theirs.loc[both, value]).all(), name

    # The numbers are those of the calibrated parameters: the middle point of the (xi, Gini(K)) map,
    # recomputed directly with the calibration's draws.
    plane = pd.read_csv(calibrated / "map_xi_gini_K.csv")
    row = plane.iloc[len(plane) // 2]
    settings = jaxmodel.Settings(n_agents=config["n_agents"], n_firms=config["n_firms"],
                                 n_occupations=config["n_occupations"], n_tasks=config["n_tasks"])
    draws = jaxmodel.make_draws(jax.random.key(config["seed"]), settings)
    params = jaxmodel.baseline().replace(**calibration["estimates"]).replace(xi=row["xi"], gini_K=row["gini_K"])
    direct = float(jaxmodel.moments(params, draws, settings).gini_change)
    assert row["delta_gini"] == pytest.approx(direct, rel=0, abs=SAME_POINT_ATOL)


def _scenario(*extra: str) -> dict[str, dict]:
    code, stdout, stderr = _main("scenario", "all", "--json", *extra)
    assert code == 0, stderr[-2000:]
    return {row["scenario"]: row for row in json.loads(stdout)}


def test_scenario_from_a_calibration_starts_from_its_estimates(calibration):
    """``scenario all --from DIR`` takes DIR's estimates as the base: each scenario's change is
    applied to the calibrated values (xi doubled is 2 xi_hat, commoditised AI moves eta1_hat into
    eta0, bit for bit), the base moments are the calibration's model moments at its estimate, the
    output is exactly that of ``--set NAME=VALUE`` of every estimate at DIR's settings and seed, and
    it differs in every base moment from the run without --from."""
    folder, estimates = calibration["folder"], calibration["estimates"]
    calibrated = _scenario("--from", str(folder))
    default = _scenario(*SAME_MODEL)
    eta0 = calibration["params"]["eta0"]

    assert calibrated["stronger-rent-sharing"]["changes"] == {"xi": min(2.0 * estimates["xi"], 1.0)}
    assert calibrated["commoditised-ai"]["changes"] == {"eta0": eta0 + estimates["eta1"], "eta1": 0.0}
    assert default["stronger-rent-sharing"]["changes"] == {"xi": 0.3}  # 2 x the baseline's 0.15
    assert default["commoditised-ai"]["changes"] == {"eta0": 1.0, "eta1": 0.0}

    base = np.array([calibrated["stronger-rent-sharing"][f"{m}_base"] for m in MOMENT_NAMES])
    np.testing.assert_allclose(base, calibration["model_moments"], rtol=0, atol=SAME_POINT_ATOL)
    other = np.array([default["stronger-rent-sharing"][f"{m}_base"] for m in MOMENT_NAMES])
    assert np.all(np.abs(base - other) > 1e3 * SAME_POINT_ATOL), (base, other)

    # --from DIR is --set of DIR's estimates (repr writes each double exactly) with DIR's model
    # options: the same numbers, bit for bit.
    assignments = [a for name, value in estimates.items() for a in ("--set", f"{name}={value!r}")]
    assert _scenario(*assignments, *SAME_MODEL) == calibrated


def test_panel_power_from_a_calibration_takes_its_effects_from_the_estimates(calibration, tmp_path):
    """``panel-power --from DIR`` computes the panel's design from DIR's estimates: the design in
    panel_power.json carries sigma_nu_hat and eta0 + eta1_hat bit for bit, and H2's effect is the
    college premium change m3 of the calibration's model at its estimate; without --from (baseline
    parameters, same settings and seed) the design and the power curves differ."""
    folder, estimates = calibration["folder"], calibration["estimates"]
    calibrated, default = tmp_path / "calibrated", tmp_path / "default"
    options = ["--reps", "20", "--sizes", "40", "160"]
    code, _, stderr = _main("panel-power", "--from", str(folder), *options, "--out", str(calibrated))
    assert code == 0, stderr[-2000:]
    code, _, stderr = _main("panel-power", *options, *SAME_MODEL, "--out", str(default))
    assert code == 0, stderr[-2000:]

    record = json.loads((calibrated / "panel_power.json").read_text("utf-8"))
    other = json.loads((default / "panel_power.json").read_text("utf-8"))
    assert record["origin"] == f"calibration in {folder}"
    design, eta0 = record["design"], calibration["params"]["eta0"]
    assert design["sigma_nu"] == estimates["sigma_nu"]
    assert design["eta0"] == eta0 and design["access"] == eta0 + estimates["eta1"]
    m3 = calibration["model_moments"][list(MOMENT_NAMES).index("college_premium_change")]
    assert design["premium_change"] == pytest.approx(m3, rel=0, abs=SAME_POINT_ATOL)

    assert other["design"]["sigma_nu"] == 0.5 and other["design"]["access"] == 1.0  # the baseline's
    for key in ("premium_change", "firm_slope", "floor", "college_share"):
        assert design[key] != other["design"][key], key
    assert record["power"] != other["power"]
