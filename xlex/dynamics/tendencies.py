"""The sum of the explicit terms of the momentum and scalar equations.

Each term is a pure function of the state; the pressure-gradient force is not
here: it is applied by the projection (:mod:`xlex.dynamics.pressure`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xlex import operators as op
from xlex import thermo
from xlex.config import ModelConfig
from xlex.dynamics.advection import advection_tendencies
from xlex.grid import Grid
from xlex.state import BaseState, State


def advection(state: State, base: BaseState, grid: Grid, config: ModelConfig) -> State:
    """Flux-form WENO advection of u, v, w, th and qv."""
    u_t, v_t, w_t, th_t, qv_t = advection_tendencies(
        state.u, state.v, state.w, state.th, state.qv, base.mass, base.mass_faces,
        grid.dx, grid.dy, grid.dz, order_z=config.vertical_order, eps=config.weno_epsilon,
        linear_momentum=config.momentum_advection == "upwind5")
    return State(u=u_t, v=v_t, w=w_t, th=th_t, qv=qv_t, pi=jnp.zeros_like(state.pi))


def buoyancy(state: State, base: BaseState, grid: Grid, config: ModelConfig) -> State:
    """Buoyancy (paper eq. 8) on the interior w faces."""
    b = thermo.buoyancy(state.th, state.qv, base)
    w_t = op.zero_walls(op.interp_z_centre_to_face(b))
    zero = jnp.zeros_like(state.th)
    return State(u=jnp.zeros_like(state.u), v=jnp.zeros_like(state.v), w=w_t, th=zero,
                 qv=zero, pi=zero)


def coriolis(state: State, base: BaseState, grid: Grid, config: ModelConfig) -> State:
    """f k x (u - u_g): four-point averages of the other wind component."""
    f = config.coriolis
    v_at_u = op.interp_x_centre_to_face(op.interp_y_face_to_centre(state.v))
    u_at_v = op.interp_y_centre_to_face(op.interp_x_face_to_centre(state.u))
    zero = jnp.zeros_like(state.th)
    return State(u=f * (v_at_u - config.geostrophic_v), v=-f * (u_at_v - config.geostrophic_u),
                 w=jnp.zeros_like(state.w), th=zero, qv=zero, pi=zero)


def dynamics_tendency(state: State, base: BaseState, grid: Grid, config: ModelConfig) -> State:
    """Sum of the explicit terms (everything but the pressure-gradient force)."""
    terms = [advection, buoyancy]
    if config.coriolis != 0.0:
        terms.append(coriolis)
    total = terms[0](state, base, grid, config)
    for term in terms[1:]:
        total = jax.tree.map(jnp.add, total, term(state, base, grid, config))
    return total
