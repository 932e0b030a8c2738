"""Omega_sim, the simulation noise the inference adds to the targets' variance, has the right scale.

``estimation.msm.noise.simulation_noise`` simulates the moments on draw sets split from the
calibration's key, one set at a time. This test simulates them itself, on draw sets from keys of its own, and compares
the two variances moment by moment. (``moments.csv``'s ``simulation_sd`` is sqrt(diag(Omega_sim))
bit for bit: tests/output/test_results_files.py.)
"""

from __future__ import annotations

import jax
import numpy as np

import jaxmodel
from estimation.msm import noise

SETTINGS = jaxmodel.Settings(n_agents=2000, n_firms=20)
SETS = 128


def test_simulation_noise_has_the_variance_of_fresh_draw_sets(baseline):
    omega = noise.simulation_noise(baseline, jax.random.key(11), SETTINGS, SETS)
    own_keys = jax.random.split(jax.random.key(20261202), SETS)
    sims = np.stack([np.asarray(jaxmodel.moments(baseline, jaxmodel.make_draws(k, SETTINGS), SETTINGS).vector())
                     for k in own_keys])
    own = sims.var(axis=0, ddof=1)
    assert np.all(own > 0) and np.all(np.diag(omega) > 0)
    # Two independent variance estimates from 128 sets each: log(s1^2 / s2^2) has SD
    # sqrt(2/127 + 2/127) = 0.18 per moment (normal moments; a little more with heavier tails), and
    # the mean over the six moments about 0.07-0.18 (they are correlated). A variance off by a factor
    # of two moves the mean by log 2 = 0.69: the bound 0.35 on the mean is about 2-5 SDs from either.
    # Each moment alone within 0.8 (4.4 SDs) catches a wrong variance of a single moment.
    log_ratio = np.log(np.diag(omega) / own)
    assert abs(log_ratio.mean()) < 0.35, log_ratio
    assert np.all(np.abs(log_ratio) < 0.8), log_ratio
    # The covariances too: the correlation matrices agree to the sampling error of a correlation
    # from 128 sets (SD <= 1/sqrt(127) = 0.09 each; 0.4 is over 3 SDs of their difference).
    corr = omega / np.sqrt(np.outer(np.diag(omega), np.diag(omega)))
    assert np.max(np.abs(corr - np.corrcoef(sims, rowvar=False))) < 0.4
