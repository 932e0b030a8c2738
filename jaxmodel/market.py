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


def supply_terms(econ: Economy, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """w_ie h_ie and w_ie c_ie, (2, O, M) each: summed by occupation they are N H_o and N C_o."""
    return w * econ.h, w * econ.access


def price_indices(params, econ: Economy, H: jax.Array, C: jax.Array, settings: Settings):
    """Task supplies, prices and the occupations' price indices from N H_o and N C_o, (O,) each.

    Y_k = sum_o omega_ok (H_o phi_k + C_o F_k) / N, p_k = dz (Y/Y_k)^(1/sigma),
    P^phi_o = sum_k omega_ok p_k phi_k and P^F_o = sum_k omega_ok p_k F_k.

    Returns:
        (task_supply (T,), prices (T,), price_phi (O,), price_floor (O,)).
    """
    task_supply = ((econ.omega.T @ H) * econ.phi + (econ.omega.T @ C) * econ.floor) / settings.n_agents
    prices = tasks.task_prices(task_supply, params.sigma)
    return task_supply, prices, econ.omega @ (prices * econ.phi), econ.omega @ (prices * econ.floor)


def commodity_products(params, econ: Economy, price_phi: jax.Array, price_floor: jax.Array) -> jax.Array:
    """MPc_ie = h_ie P^phi_o + chi0 G_ie P^F_o: (2, O, M)."""
    return econ.h * price_phi[None, :, None] + params.eta0 * econ.ai_unit * price_floor[None, :, None]


def bill_terms(econ: Economy, w: jax.Array, mpc: jax.Array, wage_coef: jax.Array) -> tuple[jax.Array, jax.Array]:
    """w MPc and w exp([1, s, e] b_o), (2, O, M): summed by occupation, the wage bill and the
    projected wage bill whose ratio is the occupation's wage factor."""
    return w * mpc, w * jnp.exp(screening.fitted(wage_coef, econ.signal))


def rent_terms(econ: Economy, w: jax.Array, price_floor: jax.Array) -> jax.Array:
    """w_ie MPp_ie = w_ie chi1_j G_ie P^F_o, (2, O, M): summed by firm, the AI rents of the firm."""
    return w * econ.ai_unit * (econ.chi1 * price_floor[:, None])[None]


def firm_sums(term: jax.Array, econ: Economy, settings: Settings) -> jax.Array:
    """sum over the branches and the agents of each firm of a (2, O, M) term: (F,)."""
    return jax.ops.segment_sum(jnp.sum(term, axis=0).reshape(-1), econ.firm.reshape(-1), settings.n_firms)


def settle(params, econ: Economy, bill: jax.Array, projected_bill: jax.Array, ai_rents: jax.Array,
           settings: Settings) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Wage factors, the mean wage and firm rents from the occupations' bills and the firms' AI rents.

    factor_o = bill_o / projected_bill_o, mean(w^c) = sum_o bill_o / N and
    Pi_j = r_K K_j mean(w^c) (N/F) + ai_rents_j.

    Returns:
        (wage_factor (O,), mean_wage (), rents (F,)).
    """
    mean_wage = jnp.sum(bill) / settings.n_agents
    rents = firms.firm_rents(econ.K, params.r_K, mean_wage, settings.agents_per_firm, ai_rents)
    return bill / projected_bill, mean_wage, rents


def clear_market(params, econ: Economy, P: jax.Array, settings: Settings) -> Market:
    """Prices, marginal products, the wage projection and rents at college probabilities P.

    Three passes over the agents, each a set of sums followed by small dense algebra:
    1. N H_o = sum_{i in o, e} w_ie h_ie and N C_o likewise for c_ie (:func:`supply_terms`) give
       the task prices and the price indices P^phi_o, P^F_o (:func:`price_indices`);
    2. the normal equations of the projection of log MPc on [1, s, e] give b_o
       (``screening.projection_terms``, ``screening.projection_coef``);
    3. the wage bills (:func:`bill_terms`) and the firms' AI rents (:func:`rent_terms`) give the wage
       factors, the mean wage and the rents (:func:`settle`), with MPp_ie = chi1_j G_ie P^F_o.
    ``jaxmodel.feedback`` differentiates the same passes.
    """
    w = branch_weights(P)
    H, C = occupation_sums(*supply_terms(econ, w))
    task_supply, prices, price_phi, price_floor = price_indices(params, econ, H, C, settings)
    mpc = commodity_products(params, econ, price_phi, price_floor)
    wage_coef = screening.projection_coef(occupation_sums(*screening.projection_terms(jnp.log(mpc), econ.signal, w)))
    bill, projected_bill = occupation_sums(*bill_terms(econ, w, mpc, wage_coef))
    ai_rents = firm_sums(rent_terms(econ, w, price_floor), econ, settings)
    wage_factor, mean_wage, rents = settle(params, econ, bill, projected_bill, ai_rents, settings)
    rent_share = params.xi * jnp.take(rents, econ.firm) / settings.agents_per_firm
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
