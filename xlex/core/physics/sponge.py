"""A sponge under the lid: Rayleigh damping over the top of the domain.

Waves that reach the rigid lid reflect back into the domain; a damping layer
absorbs them (Klemp and Lilly 1978; CM1's ``irdamp``, LEX's sponge). Above
``z_s = z_top - depth`` a field ``q`` relaxes towards its reference ``q_ref``::

    dq/dt = -r(z) (q - q_ref),   r(z) = sin^2(pi/2 (z - z_s) / depth) / timescale,

so the damping rises smoothly from zero at the bottom of the layer (a sudden
start would itself reflect waves) to ``1 / timescale`` at the lid. ``w`` is
damped towards 0; optionally ``u`` and ``v`` towards their horizontal mean at
each level (the base state holds no wind, and the mean wind is the large-scale
flow a sponge should keep) and ``th`` towards the base state th0.
"""

from __future__ import annotations

import jax.numpy as jnp

from xlex.core import operators as op
from xlex.core.errors import OptionError
from xlex.core.physics.scheme import PhysicsScheme, check_flag, check_number, parameter, scheme
from xlex.core.state import State


def damping_rate(z, z_top, depth, timescale):
    """r(z) [s-1] of the module docstring at heights ``z`` [m]."""
    x = jnp.clip((z - (z_top - depth)) / depth, 0.0, 1.0)
    return jnp.sin(0.5 * jnp.pi * x) ** 2 / timescale


@scheme
class Sponge(PhysicsScheme):
    """Rayleigh damping layer under the lid (see the module docstring).

    Parameters
    ----------
    depth : float
        Depth of the layer [m], below the domain top (e.g. 3000 m of a 12 km
        domain); at most the domain height.
    timescale : float
        e-folding time of the damping at the lid [s] (e.g. 300 s, CM1's
        ``rdalpha`` = 1/300 s-1). Keep it above a few time steps.
    damp_horizontal_wind : bool
        Also damp u and v towards their horizontal mean (default False).
    damp_theta : bool
        Also damp th towards the base state th0 (default False).
    """

    depth: float = parameter(3000.0)
    timescale: float = parameter(300.0)
    damp_horizontal_wind: bool = False
    damp_theta: bool = False

    def __post_init__(self):
        check_number("Sponge", "depth", self.depth, low=0.0, low_open=True, unit="m")
        check_number("Sponge", "timescale", self.timescale, low=0.0, low_open=True, unit="s")
        check_flag("Sponge", "damp_horizontal_wind", self.damp_horizontal_wind)
        check_flag("Sponge", "damp_theta", self.damp_theta)

    def check(self, grid):
        top = grid.nz * grid.dz
        if float(self.depth) > top:
            raise OptionError(f"Sponge(depth={float(self.depth):g}) is deeper than the domain "
                              f"({top:g} m); use a depth of at most a third of it or so")

    def tendency(self, state, prepared, base, grid):
        top = grid.nz * grid.dz
        z_faces = jnp.arange(grid.nz + 1, dtype=state.w.dtype) * grid.dz
        z_centres = (jnp.arange(grid.nz, dtype=state.th.dtype) + 0.5) * grid.dz
        r_faces = damping_rate(z_faces, top, self.depth, self.timescale)
        r_centres = op.column(damping_rate(z_centres, top, self.depth, self.timescale))
        zero_c = jnp.zeros_like(state.th)
        w_t = op.zero_walls(-op.column(r_faces) * state.w)
        u_t, v_t, th_t = jnp.zeros_like(state.u), jnp.zeros_like(state.v), zero_c
        if self.damp_horizontal_wind:
            u_t = -r_centres * (state.u - jnp.mean(state.u, axis=(-2, -1), keepdims=True))
            v_t = -r_centres * (state.v - jnp.mean(state.v, axis=(-2, -1), keepdims=True))
        if self.damp_theta:
            th_t = -r_centres * (state.th - op.column(base.th0))
        return State(u=u_t, v=v_t, w=w_t, th=th_t, qv=zero_c, pi=jnp.zeros_like(state.pi))
