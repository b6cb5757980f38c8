"""Rotation on an f-plane: the Coriolis force of the wind's departure from geostrophy."""

from __future__ import annotations

import jax.numpy as jnp

from xlex.core import operators as op
from xlex.core.errors import OptionTypeError
from xlex.core.physics.scheme import PhysicsScheme, check_number, parameter, scheme
from xlex.core.state import State


def coriolis_tendency(state: State, f, geostrophic_u, geostrophic_v) -> State:
    """f k x (u - u_g): du/dt = f (v - v_g), dv/dt = -f (u - u_g), with four-point
    averages of the other wind component."""
    v_at_u = op.interp_x_centre_to_face(op.interp_y_face_to_centre(state.v))
    u_at_v = op.interp_y_centre_to_face(op.interp_x_face_to_centre(state.u))
    zero = jnp.zeros_like(state.th)
    return State(u=f * (v_at_u - geostrophic_v), v=-f * (u_at_v - geostrophic_u),
                 w=jnp.zeros_like(state.w), th=zero, qv=zero, pi=zero)


@scheme
class FPlane(PhysicsScheme):
    """Coriolis force on an f-plane, balanced by a geostrophic wind.

    Parameters
    ----------
    f : float
        Coriolis parameter [s-1] (1e-4 at 43 N).
    geostrophic_wind : (float, float)
        Geostrophic wind (u_g, v_g) [m s-1] whose Coriolis force is balanced by
        the large-scale pressure gradient.
    """

    f: float = parameter(1e-4)
    geostrophic_wind: tuple = parameter((0.0, 0.0))

    def __post_init__(self):
        check_number("FPlane", "f", self.f, low=-1.0, high=1.0, unit="s-1")
        wind = self.geostrophic_wind
        if not isinstance(wind, (tuple, list)) or len(wind) != 2:
            raise OptionTypeError("FPlane(geostrophic_wind=...) must be a pair (u_g, v_g) in "
                               f"m s-1, got {wind!r}")
        object.__setattr__(self, "geostrophic_wind", tuple(wind))
        for name, value in zip(("u_g", "v_g"), wind, strict=True):
            check_number("FPlane", f"geostrophic_wind {name}", value, unit="m s-1")

    def tendency(self, state, prepared, base, grid):
        ug, vg = self.geostrophic_wind
        return coriolis_tendency(state, self.f, ug, vg)
