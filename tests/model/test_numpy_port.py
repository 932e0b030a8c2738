"""The NumPy port of the benchmarks is the same model: equal moments on the same draws.

The port (``benchmarks/numpy_port.py``) is written independently in NumPy (bincount for firm sums,
np.argsort for ranks and Gini, its own fixed-point loop); agreement to 1e-8 checks both
implementations against each other and is what makes the peer benchmarks a fair comparison.
"""

from __future__ import annotations

import numpy as np
import pytest

import jaxmodel
from benchmarks import numpy_port

from tests.conftest import SMALL

# Points across the model: the baseline, CES tasks away from sigma = 1, strong rent sharing with
# proprietary AI, no credential noise, and the two other AI augmentation forms.
POINTS = [
    ("additive", {}),
    ("additive", {"sigma": 0.6, "xi": 0.6, "eta1": 1.5, "gini_K": 0.8}),
    ("additive", {"sigma": 2.5, "sigma_nu": 0.0, "lam": -0.5}),
    ("partial_multiplicative", {"mu": 0.7}),
    ("ces", {"rho": -0.5, "omega": 0.4}),
]


@pytest.mark.parametrize(("spec", "changes"), POINTS, ids=[f"{s}-{i}" for i, (s, _) in enumerate(POINTS)])
def test_numpy_port_equals_jaxmodel(small_draws, baseline, spec, changes):
    settings = SMALL.replace(spec=spec)
    params = baseline.replace(**changes)
    jax_m = jaxmodel.moments(params, small_draws, settings)
    port = numpy_port.moments(*numpy_port.from_jax(params, small_draws, settings))
    got = np.array([port[k] for k in numpy_port.MOMENT_NAMES])
    # Both solve the fixed point to fp_tol = 1e-10 with the same damped iteration from the same
    # start; the rest is the same float64 arithmetic in another order (sums, sorts): 1e-8 is
    # the bound and leaves four orders of margin over the 1e-12 differences seen.
    np.testing.assert_allclose(got, np.asarray(jax_m.vector()), rtol=0, atol=1e-8)
    assert port["cv_change_all_workers"] == pytest.approx(float(jax_m.cv_change_all_workers), abs=1e-8)
    for key in ("gini", "college_share", "between_firm_share", "cv_within_firms", "cv_all_workers"):
        assert port[f"{key}_before"] == pytest.approx(float(jax_m.before[key]), abs=1e-8)
        assert port[f"{key}_after"] == pytest.approx(float(jax_m.after[key]), abs=1e-8)
