"""Terms of the dynamics that every model has: buoyancy.

Advection is a scheme (:class:`xlex.core.dynamics.numerics.Advection`); the
pressure-gradient force is applied by the projection
(:mod:`xlex.core.dynamics.pressure`).
"""

from __future__ import annotations

import jax.numpy as jnp

from xlex.core import operators as op
from xlex.core import thermo
from xlex.core.state import BaseState, State


def buoyancy(state: State, base: BaseState) -> State:
    """Buoyancy (paper eq. 8) on the interior w faces."""
    b = thermo.buoyancy(state.th, state.qv, base)
    w_t = op.zero_walls(op.interp_z_centre_to_face(b))
    zero = jnp.zeros_like(state.th)
    return State(u=jnp.zeros_like(state.u), v=jnp.zeros_like(state.v), w=w_t, th=zero,
                 qv=zero, pi=zero)
