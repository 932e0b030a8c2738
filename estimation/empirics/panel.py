"""The power of the within-task panel tests of H1-H4 that would test the model (simulated from it).

Occupation aggregates cannot see the mechanism; a panel of workers x tasks x periods with AI use
could. This module simulates such a panel from the model's equations and parameters and gives one
estimator per hypothesis of the paper's summary, with a one-sided test at 5%:

- H1, within-task homogenization: y_ikt = h_i phi_k + AI_ikt c_i F_k with multiplicative measurement
  noise; in the AI period a random share of workers uses AI on the occupation's exposed tasks. The
  statistic is a difference in differences of each worker's mean absolute deviation of log output
  from the task-period mean (users minus non-users, after minus before); H1 predicts < 0.
- H2, returns to codifiable education fall (sigma > 1): the change in log wage of college minus
  non-college workers, with the model's change in the college premium (m3) as the effect.
- H3, credential reliance rises: applicants' signals s = log q + sigma_eps u with the work sample
  q = h A_phi + eta0 nu A_F done with commodity AI; employers' regression of later performance on
  [1, s, e]; H3 predicts that the credential coefficient rises after AI.
- H4, between-firm dispersion rises with proprietary AI and rent sharing: firm mean changes in log
  wage regressed on firm log assets, with the slope implied by the model (solved with proprietary AI,
  psi = 1, and strong rent sharing xi = 0.5).

Power at a panel size is the rejection rate over replications; the size needed for 80% power is
interpolated on a grid of sizes. With no effect the tests reject about 5% of the time.
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

import numpy as np

Z_95 = NormalDist().inv_cdf(0.95)  # one-sided 5% test
HYPOTHESES = ("H1", "H2", "H3", "H4")
DESCRIPTIONS = {
    "H1": "within-task CV of output falls on AI-exposed tasks (workers)",
    "H2": "returns to codifiable education fall (workers)",
    "H3": "credential reliance in hiring rises (applicants per period)",
    "H4": "between-firm wage dispersion rises with proprietary AI and rent sharing (firms of 20 workers)",
}


@dataclasses.dataclass(frozen=True)
class PanelDesign:
    """The model quantities and the data's noise that set each hypothesis' effect and noise.

    The model quantities come from ``design_from_model``; the noise levels are properties of the
    data one would collect (documented defaults).
    """

    sigma_theta: float = 0.7
    gamma: float = 0.4
    college_share: float = 0.43
    phi: tuple = (1.6, 1.7, 1.8, 1.9, 2.0)  # the exposed occupation's task weights' phi_k
    floor: tuple = (0.9, 1.0, 1.0, 1.0, 0.9)  # F_k = alpha A1 a_k phi_k
    access: float = 1.0  # eta0 + mean eta1 K~^psi
    sigma_nu: float = 0.5
    eta0: float = 0.5
    sigma_eps: float = 0.5
    a_phi: float = 1.8  # sum_k a~_k phi_k
    a_floor: float = 1.0  # sum_k a~_k F_k at A1
    premium_change: float = -0.114  # m3, H2's effect (log points)
    firm_slope: float = 0.02  # H4's effect: d mean Delta log wage / d log K~
    log_assets_sd: float = 1.2  # sd of log K across firms
    adoption: float = 0.5  # share of workers using AI in the AI period
    output_noise: float = 0.3  # sd of multiplicative measurement noise of task output
    wage_noise: float = 0.2  # sd of idiosyncratic log-wage changes
    performance_noise: float = 0.3  # sd of the noise in measured performance (H3)
    workers_per_firm: int = 20
    effect_scale: float = 1.0  # 0 switches every effect off (size check)


def design_from_model(params, settings, key) -> PanelDesign:
    """Effects and task quantities from the model at ``params`` (H4's slope from a proprietary-AI,
    strong rent-sharing configuration of the same economy)."""
    import jaxmodel
    from jaxmodel import firms, tasks

    z, a, omega = map(np.asarray, tasks.task_structure(params, settings.n_tasks, settings.n_occupations))
    phi = np.exp(float(params.lam) * z)
    o = int(np.argmax(omega @ a))  # the most exposed occupation
    k = np.argsort(omega[o])[-5:]  # its five main tasks
    floor = float(params.alpha) * float(params.A1) * a * phi
    a_t = a / a.sum()
    draws = jaxmodel.make_draws(key, settings)
    m = jaxmodel.moments(params, draws, settings)

    strong = params.replace(eta0=0.0, eta1=1.0, psi=1.0, xi=0.5)
    before = jaxmodel.solve(strong, draws, settings, 0.0)
    after = jaxmodel.solve(strong, draws, settings, float(strong.A1))
    firm = np.asarray(before.firm).ravel()

    def firm_mean_log_income(state):
        P = np.asarray(state.P).ravel()
        inc = np.asarray(state.income).reshape(2, -1)
        value = (1.0 - P) * np.log(inc[0]) + P * np.log(inc[1])
        return np.bincount(firm, value, settings.n_firms) / np.bincount(firm, minlength=settings.n_firms)

    change = firm_mean_log_income(after) - firm_mean_log_income(before)
    K, K_tilde = firms.assets(draws.u_K, strong.gini_K)
    log_k = np.log(np.asarray(K_tilde))
    slope = float(np.polyfit(log_k, change, 1)[0])
    return PanelDesign(
        sigma_theta=float(params.sigma_theta), gamma=float(params.gamma),
        college_share=float(m.before["college_share"]), phi=tuple(phi[k]), floor=tuple(floor[k]),
        access=float(params.eta0 + params.eta1), sigma_nu=float(params.sigma_nu), eta0=float(params.eta0),
        sigma_eps=float(params.sigma_eps), a_phi=float(a_t @ phi), a_floor=float(a_t @ floor),
        premium_change=float(m.college_premium_change), firm_slope=slope, log_assets_sd=float(np.std(log_k)),
    )


def _workers(design: PanelDesign, n: int, reps: int, rng: np.random.Generator):
    """Ability, education and human capital of (reps, n) workers; college selected on ability."""
    u = rng.standard_normal((reps, n))
    log_theta = design.sigma_theta * u - design.sigma_theta**2 / 2
    cut = NormalDist().inv_cdf(1 - design.college_share)
    e = (0.8 * u + 0.6 * rng.standard_normal((reps, n)) > cut).astype(float)
    return log_theta, e, np.exp(log_theta) * (1 + design.gamma * e)


def _h1(design, n, reps, rng):
    phi, floor = np.asarray(design.phi), np.asarray(design.floor) * design.effect_scale
    _, _, h = _workers(design, n, reps, rng)
    nu = np.exp(design.sigma_nu * rng.standard_normal((reps, n)) - design.sigma_nu**2 / 2)
    users = rng.random((reps, n)) < design.adoption
    stats = []
    for period in (0, 1):
        ai = users[..., None] * (period == 1)
        y = h[..., None] * phi + ai * design.access * nu[..., None] * floor
        log_y = np.log(y) + design.output_noise * rng.standard_normal(y.shape)
        dev = np.abs(log_y - log_y.mean(axis=1, keepdims=True)).mean(axis=2)  # (reps, n)
        stats.append(dev)
    change = stats[1] - stats[0]
    diff, se = _two_sample(change, users)
    return diff, se


def _two_sample(values, group):
    """Difference in means of ``values`` between group and the rest, and its (Welch) standard error."""
    n1 = group.sum(axis=1)
    n0 = (~group).sum(axis=1)
    m1 = np.where(group, values, 0).sum(axis=1) / np.maximum(n1, 1)
    m0 = np.where(~group, values, 0).sum(axis=1) / np.maximum(n0, 1)
    v1 = np.where(group, (values - m1[:, None]) ** 2, 0).sum(axis=1) / np.maximum(n1 - 1, 1)
    v0 = np.where(~group, (values - m0[:, None]) ** 2, 0).sum(axis=1) / np.maximum(n0 - 1, 1)
    se = np.sqrt(v1 / np.maximum(n1, 1) + v0 / np.maximum(n0, 1))
    # A replication with fewer than two members in a group has no test: it never rejects.
    return m1 - m0, np.where((n1 < 2) | (n0 < 2), np.inf, se)


def _h2(design, n, reps, rng):
    _, e, _ = _workers(design, n, reps, rng)
    change = design.premium_change * design.effect_scale * e + design.wage_noise * rng.standard_normal((reps, n))
    diff, se = _two_sample(change, e.astype(bool))
    return diff, se


def _ols_coefficient(y, X, j):
    """Coefficient j of OLS of y (reps, n) on X (reps, n, p), and its classical standard error."""
    xtx = np.einsum("rnp,rnq->rpq", X, X)
    # A replication whose regressors are collinear (say, no college graduate among few applicants)
    # has no estimate: its standard error is infinite and it never rejects.
    singular = np.linalg.cond(xtx) > 1e12
    inverse = np.linalg.pinv(xtx)
    b = np.einsum("rpq,rq->rp", inverse, np.einsum("rnp,rn->rp", X, y))
    e = y - np.einsum("rnp,rp->rn", X, b)
    s2 = (e**2).sum(axis=1) / max(y.shape[1] - X.shape[2], 1)
    se = np.sqrt(np.clip(s2 * inverse[:, j, j], 0.0, None))
    return np.where(singular, 0.0, b[:, j]), np.where(singular, np.inf, se)


def _h3(design, n, reps, rng):
    coefs, ses = [], []
    for A_share in (0.0, 1.0):
        log_theta, e, h = _workers(design, n, reps, rng)
        nu = np.exp(design.sigma_nu * rng.standard_normal((reps, n)) - design.sigma_nu**2 / 2)
        q = h * design.a_phi + design.eta0 * nu * design.a_floor * A_share * design.effect_scale
        s = np.log(q) + design.sigma_eps * rng.standard_normal((reps, n))
        performance = np.log(h) + design.performance_noise * rng.standard_normal((reps, n))
        X = np.stack([np.ones_like(s), s, e], axis=-1)
        b, se = _ols_coefficient(performance, X, 2)
        coefs.append(b)
        ses.append(se)
    return coefs[1] - coefs[0], np.sqrt(ses[0] ** 2 + ses[1] ** 2)


def _h4(design, n, reps, rng):
    log_k = design.log_assets_sd * rng.standard_normal((reps, n))
    noise = design.wage_noise / math.sqrt(design.workers_per_firm) * rng.standard_normal((reps, n))
    y = design.firm_slope * design.effect_scale * log_k + noise
    X = np.stack([np.ones_like(log_k), log_k], axis=-1)
    return _ols_coefficient(y, X, 1)


_TESTS = {"H1": (_h1, -1), "H2": (_h2, -1), "H3": (_h3, 1), "H4": (_h4, 1)}


def rejection_rate(hypothesis: str, design: PanelDesign, n: int, reps: int, seed: int) -> float:
    """Share of ``reps`` simulated panels of size n in which the one-sided 5% test rejects.

    H2's direction is the sign of the model's premium change (a fall when sigma > 1).
    """
    fn, sign = _TESTS[hypothesis]
    if hypothesis == "H2":
        sign = -1 if design.premium_change <= 0 else 1
    rng = np.random.default_rng(np.random.SeedSequence([seed, HYPOTHESES.index(hypothesis), n]))
    estimate, se = fn(design, n, reps, rng)
    return float(np.mean(sign * estimate / se > Z_95))


def power_curve(hypothesis: str, design: PanelDesign, sizes, reps: int = 200, seed: int = 0) -> np.ndarray:
    return np.array([rejection_rate(hypothesis, design, int(n), reps, seed) for n in sizes])


def size_for_power(sizes, power, target: float = 0.8) -> float:
    """Smallest panel size with power >= target, interpolated in log size; inf if never reached."""
    sizes, power = np.asarray(sizes, float), np.asarray(power, float)
    above = np.flatnonzero(power >= target)
    if above.size == 0:
        return math.inf
    i = above[0]
    if i == 0:
        return float(sizes[0])
    x0, x1, p0, p1 = np.log(sizes[i - 1]), np.log(sizes[i]), power[i - 1], power[i]
    return float(np.exp(x0 + (target - p0) * (x1 - x0) / (p1 - p0))) if p1 > p0 else float(sizes[i])




@dataclasses.dataclass(frozen=True)
class PowerStudy:
    """What ``levelfield panel-power`` computes.

    Attributes:
        design: the panel's effects, from the model; sizes: panel sizes; curves: {H: power by size};
        needed: {H: n for 80% power (inf beyond the grid)}; sizes_check: the sizes of the size
        check; size: {H: rejection rates with no effect at sizes_check}.
    """

    design: PanelDesign
    sizes: list
    curves: dict
    needed: dict
    sizes_check: list
    size: dict


def power_study(params, settings, key, sizes: list, reps: int, seed: int) -> PowerStudy:
    """Power of every hypothesis's one-sided 5% test by panel size, with effects from the model, and
    the rejection rate with no effect (effect_scale 0) at the middle and largest size."""
    design = design_from_model(params, settings, key)
    curves = {h: power_curve(h, design, sizes, reps, seed) for h in HYPOTHESES}
    null = dataclasses.replace(design, effect_scale=0.0)
    sizes_check = [sizes[len(sizes) // 2], sizes[-1]]
    size = {h: power_curve(h, null, sizes_check, reps, seed + 1) for h in HYPOTHESES}
    needed = {h: size_for_power(sizes, curves[h]) for h in HYPOTHESES}
    return PowerStudy(design, sizes, curves, needed, sizes_check, size)
