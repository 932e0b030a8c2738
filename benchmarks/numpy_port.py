"""The model of MODEL.md in vectorised NumPy: the peer an economist would write by hand.

Same equations, same algorithm and the same factorisation of task sums as ``jaxmodel`` (no N x T
array), written as a careful NumPy user would: arrays of shape (2, O, M) for worker-branches,
``np.bincount`` for sums over firms, ``np.argsort`` for ranks and the Gini, and the damped
fixed-point iteration of MODEL.md (or, with ``fp_solver="anderson"``, jaxmodel's accelerated solver,
to compare like with like). Derivatives, for a NumPy user, are finite differences. A test
checks that its moments equal ``jaxmodel.moments`` to 1e-8 on the same draws.

    from benchmarks.numpy_port import moments
    values = moments(params_dict, draws_dict, settings)   # dict of the six moments and diagnostics
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

MOMENT_NAMES = ("cv_change", "productivity_gain", "college_premium_change", "credential_reliance_change",
                "between_firm_share_change", "gini_change")
_ND = NormalDist()


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _log_ces(log_y, sigma):
    centre = log_y.mean()
    d = log_y - centre
    r = (sigma - 1.0) / sigma
    if abs(r) < 1e-3:
        k2, k3 = np.mean(d**2), np.mean(d**3)
        k4 = np.mean(d**4) - 3 * k2**2
        return centre + r * k2 / 2 + r**2 * k3 / 6 + r**3 * k4 / 24
    return centre + np.log1p(np.mean(np.expm1(r * d))) / r


def _augmentation(h, p, spec):
    if spec == "additive":
        return np.ones_like(h)
    if spec == "partial_multiplicative":
        return h ** p["mu"]
    return (p["omega"] * h ** p["rho"] + 1 - p["omega"]) ** (1 / p["rho"])


def _projection(y, s, w, ridge=1e-12):
    """WLS of y on [1, s, e] within each occupation: (O, 3)."""
    e = np.array([0.0, 1.0])[:, None, None]
    sw, ss, se_ = w.sum((0, 2)), (w * s).sum((0, 2)), (w * e).sum((0, 2))
    sss, sse = (w * s * s).sum((0, 2)), (w * s * e).sum((0, 2))
    xtx = np.stack([np.stack([sw, ss, se_], -1), np.stack([ss, sss, sse], -1),
                    np.stack([se_, sse, se_ + ridge * sw], -1)], -2)
    xty = np.stack([(w * y).sum((0, 2)), (w * y * s).sum((0, 2)), (w * y * e).sum((0, 2))], -1)
    return np.linalg.solve(xtx, xty[..., None])[..., 0]


def _fitted(b, s):
    e = np.array([0.0, 1.0])[:, None, None]
    return b[None, :, 0:1] + b[None, :, 1:2] * s + b[None, :, 2:3] * e


def _gini(x, w):
    order = np.argsort(x)
    xs, ws = x[order], w[order]
    cum = np.cumsum(ws)
    return np.sum(ws * xs * (2 * cum - ws - cum[-1])) / (cum[-1] * np.sum(ws * xs))


def _workforce(p, d, n_firms, n_occ):
    n = d["u_theta"].size
    m = n // n_occ
    occ_score = p["rho_occ"] * d["u_theta"] + math.sqrt(max(1 - p["rho_occ"] ** 2, 0)) * d["u_o"]
    order = np.argsort(occ_score)
    firm_score = p["rho_firm"] * d["u_theta"] + math.sqrt(max(1 - p["rho_firm"] ** 2, 0)) * d["u_f"]
    firm = np.empty(n, dtype=np.int64)
    firm[np.argsort(firm_score)] = np.arange(n) // (n // n_firms)

    def lay(x):
        return x[order].reshape(n_occ, m)

    log_theta = p["sigma_theta"] * lay(d["u_theta"]) - p["sigma_theta"] ** 2 / 2
    return {
        "log_theta": log_theta,
        "cost": p["c_bar"] - p["zeta"] * log_theta + p["sigma_c"] * lay(d["u_c"]),
        "log_nu": p["sigma_nu"] * lay(d["u_nu"]) - p["sigma_nu"] ** 2 / 2,
        "u_eps": lay(d["u_eps"]),
        "firm": lay(firm),
    }


def _state(p, wf, u_K, A, settings):
    n, f = wf["firm"].size, settings["n_firms"]
    per_firm = n // f
    T, O = settings["n_tasks"], settings["n_occupations"]
    z = (np.arange(T) + 0.5) / T
    phi = np.exp(p["lam"] * z)
    a = _sigmoid((z - p["z_lo"]) / p["w_a"]) * _sigmoid((p["z_hi"] - z) / p["w_a"])
    floor = p["alpha"] * A * a * phi
    centres = (np.arange(O) + 0.5) / O
    logits = -((z[None, :] - centres[:, None]) ** 2) / (2 * p["b_occ"] ** 2)
    omega = np.exp(logits - logits.max(1, keepdims=True))
    omega /= omega.sum(1, keepdims=True)
    e = np.array([0.0, 1.0])[:, None, None]
    log_h = wf["log_theta"][None] + np.log1p(p["gamma"] * e)
    h = np.exp(log_h)
    ai_unit = np.exp(wf["log_nu"])[None] * _augmentation(h, p, settings["spec"])
    sigma_K = math.sqrt(2) * _ND.inv_cdf((p["gini_K"] + 1) / 2)
    K = np.exp(sigma_K * u_K - sigma_K**2 / 2)
    K_tilde = K / K.mean()
    chi1 = (p["eta1"] * K_tilde ** p["psi"])[wf["firm"]]
    access = (p["eta0"] + chi1)[None] * ai_unit
    a_t = a / a.sum()
    log_q = np.log(h * (a_t @ phi) + p["eta0"] * ai_unit * (a_t @ floor))
    signal = log_q + p["sigma_eps"] * wf["u_eps"][None]
    centre = signal.mean(axis=(0, 2))[None, :, None]
    s, lq = signal - centre, log_q - centre
    firm_flat = wf["firm"].ravel()

    def market(P):
        w = np.stack([1 - P, P])
        H, C = (w * h).sum((0, 2)), (w * access).sum((0, 2))
        supply = ((omega.T @ H) * phi + (omega.T @ C) * floor) / n
        log_y = np.log(supply)
        prices = np.exp((_log_ces(log_y, p["sigma"]) - log_y) / p["sigma"]) / T
        p_phi, p_floor = omega @ (prices * phi), omega @ (prices * floor)
        mpc = h * p_phi[None, :, None] + p["eta0"] * ai_unit * p_floor[None, :, None]
        b = _projection(np.log(mpc), s, w)
        projected = np.exp(_fitted(b, s))
        bill = (w * mpc).sum((0, 2))
        factor = bill / (w * projected).sum((0, 2))
        ai_rent = (w * ai_unit).sum(0) * chi1 * p_floor[:, None]
        rents = p["r_K"] * K * (bill.sum() / n) * per_firm + np.bincount(firm_flat, ai_rent.ravel(), f)
        rent_share = p["xi"] * rents[wf["firm"]] / per_firm
        return w, b, factor, rents, rent_share, projected

    o = wf["cost"].shape[0]

    def aggregates(P):
        """x = (b0 + log factor, b1, b2, xi Pi_j/(N/F)), what the college choice depends on."""
        _, b, factor, rents, _, _ = market(P)
        return np.concatenate([b[:, 0] + np.log(factor), b[:, 1], b[:, 2], p["xi"] * rents / per_firm])

    def choose(x):
        coef = np.stack([x[:o], x[o:2 * o], x[2 * o:3 * o]], axis=1)
        income = np.exp(_fitted(coef, lq)) + x[3 * o:][wf["firm"]][None]
        return _sigmoid((np.log(income[1] / income[0]) - wf["cost"]) / p["tau"])

    d = settings["fp_damping"]
    if settings.get("fp_solver", "damped") == "damped":
        P = np.full_like(wf["cost"], 0.4)
        it = 0
        r = choose(aggregates(P)) - P
        while it < settings["fp_max_iter"] and np.max(np.abs(r)) > settings["fp_tol"]:
            P = P + d * r
            r = choose(aggregates(P)) - P
            it += 1
    else:  # Anderson acceleration in the space of the aggregates, as jaxmodel.education
        P, r, it = _anderson(aggregates, choose, aggregates(np.full_like(wf["cost"], 0.4)), p["tau"], o, settings)
    w, b, factor, rents, rent_share, projected = market(P)
    income = projected * factor[None, :, None] + rent_share[None]
    log_income = np.log(income)
    mass = p["owner_share"] * n / ((1 - p["owner_share"]) * f)
    owner = (1 - p["xi"]) * rents / mass
    gini = _gini(np.concatenate([income.ravel(), owner]), np.concatenate([w.ravel(), np.full(f, mass)]))
    # Task statistics from per-occupation sums (about hbar, cbar).
    total = w.sum()
    h_bar, c_bar = (w * h).sum() / total, (w * access).sum() / total
    dh, dc = h - h_bar, access - c_bar
    sums = {k: omega.T @ (w * v).sum((0, 2)) for k, v in
            {"w": np.ones_like(h), "h": dh, "c": dc, "hh": dh * dh, "hc": dh * dc, "cc": dc * dc}.items()}
    shift = (phi * sums["h"] + floor * sums["c"]) / sums["w"]
    second = (phi**2 * sums["hh"] + 2 * phi * floor * sums["hc"] + floor**2 * sums["cc"]) / sums["w"]
    task_mean = phi * h_bar + floor * c_bar + shift
    task_cv_all = np.sqrt(second - shift**2) / task_mean
    # Within firms (what m1 compares): per-(firm, occupation) sums of w, w dh, w dc about each firm's
    # own mean h and c give each firm's task means; the squares pool over firms per occupation.
    n_occ = omega.shape[0]
    cell = (wf["firm"] * n_occ + np.arange(n_occ)[:, None]).ravel()

    def by_cell(v):
        return np.bincount(cell, v.sum(0).ravel(), f * n_occ).reshape(f, n_occ)

    count = by_cell(w)
    fw = count.sum(1)
    dh = h - ((by_cell(w * h).sum(1) / fw)[wf["firm"]])[None]
    dc = access - ((by_cell(w * access).sum(1) / fw)[wf["firm"]])[None]
    W = count @ omega
    L = (by_cell(w * dh) @ omega) * phi + (by_cell(w * dc) @ omega) * floor
    Q = (phi**2 * ((w * dh * dh).sum((0, 2)) @ omega) + 2 * phi * floor * ((w * dh * dc).sum((0, 2)) @ omega)
         + floor**2 * ((w * dc * dc).sum((0, 2)) @ omega))
    task_cv = np.sqrt((Q - np.sum(L**2 / W, axis=0)) / W.sum(0)) / task_mean
    abar = omega @ a
    diag = _projection(log_h, s, w)[:, 2]
    # Credential support: both credential values held by >= 5 expected agents (full at 10).
    support = np.clip(np.minimum(w[0].sum(1), w[1].sum(1)) / 5.0 - 1.0, 0.0, 1.0)
    sw = w.sum((0, 2))
    ms, mh = (w * s).sum((0, 2)) / sw, (w * log_h).sum((0, 2)) / sw
    cov = (w * s * log_h).sum((0, 2)) / sw - ms * mh
    v_d = cov**2 / (((w * s * s).sum((0, 2)) / sw - ms**2) * ((w * log_h**2).sum((0, 2)) / sw - mh**2))
    x, wx = log_income.ravel(), w.ravel()
    mean = np.sum(wx * x) / wx.sum()
    firm_branch = np.broadcast_to(wf["firm"][None], w.shape).ravel()
    gw = np.bincount(firm_branch, wx, f)
    gdev = np.bincount(firm_branch, wx * (x - mean), f) / np.where(gw > 0, gw, 1)
    worker_total, owner_total = (w * income).sum(), (1 - p["xi"]) * rents.sum()
    return {
        "task_mean": task_mean, "task_cv": task_cv, "task_cv_all_workers": task_cv_all, "exposure": a,
        "cv_within_firms": np.sum(a * task_cv) / a.sum(), "cv_all_workers": np.sum(a * task_cv_all) / a.sum(),
        "college_premium": (w[1] * log_income[1]).sum() / w[1].sum() - (w[0] * log_income[0]).sum() / w[0].sum(),
        "abar": abar, "support": support, "diag": diag,
        "diagnostic_variance": np.sum(abar * v_d) / abar.sum(),
        "between_firm_share": np.sum(gw * gdev**2) / np.sum(wx * (x - mean) ** 2),
        "gini": gini, "college_share": P.mean(), "capital_share": owner_total / (worker_total + owner_total),
        "fp_iterations": it, "fp_residual": float(np.max(np.abs(r))),
    }


def _anderson(aggregates, choose, x0, tau, o, settings, memory=5):
    """Anderson acceleration of x <- aggregates(choose(x)), then plain steps that verify
    max |Gamma(P) - P| <= fp_tol exactly (the algorithm of ``jaxmodel.education``)."""
    tol, d, max_iter = settings["fp_tol"], settings["fp_damping"], settings["fp_max_iter"]
    f_rents = x0.shape[0] - 3 * o
    weights = np.concatenate([np.ones(3 * o), np.full(f_rents, np.sqrt(3.0 * o / f_rents) / np.exp(np.max(x0[:o])))])
    x, P, it = x0, choose(x0), 0
    dF, dG, f_prev, g_prev, norm_prev = [], [], None, None, np.inf
    while it < max_iter:
        g = aggregates(P)
        f = (g - x) * weights
        norm = np.sqrt(f @ f)
        it += 1
        if not np.max(np.abs(f)) > tol * tau:
            x, P = g, choose(g)
            break
        if f_prev is not None:
            dF.append(f - f_prev), dG.append(g - g_prev)
            dF, dG = dF[-memory:], dG[-memory:]
        f_prev, g_prev = f, g
        if dF and norm >= norm_prev:
            dF, dG = [], []
            x = (1 - d) * x + d * g
        elif dF:
            A = np.stack(dF)
            gram = A @ A.T
            gram += np.eye(len(dF)) * (1e-12 * np.trace(gram) + 1e-300)
            gamma = np.linalg.solve(gram, A @ f)
            x = g - gamma @ np.stack(dG)
        else:
            x = g
        norm_prev = norm
        P = choose(x)
    g = aggregates(P)
    P_g = choose(g)
    r = P_g - P
    while it < max_iter and np.max(np.abs(r)) > tol:
        x, P = g, P_g
        g = aggregates(P)
        P_g = choose(g)
        r = P_g - P
        it += 1
    return P, r, it


def moments(params: dict, draws: dict, settings: dict) -> dict:
    """The six moments and per-state diagnostics (MODEL.md section 5), from NumPy arrays.

    Args:
        params: {name: float} for every MODEL.md parameter.
        draws: {"u_theta", "u_c", "u_o", "u_nu", "u_eps", "u_f": (N,), "u_K": (F,)} NumPy arrays.
        settings: {"n_firms", "n_tasks", "n_occupations", "spec", "fp_tol", "fp_max_iter", "fp_damping"} and
            optionally "fp_solver": "damped" (MODEL.md's iteration, the default here: what a user writes
            from the paper) or "anderson" (jaxmodel's algorithm, for a like-for-like comparison).
    """
    wf = _workforce(params, draws, settings["n_firms"], settings["n_occupations"])
    before = _state(params, wf, draws["u_K"], 0.0, settings)
    after = _state(params, wf, draws["u_K"], params["A1"], settings)
    a = after["exposure"]

    def change(key):
        return np.sum(a * (after[key] / before[key] - 1)) / a.sum()

    # Credential reliance on the occupations with both credentials in both states.
    weight = before["abar"] * np.minimum(before["support"], after["support"])
    for state in (before, after):
        state["credential_reliance"] = np.sum(weight * state["diag"]) / weight.sum() if weight.sum() > 0 else 0.0
        state["credential_occupations"] = np.minimum(before["support"], after["support"]).sum()

    out = {
        "cv_change": change("task_cv"), "productivity_gain": change("task_mean"),
        "college_premium_change": after["college_premium"] - before["college_premium"],
        "credential_reliance_change": after["credential_reliance"] - before["credential_reliance"],
        "between_firm_share_change": after["between_firm_share"] - before["between_firm_share"],
        "gini_change": after["gini"] - before["gini"],
        "cv_change_all_workers": change("task_cv_all_workers"),
    }
    for key in ("cv_within_firms", "cv_all_workers", "gini", "college_share", "between_firm_share", "capital_share", "diagnostic_variance",
                "college_premium", "credential_reliance", "credential_occupations", "fp_residual",
                "fp_iterations"):
        out[f"{key}_before"], out[f"{key}_after"] = before[key], after[key]
    return out


def vector(params: dict, draws: dict, settings: dict) -> np.ndarray:
    """The six moments as a (6,) array."""
    m = moments(params, draws, settings)
    return np.array([m[k] for k in MOMENT_NAMES])


def from_jax(params, draws, settings) -> tuple[dict, dict, dict]:
    """(params, draws, settings) of this module from jaxmodel's objects."""
    import dataclasses

    return (
        {k: float(v) for k, v in params.to_dict().items()},
        {f.name: np.asarray(getattr(draws, f.name), dtype=np.float64) for f in dataclasses.fields(draws)},
        {"n_firms": settings.n_firms, "n_tasks": settings.n_tasks, "n_occupations": settings.n_occupations,
         "spec": settings.spec, "fp_tol": settings.fp_tol, "fp_max_iter": settings.fp_max_iter,
         "fp_damping": settings.fp_damping, "fp_solver": settings.fp_solver},
    )
