"""The scaled sensitivity computed once (``estimation.msm.sensitivity``), and the view's small types.

Known answers by hand; no run of the model (the views of real folders are checked in
tests/output/test_report_files.py).
"""

from __future__ import annotations

import math

import numpy as np

from estimation.output.view import Estimate, Identification, JTest, calibration_from_report
from estimation.msm.sensitivity import scaled_sensitivity


def test_scaled_sensitivity_by_hand():
    lam = np.array([[1.0, -2.0, 0.5], [4.0, 0.0, -1.0], [3.0, 3.0, 3.0]])
    target_se = np.array([0.1, 0.2, 0.4])
    param_se = np.array([0.5, 2.0, np.nan])
    scaled = scaled_sensitivity(lam, target_se, param_se)
    # Deterministic algebra: exact up to one rounding per product and quotient.
    np.testing.assert_allclose(scaled[:2], [[0.2, -0.8, 0.4], [0.2, 0.0, -0.2]], rtol=1e-15)
    assert np.isnan(scaled[2]).all()  # no SE: a row of NaN
    assert np.isnan(scaled_sensitivity(lam[:1], target_se, np.array([0.0]))).all()  # zero SE: NaN, never inf


def test_estimate_notes_and_j_verdict():
    row = dict(parameter="xi", estimate=0.1, se=float("nan"), ci_lower="", ci_upper="", interval="", lower_bound=0.0,
               upper_bound=1.0, at_bound="lower", start=0.5, se_note="at its lower bound 0 (binding): no standard error")
    assert Estimate.from_record(row).note == "At its lower bound 0 (binding): no standard error."
    old = Estimate.from_record({**row, "se": 0.2, "se_note": ""})
    assert old.note == "At its lower bound (0): the standard error assumes an interior optimum and is not valid there."
    assert old.se_reason == ""
    assert JTest(J=1.0, df=0, p_value=math.nan, weights="diagonal").verdict.startswith("no over-identifying")
    assert "rejected" in JTest(J=9.0, df=2, p_value=0.01, weights="diagonal").verdict
    ident = Identification(singular_values=(4.0, 1.0), condition_number=4.0, rank=2, n_params=2, identified=True,
                           weak_directions=(), reason="")
    assert ident.relative_singular_values == (1.0, 0.25)


def test_view_from_a_report_reads_non_finite_strings():
    report = {"estimates": [{"parameter": "xi", "estimate": 0.3, "se": "nan", "lower_bound": "-inf",
                             "upper_bound": "inf", "start": 0.1}],
              "moments": [{"moment": "gini_change", "symbol": "m6", "target": 0.001, "se": 0.004, "model": 0.002}],
              "sensitivity": {"rows": ["xi"], "columns": ["gini_change"], "values": [[2.0]]},
              "identification": {"singular_values": [1.0], "condition_number": "inf", "rank": 1, "n_params": 1,
                                 "identified": True, "weak_directions": []}}
    view = calibration_from_report(report)
    (e,) = view.estimates
    assert math.isnan(e.se) and e.lower_bound == -math.inf and e.upper_bound == math.inf
    assert view.identification.condition_number == math.inf
    assert np.isnan(view.sensitivity.scaled).all()  # xi has no SE
    assert view.j_test is None and view.decomposition is None and view.symbols == {"gini_change": "m6"}
