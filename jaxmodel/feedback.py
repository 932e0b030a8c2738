"""How the labour market feeds back on education: the Jacobian D of x -> market(choice(x)).

The education fixed point lives in the 3 O + F aggregates x (``jaxmodel.education``). Its Newton
steps and its implicit-function derivatives need the square matrix

    D = d market(choice(x)) / dx,   (3 O + F, 3 O + F),

which this module assembles exactly in one pass over the agents, never with one tangent per column.
Two facts make that possible:

1. Agent i's choice P_i depends on four entries of x only: its occupation's b_o0 + log factor_o,
   b_o1 and b_o2 and its firm's rent xi Pi_j/(N/F). Four tangents that move a whole block at once
   (every occupation's level, say) therefore give every agent's four partial derivatives
   dP_i/dx_(b, o(i)) and dP_i/drent_(j(i)): ``sens``, four (O, M) arrays.
2. ``market`` reaches P through sums (``jaxmodel.market.clear_market``): per-occupation sums of
   worker-branch terms in three passes, and per-firm sums of the AI rents, joined by small dense
   algebra. The terms of a pass depend on P_i and on per-occupation quantities g_o of earlier passes
   (the price indices, the projection's coefficients). So the derivative of an occupation's sum in
   the column of occupation o' and block b is zero unless o' = o; that of a rent column j needs the
   sums over the agents of occupation o and firm j, an (O, F) table; and the dependence through g
   needs each term's derivative in each component of g_o, summed by occupation (or by occupation and
   firm for the firms' sums).

Every such table is computed by ``jax.jvp`` of the pass's terms with one of a few tangents
(``sens`` or a unit change of one component of every g_o), summed by occupation or by
occupation-and-firm cell. The dense algebra between passes (task prices, the normal equations,
wage factors and rents) is then differentiated by ``jax.jvp`` in all 3 O + F columns at once: it
involves no agent. Memory is O(F (O + T)) beyond the agents' own arrays; no N x T array is formed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodel import market as mk
from jaxmodel import screening
from jaxmodel.aggregation import occupation_sums
from jaxmodel.settings import Settings

__all__ = ["feedback_jacobian"]


#: Terms scattered together into the (occupation, firm) cells: the stacked (O, M, group) array is the
#: largest per-agent intermediate, so a group of 4 keeps it at 4 N elements, the model's own bound.
CELL_GROUP = 4


def _cell_sums(terms, econ: mk.Economy, settings: Settings) -> jax.Array:
    """Sums of (2, O, M) terms over the branches and the agents of each (occupation, firm) cell.

    Returns:
        (n_terms, O, F).
    """
    o, f = settings.n_occupations, settings.n_firms
    cell = (jnp.arange(o, dtype=econ.firm.dtype)[:, None] * f + econ.firm).reshape(-1)
    out = []
    for start in range(0, len(terms), CELL_GROUP):
        group = terms[start:start + CELL_GROUP]
        stacked = jnp.stack([jnp.sum(t, axis=0) for t in group], axis=-1)  # (O, M, <= CELL_GROUP)
        sums = jax.ops.segment_sum(stacked.reshape(-1, len(group)), cell, o * f)
        out.append(sums.reshape(o, f, len(group)).transpose(2, 0, 1))
    return jnp.concatenate(out, axis=0)


def _occupation_stack(terms) -> jax.Array:
    """Occupation sums of (2, O, M) terms: (n_terms, O)."""
    return jnp.stack(occupation_sums(*terms))


def _tangent(fun, primal, tangent):
    """The tangent of ``fun`` at ``primal`` along ``tangent`` (a tuple of arrays)."""
    return jax.jvp(fun, (primal,), (tangent,))[1]


def _unit_changes(g: jax.Array) -> list[jax.Array]:
    """One tangent per component m of per-occupation quantities g (O, n_g): ones in column m."""
    return [jnp.zeros_like(g).at[:, m].set(1.0) for m in range(g.shape[1])]


def _occupation_columns(terms_of_P, terms_of_g, P, g, dg, sens, econ, settings) -> jax.Array:
    """d (occupation sums of a pass's terms) / dx: (C, n_terms, O), C = 3 O + F columns.

    Args:
        terms_of_P: P -> tuple of (2, O, M) terms at fixed g; terms_of_g: g -> the same at fixed P.
        g: (O, n_g) per-occupation inputs of the terms (or None); dg: (C, O, n_g) their derivatives.
        sens: four (O, M) arrays dP_i/dx in blocks level, b1, b2 and rent.
    """
    eye = jnp.eye(settings.n_occupations, dtype=P.dtype)
    blocks = []
    for b in range(3):
        occ = _occupation_stack(_tangent(terms_of_P, P, sens[b]))  # (n, O): column (b, o) moves sum o only
        blocks.append(jnp.einsum("no,op->pno", occ, eye))
    rent = _cell_sums(_tangent(terms_of_P, P, sens[3]), econ, settings)  # (n, O, F): column j, sum o
    blocks.append(rent.transpose(2, 0, 1))
    direct = jnp.concatenate(blocks, axis=0)
    if g is None:
        return direct
    per_g = jnp.stack([_occupation_stack(_tangent(terms_of_g, g, u)) for u in _unit_changes(g)])  # (n_g, n, O)
    return direct + jnp.einsum("mno,com->cno", per_g, dg)


def _firm_columns(term_of_P, term_of_g, P, g, dg, sens, econ, settings) -> jax.Array:
    """d (firm sums of one (2, O, M) term) / dx: (C, F); g (O, n_g) and dg (C, O, n_g) as above."""
    cells = _cell_sums([_tangent(term_of_P, P, sens[b])[0] for b in range(3)], econ, settings)  # (3, O, F)
    own = mk.firm_sums(_tangent(term_of_P, P, sens[3])[0], econ, settings)  # (F,): column j moves firm j only
    direct = jnp.concatenate([cells.reshape(-1, settings.n_firms), jnp.diag(own)], axis=0)
    per_g = jnp.stack([_cell_sums(_tangent(term_of_g, g, u), econ, settings)[0] for u in _unit_changes(g)])
    return direct + jnp.einsum("moj,com->cj", per_g, dg)


def _push(fun, primals: tuple, tangents: tuple):
    """The tangents of ``fun`` at ``primals`` in every column: tangents carry a leading C axis."""
    return jax.vmap(lambda *t: jax.jvp(fun, primals, t)[1])(*tangents)


def feedback_jacobian(params, econ: mk.Economy, x: jax.Array, settings: Settings):
    """market(choice(x)) and its Jacobian D in x, assembled in one pass over the agents.

    Args:
        x: (C,) aggregates, C = 3 O + F (``jaxmodel.education.aggregates``).

    Returns:
        (g, D): g = market(choice(x)) (C,) and D (C, C) with D[r, c] = d g_r / d x_c.
    """
    from jaxmodel.education import aggregates_of, choice  # the module that owns the fixed point

    o, f = settings.n_occupations, settings.n_firms
    dtype = x.dtype

    def choose(z):
        return choice(params, econ, z, settings)

    P = choose(x)
    block = np.repeat(np.arange(4), [o, o, o, f])
    sens = [_tangent(choose, x, (block == b).astype(dtype)) for b in range(4)]
    w = mk.branch_weights(P)

    # Pass 1: supplies -> price indices g1 = (P^phi_o, P^F_o).
    H, C = occupation_sums(*mk.supply_terms(econ, w))
    d_supply = _occupation_columns(lambda p: mk.supply_terms(econ, mk.branch_weights(p)), None, P, None, None,
                                   sens, econ, settings)

    def indices(H, C):
        _, _, price_phi, price_floor = mk.price_indices(params, econ, H, C, settings)
        return jnp.stack([price_phi, price_floor], axis=1)

    g1 = indices(H, C)
    dg1 = _push(indices, (H, C), (d_supply[:, 0], d_supply[:, 1]))  # (C, O, 2)

    # Pass 2: the normal equations of the projection -> b_o.
    def projection(p, g):
        mpc = mk.commodity_products(params, econ, g[:, 0], g[:, 1])
        return screening.projection_terms(jnp.log(mpc), econ.signal, mk.branch_weights(p))

    normal = _occupation_stack(projection(P, g1))
    d_normal = _occupation_columns(lambda p: projection(p, g1), lambda g: projection(P, g), P, g1, dg1,
                                   sens, econ, settings)
    coef = screening.projection_coef(normal)
    dcoef = _push(screening.projection_coef, (normal,), (d_normal,))  # (C, O, 3)

    # Pass 3: wage bills and AI rents -> the aggregates.
    g3 = jnp.concatenate([g1, coef], axis=1)  # (O, 5)
    dg3 = jnp.concatenate([dg1, dcoef], axis=2)

    def bills(p, g):
        mpc = mk.commodity_products(params, econ, g[:, 0], g[:, 1])
        return mk.bill_terms(econ, mk.branch_weights(p), mpc, g[:, 2:])

    def rent(p, price_floor):
        return (mk.rent_terms(econ, mk.branch_weights(p), price_floor[:, 0]),)

    bill, projected_bill = occupation_sums(*bills(P, g3))
    d_bills = _occupation_columns(lambda p: bills(p, g3), lambda g: bills(P, g), P, g3, dg3, sens, econ, settings)
    # The AI rents depend on P^F_o alone among the g_o.
    floor, d_floor = g1[:, 1:2], dg1[:, :, 1:2]
    ai_rents = mk.firm_sums(rent(P, floor)[0], econ, settings)
    d_rents = _firm_columns(lambda p: rent(p, floor), lambda g: rent(P, g), P, floor, d_floor, sens, econ, settings)

    def close(coef, bill, projected_bill, ai_rents):
        wage_factor, _, rents = mk.settle(params, econ, bill, projected_bill, ai_rents, settings)
        return aggregates_of(params, coef, wage_factor, rents, settings)

    primals = (coef, bill, projected_bill, ai_rents)
    g = close(*primals)
    dx = _push(close, primals, (dcoef, d_bills[:, 0], d_bills[:, 1], d_rents))  # (C in, C out)
    return g, dx.T
