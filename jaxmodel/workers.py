"""Workers (MODEL.md section 4): ability, education cost, and sorting into occupations and firms.

Workers are laid out in occupation order: the (N,) draws are permuted so that occupation o holds
positions o M .. (o + 1) M - 1 (M = N/O), and every per-agent array has shape (O, M). Reductions
over an occupation are then sums over the last axis; reductions over firms are segment sums on
the firm index of each agent. Assignments depend on ranks of the draws only, so they do not
move with the parameters that enter the objective's derivatives.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxmodel.draws import Draws
from jaxmodel.settings import Settings
from jaxmodel.sorting import argsort, rank_groups


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Workforce:
    """Per-agent draws and assignments in occupation order.

    Attributes:
        log_theta: (O, M) log ability, sigma_theta u_theta - sigma_theta^2/2.
        cost: (O, M) education cost c_i = c_bar - zeta log theta_i + sigma_c u_c_i.
        log_nu: (O, M) log AI contribution, sigma_nu u_nu - sigma_nu^2/2.
        u_eps: (O, M) signal noise draw.
        firm: (O, M) int32 firm index j in [0, F), firms ordered by assets.
    """

    log_theta: jax.Array
    cost: jax.Array
    log_nu: jax.Array
    u_eps: jax.Array
    firm: jax.Array


def sorting_score(u_theta: jax.Array, u_other: jax.Array, rho) -> jax.Array:
    """rho u_theta + sqrt(1 - rho^2) u_other: the index by which workers are ranked (N,)."""
    return rho * u_theta + jnp.sqrt(jnp.maximum(1.0 - rho**2, 0.0)) * u_other


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Assignment:
    """Who works where: a function of the draws, rho_occ and rho_firm only.

    Attributes:
        order: (N,) int32 agents in occupation order (occupation o holds ranks o M .. (o+1) M - 1).
        firm: (N,) int32 firm of each agent, in draw order (firms ordered by assets).
    """

    order: jax.Array
    firm: jax.Array


def assignment(params, draws: Draws, settings: Settings) -> Assignment:
    """Rank workers into occupations and firms (two sorts of N; no derivative).

    Occupation: the lowest N/O of rho_occ u_theta + sqrt(1 - rho_occ^2) u_o go to occupation 1
    (the lowest task centre), and so on. Firm: the lowest N/F of
    rho_firm u_theta + sqrt(1 - rho_firm^2) u_f go to the firm with the lowest assets, and so on.
    An estimation in which neither rho_occ nor rho_firm is free computes this once
    (``jaxmodel.assign``) and passes it to every evaluation.
    """
    occ_score = sorting_score(draws.u_theta, draws.u_o, jax.lax.stop_gradient(params.rho_occ))
    firm_score = sorting_score(draws.u_theta, draws.u_f, jax.lax.stop_gradient(params.rho_firm))
    return Assignment(order=argsort(occ_score), firm=rank_groups(firm_score, settings.n_firms))


def workforce(params, draws: Draws, settings: Settings, assigned: Assignment | None = None) -> Workforce:
    """Lay workers out in occupation order with their abilities, costs and firms.

    ``assigned`` is the :func:`assignment` at these draws and params.rho_occ, rho_firm (computed
    here when None).
    """
    o, m = settings.n_occupations, settings.agents_per_occupation
    if assigned is None:
        assigned = assignment(params, draws, settings)
    order, firm = assigned.order, assigned.firm

    def lay_out(x: jax.Array) -> jax.Array:
        return jnp.take(x, order).reshape(o, m)

    u_theta = lay_out(draws.u_theta)
    log_theta = params.sigma_theta * u_theta - params.sigma_theta**2 / 2.0
    return Workforce(
        log_theta=log_theta,
        cost=params.c_bar - params.zeta * log_theta + params.sigma_c * lay_out(draws.u_c),
        log_nu=params.sigma_nu * lay_out(draws.u_nu) - params.sigma_nu**2 / 2.0,
        u_eps=lay_out(draws.u_eps),
        firm=lay_out(firm),
    )
