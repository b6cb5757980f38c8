"""Bulk surface fluxes of momentum, heat and moisture (Neale et al. 2010, CAM5).

Between the ground (z = 0) and the lowest model level z1 = dz / 2, with the
wind speed ``U = max(|V1|, U_min)`` and upward kinematic fluxes::

    u'w' = -C_D U u1,   v'w' = -C_D U v1,
    w'th' = C_H U (th_s - th1),   w'qv' = C_H U (q_s - qv1),

where th_s is the surface potential temperature, q_s = qv1 + beta (q_sat(T_s,
p_s) - qv1) the surface humidity (beta = 1: a saturated water surface), and
the transfer coefficients come from Monin-Obukhov similarity::

    C_D = k^2 / (ln(z1/z0) - psi_m(zeta))^2,
    C_H = k^2 / ((ln(z1/z0) - psi_m(zeta)) (ln(z1/z0h) - psi_h(zeta))),

with the Businger-Dyer (Paulson 1970) stability functions CAM uses: for
zeta < 0, x = (1 - 16 zeta)^(1/4),
psi_m = 2 ln((1 + x)/2) + ln((1 + x^2)/2) - 2 atan(x) + pi/2,
psi_h = 2 ln((1 + x^2)/2); for zeta >= 0, psi_m = psi_h = -5 zeta. The
stability parameter zeta = z1 / L solves zeta = Ri_B (ln(z1/z0) - psi_m)^2 /
(ln(z1/z0h) - psi_h), with the bulk Richardson number
Ri_B = g z1 (thv1 - thv_s) / (thv1 U^2): in closed form on the stable side,
by bisection on the neutral branch on the unstable side; ``|zeta|`` is capped
at 10, as in CAM, and on the unstable side also at the most unstable zeta for
which the relation has a solution (:func:`most_unstable_zeta`), which keeps the
coefficients continuous and bounded near z1/z0h = 50.

The fluxes are computed once per time step from the state at its start and
enter the lowest cell as the flux through its bottom face, weighted by the
pseudo-density m like every other flux, so that the domain integrals of m th
and m qv change by exactly the surface flux.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from xlex.core import constants, thermo
from xlex.core import operators as op
from xlex.core.errors import OptionError
from xlex.core.grid import Grid
from xlex.core.physics.scheme import PhysicsScheme, check_number, parameter, scheme
from xlex.core.state import BaseState, State

#: Cap on ``|zeta| = |z1 / L|``.
ZETA_LIMIT = 10.0
#: Bisection steps for zeta on the unstable side (the bracket [-10, 0] to 1e-14).
STABILITY_ITERATIONS = 50
#: Golden-section steps for :func:`most_unstable_zeta` (ln 1e5 to 1e-11).
UNSTABLE_SEARCH_ITERATIONS = 60
#: Smallest allowed z1 / z0: below it ln(z1/z0) - psi could change sign at the
#: zeta cap, and similarity theory does not hold inside the roughness sublayer.
MINIMUM_HEIGHT_RATIO = 50.0


def check_surface_layer(grid: Grid, roughness_length, scalar_roughness_length):
    """Refuse roughness lengths too large for the lowest level: similarity theory
    needs z1 / z0 >= :data:`MINIMUM_HEIGHT_RATIO` (checked when a model is built,
    before anything compiles)."""
    height = 0.5 * grid.dz
    for name, z0 in (("roughness_length", roughness_length),
                     ("scalar_roughness_length", scalar_roughness_length)):
        if height / z0 < MINIMUM_HEIGHT_RATIO:
            raise OptionError(
                f"{name}={z0:g} m is too large for the lowest level at z = {height:g} m: the "
                f"bulk surface formulas need z1 / z0 >= {MINIMUM_HEIGHT_RATIO:g}; use "
                f"{name} <= {height / MINIMUM_HEIGHT_RATIO:g} m or a larger dz")


def stability_function_momentum(zeta):
    """psi_m(zeta) of Businger-Dyer / Paulson (1970) [1]."""
    unstable = zeta < 0
    x = jnp.sqrt(jnp.sqrt(1.0 - 16.0 * jnp.where(unstable, zeta, 0.0)))
    psi_unstable = (2.0 * jnp.log(0.5 * (1.0 + x)) + jnp.log(0.5 * (1.0 + x * x))
                    - 2.0 * jnp.arctan(x) + 0.5 * math.pi)
    return jnp.where(unstable, psi_unstable, -5.0 * zeta)


def stability_function_heat(zeta):
    """psi_h(zeta) of Businger-Dyer / Paulson (1970) [1] (also used for moisture)."""
    unstable = zeta < 0
    x2 = jnp.sqrt(1.0 - 16.0 * jnp.where(unstable, zeta, 0.0))
    return jnp.where(unstable, 2.0 * jnp.log(0.5 * (1.0 + x2)), -5.0 * zeta)


def bulk_richardson_number(height, wind_speed, thv_air, thv_surface):
    """Ri_B = g z (thv_air - thv_surface) / (thv_air U^2) [1]."""
    return constants.GRAVITY * height * (thv_air - thv_surface) / (thv_air * wind_speed ** 2)


def _unstable_ratio(zeta, log_m, log_h):
    """(ln(z/z0) - psi_m)^2 / ((ln(z/z0h) - psi_h) (-zeta)) for zeta < 0: the bulk
    Richardson number is minus its inverse, so the relation zeta(Ri_B) has a
    solution only while -Ri_B <= 1 / (its minimum); infinite where the heat
    denominator is not positive."""
    denominator = (log_h - stability_function_heat(zeta)) * jnp.abs(zeta)
    ok = denominator > 0
    return jnp.where(ok, (log_m - stability_function_momentum(zeta)) ** 2
                     / jnp.where(ok, denominator, 1.0), jnp.inf)


def most_unstable_zeta(log_m, log_h, iterations=UNSTABLE_SEARCH_ITERATIONS):
    """The most unstable zeta the similarity relation reaches: where
    :func:`_unstable_ratio` is least on [-:data:`ZETA_LIMIT`, 0) (golden-section
    search in ln(-zeta); -ZETA_LIMIT when the ratio falls all the way there).

    With z1/z0h large it is the cap; with z1/z0h near :data:`MINIMUM_HEIGHT_RATIO`
    (ln(z1/z0h) - psi_h(-10) = 0.065 at 50) the relation has no solution past a
    critical Ri_B of order -1, and holding zeta here, not jumping to the cap,
    keeps the coefficients continuous and bounded (C_H jumped from 0.18 to 1.80).
    """
    golden = 0.5 * (math.sqrt(5.0) - 1.0)
    lo = jnp.full(jnp.broadcast_shapes(jnp.shape(log_m), jnp.shape(log_h)),
                  math.log(1e-4), dtype=jnp.result_type(log_m, log_h, float))
    hi = jnp.full_like(lo, math.log(ZETA_LIMIT))
    ratio = lambda s: _unstable_ratio(-jnp.exp(s), log_m, log_h)  # noqa: E731

    def shrink(_, bounds):
        lo, hi = bounds
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        left = ratio(a) <= ratio(b)  # the minimum is in [lo, b]
        return jnp.where(left, lo, a), jnp.where(left, b, hi)

    lo, hi = jax.lax.fori_loop(0, iterations, shrink, (lo, hi))
    zeta = -jnp.exp(0.5 * (lo + hi))
    return jnp.where(zeta <= -ZETA_LIMIT * (1.0 - 1e-9), -ZETA_LIMIT, zeta)  # the cap itself


def stability_parameter(richardson, height, *, roughness_length, scalar_roughness_length,
                        iterations=STABILITY_ITERATIONS):
    """zeta = z / L from the bulk Richardson number.

    Stable side (Ri_B >= 0, psi = -5 zeta): the relation is the quadratic
    (5 - 25 Ri) zeta^2 + (l_h - 10 Ri l_m) zeta - Ri l_m^2 = 0
    (l_m = ln(z/z0), l_h = ln(z/z0h)), solved in closed form for the root that
    continues the neutral branch; past the critical Ri_B (no such root) zeta
    takes the cap. Unstable side: the root on the neutral branch, between 0 and
    :func:`most_unstable_zeta` (bisection, then one Newton step that carries
    the derivative); past the last Ri_B with a root, that most unstable zeta.
    """
    # jnp, not math: the roughness lengths may be traced parameters
    log_m = jnp.log(height / roughness_length)
    log_h = jnp.log(height / scalar_roughness_length)
    unstable_ri = jnp.minimum(richardson, 0.0)
    floor = jax.lax.stop_gradient(most_unstable_zeta(log_m, log_h))

    def residual(zeta):  # > 0 at zeta = 0, < 0 at the floor when a root lies between
        return zeta - unstable_ri * (log_m - stability_function_momentum(zeta)) ** 2 / (
            log_h - stability_function_heat(zeta))

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        below = residual(mid) < 0  # the root is above mid
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    floor_b = jnp.broadcast_to(floor, jnp.shape(unstable_ri))
    lo, hi = jax.lax.fori_loop(0, iterations, bisect, (floor_b, jnp.zeros_like(floor_b)))
    has_root = residual(floor_b) <= 0
    root = jax.lax.stop_gradient(jnp.where(has_root, 0.5 * (lo + hi), floor_b))
    value, slope = jax.jvp(residual, (root,), (jnp.ones_like(root),))
    newton = root - value / jnp.where(slope != 0, slope, 1.0)
    # the Newton step moves the value by round-off only; it gives the derivative
    unstable = jnp.where(has_root & (unstable_ri < 0), newton, root)

    stable_ri = jnp.maximum(richardson, 0.0)
    a = 5.0 - 25.0 * stable_ri
    b = log_h - 10.0 * stable_ri * log_m
    c = stable_ri * log_m ** 2  # = -(constant term)
    disc = b * b + 4.0 * a * c
    denominator = b + jnp.sqrt(jnp.where(disc > 0, disc, 0.0))
    # zeta = 2 c / (b + sqrt(disc)): the root through zeta = 0 at Ri = 0, without
    # the cancellation of the textbook form
    has_stable_root = (disc > 0) & (denominator > 2.0 * c / ZETA_LIMIT)
    stable = jnp.where(has_stable_root,
                       2.0 * c / jnp.where(has_stable_root, denominator, 1.0), ZETA_LIMIT)
    return jnp.where(richardson >= 0, stable, unstable)


def transfer_coefficients(height, wind_speed, thv_air, thv_surface, *, roughness_length,
                          scalar_roughness_length=None):
    """Drag and heat/moisture transfer coefficients ``(C_D, C_H)`` [1] between the
    ground and ``height`` [m], for wind speed [m s-1] and virtual potential
    temperatures [K] of the air and the surface."""
    z0h = roughness_length if scalar_roughness_length is None else scalar_roughness_length
    rib = bulk_richardson_number(height, wind_speed, thv_air, thv_surface)
    zeta = stability_parameter(rib, height, roughness_length=roughness_length,
                               scalar_roughness_length=z0h)
    k = constants.KARMAN
    phi_m = jnp.log(height / roughness_length) - stability_function_momentum(zeta)
    phi_h = jnp.log(height / z0h) - stability_function_heat(zeta)
    return k * k / (phi_m * phi_m), k * k / (phi_m * phi_h)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SurfaceFluxes:
    """Upward kinematic fluxes through the ground, ``(..., ny, nx)``.

    Attributes
    ----------
    momentum_x : u'w' at the u points (west faces) [m2 s-2]
    momentum_y : v'w' at the v points (south faces) [m2 s-2]
    heat : w'th' at cell centres [K m s-1]
    moisture : w'qv' at cell centres [kg kg-1 m s-1]
    friction_velocity : u* = sqrt(C_D) U at cell centres [m s-1]
    """

    momentum_x: jax.Array
    momentum_y: jax.Array
    heat: jax.Array
    moisture: jax.Array
    friction_velocity: jax.Array


def surface_exner(base: BaseState, grid: Grid):
    """Exner function at the ground, hydrostatic from the lowest level [1]."""
    return base.pi0[0] + constants.GRAVITY * (0.5 * grid.dz) / (constants.CP * base.thrho0[0])


def surface_state(base: BaseState, grid: Grid, *, temperature=None, potential_temperature=None):
    """``(th_s, q_sat)``: the surface potential temperature [K] and the saturation
    mixing ratio at the surface temperature and pressure [kg kg-1], from a
    prescribed surface ``temperature`` or ``potential_temperature`` [K]."""
    if (temperature is None) == (potential_temperature is None):
        raise ValueError("give exactly one of temperature and potential_temperature")
    pi_s = surface_exner(base, grid)
    if temperature is not None:
        th_s = temperature / pi_s
    else:
        th_s = potential_temperature + jnp.zeros_like(pi_s)
    q_sat = thermo.saturation_mixing_ratio(th_s * pi_s, thermo.pressure_from_exner(pi_s))
    return th_s, q_sat


def bulk_surface_fluxes(state: State, base: BaseState, grid: Grid, *, surface_theta,
                        surface_saturation, roughness_length, scalar_roughness_length=None,
                        moisture_availability=1.0, minimum_wind_speed=1.0) -> SurfaceFluxes:
    """Surface fluxes from the lowest model level (see the module docstring).

    Parameters
    ----------
    surface_theta : float or array
        Surface potential temperature th_s [K].
    surface_saturation : float or array
        Saturation mixing ratio at the surface temperature and pressure [kg kg-1].
    roughness_length, scalar_roughness_length : float
        z0 for momentum and z0h for heat and moisture [m] (z0h defaults to z0).
    moisture_availability : float
        beta in [0, 1]: 1 for a saturated (water) surface, 0 for a dry one.
    minimum_wind_speed : float
        Floor on the wind speed U [m s-1] (keeps the exchange alive in free
        convection).
    """
    height = 0.5 * grid.dz
    uc, vc = op.centred_horizontal_winds(state.u[..., 0, :, :], state.v[..., 0, :, :])
    th1 = state.th[..., 0, :, :]
    qv1 = state.qv[..., 0, :, :]
    speed2 = uc * uc + vc * vc
    floor2 = minimum_wind_speed ** 2
    # sqrt of at least the floor: a zero-derivative-safe square root
    wind = jnp.sqrt(jnp.maximum(speed2, floor2))
    q_surface = qv1 + moisture_availability * (surface_saturation - qv1)
    cd, ch = transfer_coefficients(
        height, wind, thermo.density_potential_temperature(th1, qv1),
        thermo.density_potential_temperature(surface_theta, q_surface),
        roughness_length=roughness_length, scalar_roughness_length=scalar_roughness_length)
    drag = cd * wind
    return SurfaceFluxes(
        momentum_x=-op.interp_x_centre_to_face(drag) * state.u[..., 0, :, :],
        momentum_y=-op.interp_y_centre_to_face(drag) * state.v[..., 0, :, :],
        heat=ch * wind * (surface_theta - th1),
        moisture=ch * wind * (q_surface - qv1),
        friction_velocity=jnp.sqrt(cd) * wind)


def surface_tendency(fluxes: SurfaceFluxes, base: BaseState, grid: Grid) -> State:
    """Tendencies of the lowest level from the fluxes through the ground: the
    flux into the bottom face of the lowest cell, m-weighted, over dz."""
    weight = base.mass_faces[0] / (base.mass[0] * grid.dz)
    shape = fluxes.heat.shape[:-2] + grid.shape
    above = jnp.zeros(shape[:-3] + (grid.nz - 1,) + shape[-2:], fluxes.heat.dtype)

    def lowest(flux):
        return jnp.concatenate([weight * flux[..., None, :, :], above], axis=-3)

    zeros = jnp.zeros(shape, fluxes.heat.dtype)
    return State(u=lowest(fluxes.momentum_x), v=lowest(fluxes.momentum_y),
                 w=jnp.zeros(shape[:-3] + grid.w_shape, fluxes.heat.dtype),
                 th=lowest(fluxes.heat), qv=lowest(fluxes.moisture), pi=zeros)


#: Output fields of the bulk surface scheme.
SURFACE_OUTPUTS = {
    "hfx": (("yh", "xh"), {"units": "W m-2", "long_name": "upward surface sensible heat flux",
                           "standard_name": "surface_upward_sensible_heat_flux"}),
    "qfx": (("yh", "xh"), {"units": "kg m-2 s-1",
                           "long_name": "upward surface water vapour flux"}),
    "lhf": (("yh", "xh"), {"units": "W m-2", "long_name": "upward surface latent heat flux",
                           "standard_name": "surface_upward_latent_heat_flux"}),
    "taux": (("yh", "xf"), {"units": "N m-2", "long_name": "surface stress, x component "
                            "(on the ground, along the wind)",
                            "standard_name": "surface_downward_eastward_stress"}),
    "tauy": (("yf", "xh"), {"units": "N m-2", "long_name": "surface stress, y component "
                            "(on the ground, along the wind)",
                            "standard_name": "surface_downward_northward_stress"}),
    "ustar": (("yh", "xh"), {"units": "m s-1", "long_name": "friction velocity"}),
}


@scheme
class BulkSurface(PhysicsScheme):
    """Bulk surface fluxes of momentum, heat and moisture with Monin-Obukhov
    transfer coefficients (Neale et al. 2010; see the module docstring),
    computed once per step and held over the stages.

    Parameters
    ----------
    surface_temperature : float, optional
        Prescribed ground temperature [K]; give this or
        ``surface_potential_temperature``.
    surface_potential_temperature : float, optional
        Prescribed ground potential temperature [K].
    roughness_length : float
        Roughness length for momentum z0 [m] (0.1, short vegetation; about
        2e-4 over the sea).
    scalar_roughness_length : float, optional
        Roughness length for heat and moisture z0h [m] (default: z0).
    moisture_availability : float
        Fraction beta in [0, 1] of the saturation deficit the ground supplies
        (1: a saturated water surface, 0: a dry one).
    minimum_wind_speed : float
        Floor on the wind speed in the bulk formulas [m s-1] (1.0); keeps the
        exchange going in free convection.
    """

    surface_temperature: float | None = parameter(None)
    surface_potential_temperature: float | None = parameter(None)
    roughness_length: float = parameter(0.1)
    scalar_roughness_length: float | None = parameter(None)
    moisture_availability: float = parameter(1.0)
    minimum_wind_speed: float = parameter(1.0)

    outputs = SURFACE_OUTPUTS

    def __post_init__(self):
        given = [n for n in ("surface_temperature", "surface_potential_temperature")
                 if getattr(self, n) is not None]
        if len(given) != 1:
            raise OptionError(
                "BulkSurface needs exactly one of surface_temperature (K) and "
                f"surface_potential_temperature (K); got {given or 'neither'}")
        check_number("BulkSurface", given[0], getattr(self, given[0]), low=0.0, low_open=True,
                     unit="K")
        check_number("BulkSurface", "roughness_length", self.roughness_length, low=0.0,
                     low_open=True, unit="m")
        if self.scalar_roughness_length is not None:
            check_number("BulkSurface", "scalar_roughness_length", self.scalar_roughness_length,
                         low=0.0, low_open=True, unit="m")
        check_number("BulkSurface", "moisture_availability", self.moisture_availability,
                     low=0.0, high=1.0)
        check_number("BulkSurface", "minimum_wind_speed", self.minimum_wind_speed, low=0.0,
                     low_open=True, unit="m s-1")

    @property
    def scalar_roughness(self):
        """z0h [m]: ``scalar_roughness_length`` or, if unset, ``roughness_length``."""
        if self.scalar_roughness_length is None:
            return self.roughness_length
        return self.scalar_roughness_length

    def check(self, grid):
        check_surface_layer(grid, self.roughness_length, self.scalar_roughness)

    def prepare(self, state, base, grid):
        th_s, q_sat = surface_state(base, grid, temperature=self.surface_temperature,
                                    potential_temperature=self.surface_potential_temperature)
        return bulk_surface_fluxes(
            state, base, grid, surface_theta=th_s, surface_saturation=q_sat,
            roughness_length=self.roughness_length,
            scalar_roughness_length=self.scalar_roughness,
            moisture_availability=self.moisture_availability,
            minimum_wind_speed=self.minimum_wind_speed)

    def tendency(self, state, prepared, base, grid):
        return surface_tendency(prepared, base, grid)

    def diagnose(self, state, base, grid):
        f = self.prepare(state, base, grid)
        rho_s = base.rho0[0]
        pi_s = surface_exner(base, grid)
        return {"hfx": rho_s * constants.CP * pi_s * f.heat, "qfx": rho_s * f.moisture,
                "lhf": rho_s * constants.LV * f.moisture, "taux": -rho_s * f.momentum_x,
                "tauy": -rho_s * f.momentum_y, "ustar": f.friction_velocity}
