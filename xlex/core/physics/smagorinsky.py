"""Smagorinsky-Lilly eddy viscosity and the subgrid tendencies it drives::

    K_m = (cs Delta)^2 sqrt(max(|S|^2 - N^2 / Pr, 0)),  Delta = (dx dy dz)^(1/3),
    |S|^2 = 2 S_ij S_ij,  K_h = K_m / Pr.

Strain components live where the C grid puts them: S11, S22, S33 at cell
centres, S12 on vertical edges (zh, yf, xf), S13 on (zf, yh, xf), S23 on
(zf, yf, xh). The free-slip walls have zero tangential stress (S13 = S23 = 0
there, since du/dz and w vanish) and zero scalar flux. Fluxes are weighted by
the pseudo-density m = rho0 thrho0, the weight the advection conserves, so
that sum(m q dV) of th and qv is conserved exactly with subgrid mixing on.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from xlex.core import constants, thermo
from xlex.core import operators as op
from xlex.core.grid import Grid
from xlex.core.physics.scheme import PhysicsScheme, check_flag, check_number, parameter, scheme
from xlex.core.state import BaseState, State

#: Output fields of the eddy-viscosity schemes.
EDDY_OUTPUTS = {
    "km": (("zh", "yh", "xh"), {"units": "m2 s-1", "long_name": "subgrid eddy viscosity"}),
    "kh": (("zh", "yh", "xh"), {"units": "m2 s-1", "long_name": "subgrid eddy diffusivity"}),
}


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EddyDiffusivity:
    """Eddy viscosity ``km`` and diffusivity ``kh`` at cell centres [m2 s-1]."""

    km: jax.Array
    kh: jax.Array


def strain_rates(u, v, w, grid: Grid):
    """The six strain-rate components on their own C-grid locations [s-1]:
    (s11, s22, s33, s12, s13, s23)."""
    s11 = op.diff_x_face_to_centre(u, grid.dx)
    s22 = op.diff_y_face_to_centre(v, grid.dy)
    s33 = op.diff_z_face_to_centre(w, grid.dz)
    s12 = 0.5 * (op.diff_y_centre_to_face(u, grid.dy) + op.diff_x_centre_to_face(v, grid.dx))
    s13 = 0.5 * (op.diff_z_centre_to_face(u, grid.dz) + op.diff_x_centre_to_face(w, grid.dx))
    s23 = 0.5 * (op.diff_z_centre_to_face(v, grid.dz) + op.diff_y_centre_to_face(w, grid.dy))
    return s11, s22, s33, s12, s13, s23


def strain_rate_squared(u, v, w, grid: Grid):
    """``|S|^2 = 2 S_ij S_ij`` at cell centres [s-2] (off-diagonal squares averaged
    from their edges to the centres)."""
    s11, s22, s33, s12, s13, s23 = strain_rates(u, v, w, grid)
    s12c = op.interp_x_face_to_centre(op.interp_y_face_to_centre(s12 ** 2))
    s13c = op.interp_x_face_to_centre(op.interp_z_face_to_centre(s13 ** 2))
    s23c = op.interp_y_face_to_centre(op.interp_z_face_to_centre(s23 ** 2))
    return 2.0 * (s11 ** 2 + s22 ** 2 + s33 ** 2) + 4.0 * (s12c + s13c + s23c)


def brunt_vaisala_squared(th, qv, grid: Grid):
    """N^2 = g / thrho d(thrho)/dz at cell centres [s-2], from the density
    (virtual) potential temperature; one-sided at the walls."""
    thrho = thermo.density_potential_temperature(th, qv)
    d = (thrho[..., 1:, :, :] - thrho[..., :-1, :, :]) / grid.dz  # interior faces
    dc = jnp.concatenate([d[..., :1, :, :], 0.5 * (d[..., 1:, :, :] + d[..., :-1, :, :]),
                          d[..., -1:, :, :]], axis=-3)
    return constants.GRAVITY * dc / thrho


def smagorinsky_viscosity(state: State, grid: Grid, *, cs=0.18, prandtl=1.0 / 3.0,
                          stability=True) -> EddyDiffusivity:
    """Eddy viscosity and diffusivity of the Smagorinsky-Lilly model [m2 s-1].

    Parameters
    ----------
    cs : float
        Smagorinsky constant.
    prandtl : float
        Turbulent Prandtl number Pr (K_h = K_m / Pr).
    stability : bool
        Reduce K_m where the flow is stably stratified (the N^2 / Pr term).
    """
    delta = (grid.dx * grid.dy * grid.dz) ** (1.0 / 3.0)
    s2 = strain_rate_squared(state.u, state.v, state.w, grid)
    if stability:
        s2 = s2 - brunt_vaisala_squared(state.th, state.qv, grid) / prandtl
    # sqrt with a zero (not NaN) derivative where the viscosity vanishes
    positive = s2 > 0
    km = (cs * delta) ** 2 * jnp.where(positive, jnp.sqrt(jnp.where(positive, s2, 1.0)), 0.0)
    return EddyDiffusivity(km=km, kh=km / prandtl)


def subgrid_tendency(state: State, k: EddyDiffusivity, base: BaseState, grid: Grid) -> State:
    """Tendencies of u, v, w, th, qv from the subgrid stresses and fluxes
    with eddy coefficients ``k`` (held fixed over a step's stages)."""
    mc = op.column(base.mass)
    mf = op.column(base.mass_faces)
    km = k.km
    s11, s22, s33, s12, s13, s23 = strain_rates(state.u, state.v, state.w, grid)
    # stresses m K 2 S_ij at the strain locations
    t11 = 2.0 * mc * km * s11
    t22 = 2.0 * mc * km * s22
    t33 = 2.0 * mc * km * s33
    t12 = 2.0 * mc * op.interp_x_centre_to_face(op.interp_y_centre_to_face(km)) * s12
    t13 = 2.0 * mf * op.interp_x_centre_to_face(op.interp_z_centre_to_face(km)) * s13
    t23 = 2.0 * mf * op.interp_y_centre_to_face(op.interp_z_centre_to_face(km)) * s23
    u_t = (op.diff_x_centre_to_face(t11, grid.dx) + op.diff_y_face_to_centre(t12, grid.dy)
           + op.diff_z_face_to_centre(t13, grid.dz)) / mc
    v_t = (op.diff_x_face_to_centre(t12, grid.dx) + op.diff_y_centre_to_face(t22, grid.dy)
           + op.diff_z_face_to_centre(t23, grid.dz)) / mc
    w_t = (op.diff_x_face_to_centre(t13, grid.dx) + op.diff_y_face_to_centre(t23, grid.dy)
           + op.diff_z_centre_to_face(t33, grid.dz)) / mf
    w_t = op.zero_walls(w_t)

    khx = mc * op.interp_x_centre_to_face(k.kh)
    khy = mc * op.interp_y_centre_to_face(k.kh)
    khz = mf * op.interp_z_centre_to_face(k.kh)

    def diffuse(q):
        fx = khx * op.diff_x_centre_to_face(q, grid.dx)
        fy = khy * op.diff_y_centre_to_face(q, grid.dy)
        fz = khz * op.diff_z_centre_to_face(q, grid.dz)  # zero through the walls
        return op.divergence(fx, fy, fz, grid.dx, grid.dy, grid.dz) / mc

    return State(u=u_t, v=v_t, w=w_t, th=diffuse(state.th), qv=diffuse(state.qv),
                 pi=jnp.zeros_like(state.pi))


def dissipation(state: State, k: EddyDiffusivity, grid: Grid):
    """Subgrid kinetic-energy dissipation ``eps = K_m |S|^2`` at cell centres [m2 s-3]
    (non-negative by construction)."""
    return k.km * strain_rate_squared(state.u, state.v, state.w, grid)


@scheme
class Smagorinsky(PhysicsScheme):
    """Smagorinsky-Lilly subgrid scheme (see the module docstring).

    The eddy coefficients are computed once per step from the state at its
    start and held over the Runge-Kutta stages, as in the paper; this makes
    the model first order in time (docs/sgs.md). ``per_stage=True`` computes
    them again at every stage: third order, at the cost of three more
    evaluations per step.

    Parameters
    ----------
    cs : float
        Smagorinsky constant [1] (0.18), in [0, 1].
    prandtl : float
        Turbulent Prandtl number [1] (1/3, as LEX uses): K_h = K_m / prandtl.
    stability : bool
        Reduce K_m where the flow is stably stratified (the N^2 / prandtl term).
    per_stage : bool
        Re-evaluate the eddy coefficients at every Runge-Kutta stage (default
        False: once per step, as the paper).
    """

    cs: float = parameter(0.18)
    prandtl: float = parameter(1.0 / 3.0)
    stability: bool = True
    per_stage: bool = False

    outputs = EDDY_OUTPUTS

    def __post_init__(self):
        check_number("Smagorinsky", "cs", self.cs, low=0.0, high=1.0)
        check_number("Smagorinsky", "prandtl", self.prandtl, low=0.0, low_open=True)
        check_flag("Smagorinsky", "stability", self.stability)
        check_flag("Smagorinsky", "per_stage", self.per_stage)

    def prepare(self, state, base, grid):
        return smagorinsky_viscosity(state, grid, cs=self.cs, prandtl=self.prandtl,
                                     stability=self.stability)

    def tendency(self, state, prepared, base, grid):
        return subgrid_tendency(state, prepared, base, grid)

    def diagnose(self, state, base, grid):
        k = self.prepare(state, base, grid)
        return {"km": k.km, "kh": k.kh}
