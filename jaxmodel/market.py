"""The economy in one AI state and its labour market given college probabilities.

``economy`` fixes everything that does not depend on education choices: human capital, AI access,
the task floor F_k = alpha A a_k phi_k and the work-sample signals. ``clear_market`` then takes the
college probabilities P and returns task prices, marginal products, the wage projection, firm
rents and incomes (MODEL.md section 4).

Every sum over tasks factorises: task output is y_iek = h_ie phi_k + c_ie F_k with the per-branch
scalar c_ie = (chi0 + chi1_j) nu_i S(h_ie), so no (N, T) array is formed. Worker-branch arrays
are (2, O, M) (branch e, occupation, agent), per-agent arrays (O, M), task arrays (T,).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxmodel import firms, screening, tasks
from jaxmodel.aggregation import occupation_sums
from jaxmodel.settings import Settings
from jaxmodel.workers import Workforce


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Economy:
    """What one AI state fixes before education is chosen.

    Attributes:
        h: (2, O, M) human capital h_ie = theta_i (1 + gamma e).
        log_h: (2, O, M) log h_ie.
        ai_unit: (2, O, M) G_ie = nu_i S(h_ie), so AI output per unit of access is U_iek = F_k G_ie.
        access: (2, O, M) c_ie = (chi0 + chi1_j) G_ie, the AI coefficient of task output.
        chi1: (O, M) proprietary access of the agent's firm.
        signal: (2, O, M) s_ie - s_ref_o, the noisy work-sample signal, centred by occupation.
        foreseen_signal: (2, O, M) log q_ie - s_ref_o, the noise-free signal, same centre.
        cost: (O, M) education cost c_i.
        firm: (O, M) int32 firm index.
        phi: (T,) comparative advantage; floor: (T,) F_k; exposure: (T,) a_k.
        omega: (O, T) occupations' task weights.
        K: (F,) firm assets.
    """

    h: jax.Array
    log_h: jax.Array
    ai_unit: jax.Array
    access: jax.Array
    chi1: jax.Array
    signal: jax.Array
    foreseen_signal: jax.Array
    cost: jax.Array
    firm: jax.Array
    phi: jax.Array
    floor: jax.Array
    exposure: jax.Array
    omega: jax.Array
    K: jax.Array


def economy(params, workforce: Workforce, u_K: jax.Array, settings: Settings, A) -> Economy:
    """Build the economy at AI capability ``A`` (A = 0 before adoption, A = A1 after).

    q_ie = sum_k a~_k (h_ie phi_k + chi0 U_iek) with a~ = a / sum(a) is the work sample done with
    commodity AI only; s_ie = log q_ie + sigma_eps u_eps_i is what the employer observes.
    """
    dtype = settings.dtype
    z = tasks.task_grid(settings.n_tasks, dtype)
    phi = tasks.comparative_advantage(z, params.lam)
    a = tasks.exposure(z, params.z_lo, params.z_hi, params.w_a)
    floor = params.alpha * A * a * phi
    omega = tasks.occupation_weights(z, settings.n_occupations, params.b_occ)

    e = screening.credential(dtype)
    log_h = workforce.log_theta[None] + jnp.log1p(params.gamma * e)
    h = jnp.exp(log_h)
    ai_unit = jnp.exp(workforce.log_nu)[None] * tasks.augmentation(h, params, settings.spec)

    K, K_tilde = firms.assets(u_K, params.gini_K)
    chi1 = jnp.take(firms.proprietary_access(K_tilde, params.eta1, params.psi), workforce.firm)
    access = (params.eta0 + chi1)[None] * ai_unit

    a_tilde = a / jnp.sum(a)
    log_q = jnp.log(h * jnp.sum(a_tilde * phi) + params.eta0 * ai_unit * jnp.sum(a_tilde * floor))
    signal = log_q + params.sigma_eps * workforce.u_eps[None]
    centre = jnp.mean(jax.lax.stop_gradient(signal), axis=(0, 2))[None, :, None]
    return Economy(
        h=h,
        log_h=log_h,
        ai_unit=ai_unit,
        access=access,
        chi1=chi1,
        signal=signal - centre,
        foreseen_signal=log_q - centre,
        cost=workforce.cost,
        firm=workforce.firm,
        phi=phi,
        floor=floor,
        exposure=a,
        omega=omega,
        K=K,
    )


def branch_weights(P: jax.Array) -> jax.Array:
    """w_i0 = 1 - P_i, w_i1 = P_i: (2, O, M) from (O, M)."""
    return jnp.stack([1.0 - P, P])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Market:
    """The labour market at given college probabilities.

    Attributes:
        w: (2, O, M) branch weights.
        task_supply: (T,) Y_k; prices: (T,) p_k.
        mpc: (2, O, M) commodity marginal product MPc_ie.
        wage_coef: (O, 3) projection of log MPc on [1, s, e].
        wage_factor: (O,) factor making the occupation's wage bill equal sum w MPc.
        mean_wage: mean(w^c) over worker-branches.
        rents: (F,) firm rents Pi_j.
        rent_share: (O, M) xi Pi_j / (N/F), the rent paid to each worker of firm j.
    """

    w: jax.Array
    task_supply: jax.Array
    prices: jax.Array
    mpc: jax.Array
    wage_coef: jax.Array
    wage_factor: jax.Array
    mean_wage: jax.Array
    rents: jax.Array
    rent_share: jax.Array


def clear_market(params, econ: Economy, P: jax.Array, settings: Settings) -> Market:
    """Prices, marginal products, the wage projection and rents at college probabilities P.

    Y_k = (1/N) sum_i sum_e w_ie omega_{o(i)k} y_iek = sum_o omega_ok (H_o phi_k + C_o F_k) with
    H_o = (1/N) sum_{i in o, e} w_ie h_ie and C_o likewise for c_ie; p_k = dz (Y/Y_k)^(1/sigma);
    MPc_ie = h_ie P^phi_o + chi0 G_ie P^F_o and MPp_ie = chi1_j G_ie P^F_o with
    P^phi_o = sum_k omega_ok p_k phi_k and P^F_o = sum_k omega_ok p_k F_k.
    """
    n, per_firm = settings.n_agents, settings.agents_per_firm
    w = branch_weights(P)
    H, C = occupation_sums(w * econ.h, w * econ.access)
    task_supply = ((econ.omega.T @ H) * econ.phi + (econ.omega.T @ C) * econ.floor) / n
    prices = tasks.task_prices(task_supply, params.sigma)
    price_phi = econ.omega @ (prices * econ.phi)
    price_floor = econ.omega @ (prices * econ.floor)

    mpc = econ.h * price_phi[None, :, None] + params.eta0 * econ.ai_unit * price_floor[None, :, None]
    wage_coef = screening.weighted_projection(jnp.log(mpc), econ.signal, w)
    projected = jnp.exp(screening.fitted(wage_coef, econ.signal))
    bill, projected_bill = occupation_sums(w * mpc, w * projected)
    wage_factor = bill / projected_bill
    mean_wage = jnp.sum(bill) / n

    ai_rent = jnp.sum(w * econ.ai_unit, axis=0) * econ.chi1 * price_floor[:, None]
    ai_rents = jax.ops.segment_sum(ai_rent.reshape(-1), econ.firm.reshape(-1), settings.n_firms)
    rents = firms.firm_rents(econ.K, params.r_K, mean_wage, per_firm, ai_rents)
    rent_share = params.xi * jnp.take(rents, econ.firm) / per_firm
    return Market(
        w=w,
        task_supply=task_supply,
        prices=prices,
        mpc=mpc,
        wage_coef=wage_coef,
        wage_factor=wage_factor,
        mean_wage=mean_wage,
        rents=rents,
        rent_share=rent_share,
    )


def wages(econ: Economy, market: Market) -> jax.Array:
    """w^c_ie = exp([1, s_ie, e] b_o) factor_o: (2, O, M) commodity wages from the projection."""
    projected = jnp.exp(screening.fitted(market.wage_coef, econ.signal))
    return projected * market.wage_factor[None, :, None]


def foreseen_incomes(econ: Economy, market: Market) -> jax.Array:
    """W~_ie = exp([1, log q_ie, e] b_o) factor_o + xi Pi_j/(N/F): (2, O, M).

    The income an agent can foresee: the wage projection at its noise-free signal plus its rent.
    """
    projected = jnp.exp(screening.fitted(market.wage_coef, econ.foreseen_signal))
    return projected * market.wage_factor[None, :, None] + market.rent_share[None]
