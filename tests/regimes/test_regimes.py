"""The two regimes: the boundary Delta Gini = 0, its implicit-function slope, scenarios, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import jaxmodel
from estimation import regimes
from tests.conftest import SMALL

XI = np.array([0.05, 0.15, 0.3])


@pytest.fixture(scope="module")
def boundaries(small_draws):
    base = jaxmodel.baseline()
    return {name: regimes.find_boundary(base, small_draws, SMALL, XI, name, eta) for name, eta in regimes.STRUCTURES.items()}


def _delta_gini(params, draws):
    return float(jaxmodel.moments(params, draws, SMALL).gini_change)


def test_boundary_points_are_zeros_with_a_sign_change(boundaries, small_draws):
    base = jaxmodel.baseline()
    found = 0
    for b in boundaries.values():
        for i, status in enumerate(b.status):
            if status is not regimes.Crossing.CONVERGED:
                continue
            found += 1
            assert abs(b.residual[i]) < regimes.F_TOL
            p = base.replace(eta0=b.eta0, eta1=b.eta1, xi=float(b.xi[i]))
            above = _delta_gini(p.replace(gini_K=min(b.gini_K[i] + 0.02, 0.98)), small_draws)
            below = _delta_gini(p.replace(gini_K=max(b.gini_K[i] - 0.02, 0.0)), small_draws)
            assert np.sign(above) != np.sign(below)
            assert (above > 0) == bool(b.concentrating_above[i])
    assert found >= 3  # the curves exist over most of this xi range


def test_implicit_function_slope_matches_finite_differences_of_the_curve(small_draws):
    base = jaxmodel.baseline()
    h = 0.01
    xi0 = 0.15
    eta = regimes.STRUCTURES["proprietary-leaning"]
    b = regimes.find_boundary(base, small_draws, SMALL, np.array([xi0 - h, xi0, xi0 + h]), "proprietary-leaning", eta)
    assert all(s is regimes.Crossing.CONVERGED for s in b.status), b.status
    fd = (b.gini_K[2] - b.gini_K[0]) / (2 * h)
    # Central difference of a smooth curve: error h^2 g'''/6 (< 1e-3 here) plus 2 F_TOL/(h f_g) ~ 1e-6.
    assert b.slope[1] == pytest.approx(fd, rel=0.02, abs=2e-3)


def test_curves_lie_where_property_5_puts_the_regimes(small_draws):
    """Property 5: commodity AI equalizes at the baseline's institutions (xi 0.15, Gini(K) 0.6);
    proprietary AI at weak rent sharing and concentrated assets (xi 0.05, Gini(K) 0.8) concentrates.
    The curves must put those points on those sides."""
    base = jaxmodel.baseline()
    for name, (xi, gini_K), sign in (("commodity-leaning", (0.15, 0.6), -1), ("proprietary-leaning", (0.05, 0.8), 1)):
        eta = regimes.STRUCTURES[name]
        b = regimes.find_boundary(base, small_draws, SMALL, np.array([xi]), name, eta)
        assert np.sign(_delta_gini(base.replace(**eta, xi=xi, gini_K=gini_K), small_draws)) == sign
        if b.status[0] is regimes.Crossing.CONVERGED:
            above = gini_K > b.gini_K[0]
            concentrating = above == bool(b.concentrating_above[0])
            assert concentrating == (sign > 0), name
        else:  # one sign over the whole segment: it must be the sign of the regime
            expected = regimes.Crossing.ALWAYS_CONCENTRATING if sign > 0 else regimes.Crossing.NEVER_CONCENTRATING
            assert b.status[0] is expected


def test_scenarios_move_delta_gini_as_the_paper_says(small_draws):
    base = jaxmodel.baseline()
    rows = {r["scenario"]: r for r in regimes.run_scenarios(base, small_draws, SMALL, list(regimes.SCENARIOS))}
    # Stronger rent sharing and commoditised AI lower Delta Gini (d/dxi < 0, d/deta1 > 0 at the baseline).
    for name in ("stronger-rent-sharing", "commoditised-ai"):
        assert rows[name]["gini_change_change"] < 0, name
    assert rows["commoditised-ai"]["regime_scenario"] == "equalizing"
    assert rows["stronger-rent-sharing"]["changes"] == {"xi": 0.3}
    # Lower asset concentration lowers Delta Gini only when proprietary AI is asset intensive
    # (psi > 1): its rents scale with K~^psi, so with psi < 1 they are less concentrated than the
    # asset rents r_K K_j they join, and concentrating the assets makes AI's addition more equal.
    assert rows["lower-asset-concentration"]["gini_change_change"] > 0
    intense = regimes.run_scenarios(base.replace(psi=1.5), small_draws, SMALL, ["lower-asset-concentration"])[0]
    assert intense["gini_change_change"] < 0


def test_regimes_and_scenario_commands(tmp_path):
    out = tmp_path / "reg"
    base = [sys.executable, "-m", "estimation.cli"]
    small = ["--agents", "4000", "--firms", "40"]
    proc = subprocess.run([*base, "regimes", "--grid", "3", *small, "--out", str(out)], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    boundary = pd.read_csv(out / "boundary.csv")
    assert set(boundary["structure"]) == set(regimes.STRUCTURES) and len(boundary) == 6
    assert pd.read_csv(out / "map_xi_gini_K.csv").shape == (9, 3)
    assert pd.read_csv(out / "map_eta1_xi.csv").shape == (9, 3)
    for png in ("regime_map.png", "technology_map.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "regimes.json").read_text())["boundary"]
    again = subprocess.run([*base, "regimes", "--grid", "3", *small, "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr

    proc = subprocess.run([*base, "scenario", "all", *small, "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {r["scenario"] for r in json.loads(proc.stdout)} == set(regimes.SCENARIOS)
    bad = subprocess.run([*base, "scenario", "utopia"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown scenario" in bad.stderr and "Traceback" not in bad.stderr
