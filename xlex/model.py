"""Builds the step function of the model from grid, base state and options."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from xlex import constants, thermo
from xlex.config import ModelConfig
from xlex.dynamics import pressure
from xlex.dynamics.tendencies import dynamics_tendency
from xlex.grid import Grid
from xlex.physics import dynamic_smagorinsky, smagorinsky, surface
from xlex.state import BaseState, State
from xlex.stepping import ssprk3


def make_projection(grid: Grid, base: BaseState, config: ModelConfig):
    """``project(star, current, weight) -> (state, iterations)`` for
    :func:`xlex.stepping.ssprk3`."""
    mass, mass_faces = base.mass, base.mass_faces

    def project(star: State, current: State, weight):
        thrho = thermo.density_potential_temperature(current.th, current.qv)
        u, v, w, pi, its = pressure.project(
            star.u, star.v, star.w, thrho, mass, mass_faces, grid, weight, current.pi,
            solver=config.solver, tolerance=config.tolerance,
            max_iterations=config.max_iterations)
        return dataclasses.replace(star, u=u, v=v, w=w, pi=pi), its

    return project


def make_step(grid: Grid, base: BaseState, config: ModelConfig, dt: float):
    """The model's time step ``step(state) -> (state, pressure_iterations[4])``.

    Pure and jit-able; ``grid``, ``config`` and ``dt`` are fixed, ``base``
    is closed over as constants. Eddy coefficients and surface fluxes are
    computed once per step from the state at its start (``prepare``) and held
    over the stages; their tendencies enter before the projection.
    """
    eddy = sgs_coefficients(grid, config)
    fluxes = surface_fluxes(grid, base, config)

    def prepare(state):
        return {"eddy": eddy(state) if eddy is not None else None,
                "surface": fluxes(state) if fluxes is not None else None}

    def tendency(state, frozen):
        total = dynamics_tendency(state, base, grid, config)
        if frozen["eddy"] is not None:
            total = jax.tree.map(jnp.add, total,
                                 smagorinsky.subgrid_tendency(state, frozen["eddy"], base, grid))
        if frozen["surface"] is not None:
            total = jax.tree.map(jnp.add, total,
                                 surface.surface_tendency(frozen["surface"], base, grid))
        return total

    return ssprk3(tendency, make_projection(grid, base, config), dt, prepare)


def sgs_coefficients(grid: Grid, config: ModelConfig):
    """``state -> EddyDiffusivity`` of the configured subgrid scheme, or None."""
    options = {"prandtl": config.prandtl, "stability": config.stability}
    if config.sgs == "smagorinsky":
        return lambda state: smagorinsky.smagorinsky_viscosity(state, grid, cs=config.cs,
                                                               **options)
    if config.sgs == "dynamic":
        return lambda state: dynamic_smagorinsky.dynamic_smagorinsky_viscosity(state, grid,
                                                                               **options)
    return None


def surface_fluxes(grid: Grid, base: BaseState, config: ModelConfig):
    """``state -> SurfaceFluxes`` of the configured surface scheme, or None."""
    if config.surface != "bulk":
        return None
    surface.check_surface_layer(grid, config.roughness_length, config.scalar_roughness)
    th_s, q_sat = surface.surface_state(
        base, grid, temperature=config.surface_temperature,
        potential_temperature=config.surface_potential_temperature)
    return lambda state: surface.bulk_surface_fluxes(
        state, base, grid, surface_theta=th_s, surface_saturation=q_sat,
        roughness_length=config.roughness_length,
        scalar_roughness_length=config.scalar_roughness,
        moisture_availability=config.moisture_availability,
        minimum_wind_speed=config.minimum_wind_speed)


#: Output diagnostics of the physics schemes: name -> (dims after time, attributes).
DIAGNOSTICS = {
    "km": (("zh", "yh", "xh"), {"units": "m2 s-1", "long_name": "subgrid eddy viscosity"}),
    "kh": (("zh", "yh", "xh"), {"units": "m2 s-1", "long_name": "subgrid eddy diffusivity"}),
    "cs2": (("zh",), {"units": "1", "long_name": "dynamic Smagorinsky coefficient cs^2, "
                      "averaged over each level"}),
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


def output_diagnostics(grid: Grid, base: BaseState, config: ModelConfig):
    """``state -> {name: array}`` of the configured schemes' fields at an output
    time (see :data:`DIAGNOSTICS`), or None when there are none."""
    eddy = sgs_coefficients(grid, config)
    fluxes = surface_fluxes(grid, base, config)
    if eddy is None and fluxes is None:
        return None
    rho_s = base.rho0[0]
    pi_s = surface.surface_exner(base, grid)

    def diagnose(state):
        out = {}
        if config.sgs == "dynamic":  # the coefficient once, for cs2 and the viscosity
            options = {"prandtl": config.prandtl, "stability": config.stability}
            c = dynamic_smagorinsky.dynamic_coefficient(state, grid, **options)
            k = dynamic_smagorinsky.dynamic_smagorinsky_viscosity(state, grid, coefficient=c,
                                                                  **options)
            out.update(km=k.km, kh=k.kh, cs2=c[..., 0, 0])
        elif eddy is not None:
            k = eddy(state)
            out.update(km=k.km, kh=k.kh)
        if fluxes is not None:
            f = fluxes(state)
            out.update(hfx=rho_s * constants.CP * pi_s * f.heat, qfx=rho_s * f.moisture,
                       lhf=rho_s * constants.LV * f.moisture, taux=-rho_s * f.momentum_x,
                       tauy=-rho_s * f.momentum_y, ustar=f.friction_velocity)
        return out

    return diagnose
