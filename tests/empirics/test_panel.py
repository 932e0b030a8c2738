"""Why occupation data cannot test the model, and the power of the within-task panel that could."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxmodel
from estimation.empirics import occupations, panel
from tests.conftest import SMALL

DESIGN = panel.PanelDesign()


@pytest.mark.parametrize("hypothesis", panel.HYPOTHESES)
def test_power_rises_with_the_panel_and_reaches_80_percent(hypothesis):
    small, large = panel.power_curve(hypothesis, DESIGN, [10, 6400], reps=300)
    assert large > small and large >= 0.8


@pytest.mark.parametrize("hypothesis", panel.HYPOTHESES)
def test_about_five_percent_rejections_without_an_effect(hypothesis):
    null = dataclasses.replace(DESIGN, effect_scale=0.0)
    rate = panel.rejection_rate(hypothesis, null, 200, reps=2000, seed=3)
    # Binomial(2000, 0.05): a 99.9% interval is 0.05 +- 0.016.
    assert 0.034 <= rate <= 0.066


def test_size_for_power_interpolates():
    assert panel.size_for_power([10, 100, 1000], [0.2, 0.6, 1.0]) == pytest.approx(np.exp(np.log(100) + 0.5 * np.log(10)))
    assert panel.size_for_power([10, 100], [0.1, 0.2]) == np.inf


def test_design_from_the_model_has_the_models_signs(small_draws):
    design = panel.design_from_model(jaxmodel.baseline(), SMALL, jax.random.key(1))
    assert design.premium_change < 0  # sigma = 1.5: Proposition 3
    assert design.firm_slope > 0  # proprietary AI with rent sharing favours asset-rich firms' workers
    assert 0.3 < design.college_share < 0.6


def test_occupation_regressions_cannot_tell_the_regimes_apart():
    settings = jaxmodel.Settings(n_agents=100_000, n_firms=500, n_occupations=20)
    records = occupations.demonstration(jaxmodel.baseline(), settings, jax.random.key(0), pairs=["rent sharing"])
    sides = {r["side"]: r for r in records}
    eq, conc = sides["equalizing"], sides["concentrating"]
    # Opposite regimes by Delta Gini (and the between-firm share moves in opposite directions) ...
    assert eq["moments"]["gini_change"] < 0 < conc["moments"]["gini_change"]
    assert np.sign(eq["moments"]["between_firm_share_change"]) != np.sign(conc["moments"]["between_firm_share_change"])
    # ... yet every occupation-level coefficient has the same sign in both.
    for outcome in eq["regressions"]:
        assert np.sign(eq["regressions"][outcome]["coef"]) == np.sign(conc["regressions"][outcome]["coef"]), outcome
    # Within-task homogenization happens in both (m1 < 0): occupation data see the same thing twice.
    assert eq["moments"]["cv_change"] < 0 and conc["moments"]["cv_change"] < 0


def test_oews_and_panel_power_commands(shared_data, tmp_path):
    base = [sys.executable, "-m", "estimation.cli"]
    out = tmp_path / "oews"
    proc = subprocess.run([*base, "oews", "--data", str(shared_data), "--no-model", "--measure", "felten_aioe",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["years"] == [2019, 2023] and len(report["regressions"]) == 4
    assert (out / "binned_d_log_median_wage.png").read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run([*base, "oews", "--data", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert bad.returncode == 2 and "not a folder" in bad.stderr
    out = tmp_path / "power"
    proc = subprocess.run([*base, "panel-power", "--reps", "40", "--sizes", "20", "200", "--agents", "4000",
                           "--firms", "40", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(json.loads((out / "panel_power.json").read_text())["n_for_80_percent"]) == set(panel.HYPOTHESES)


#: README ("Occupation data and the panel that would test the model"): the panel sizes for 80% power
#: at the baseline: about 70 workers (H1), 90 workers (H2), 700 applicants per period (H3), 20 firms (H4).
README_SIZES = {"H1": 70, "H2": 90, "H3": 700, "H4": 20}


def _as_the_readme_rounds(n: float) -> float:
    """One significant figure ("about 70"): 66 -> 70, 740 -> 700, 17 -> 20."""
    return float(f"{n:.1g}")


def test_panel_sizes_quoted_in_the_readme():
    """Recomputed as `levelfield panel-power` does with its defaults: the baseline at N = 20,000,
    F = 100 (O = 10, T = 40), seed 0, sizes 10 .. 10240 (11 on a log grid), 200 replications."""
    settings = jaxmodel.Settings(n_agents=20_000, n_firms=100, n_occupations=10, n_tasks=40)
    design = panel.design_from_model(jaxmodel.baseline(), settings, jax.random.key(0))
    sizes = [int(x) for x in np.unique(np.geomspace(10, 10240, 11).round())]
    needed = {h: panel.size_for_power(sizes, panel.power_curve(h, design, sizes, 200, 0)) for h in panel.HYPOTHESES}
    assert {h: _as_the_readme_rounds(n) for h, n in needed.items()} == README_SIZES, needed
