"""Builds the step function of the model from grid, base state and options."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from xlex import thermo
from xlex.config import ModelConfig
from xlex.dynamics import pressure
from xlex.dynamics.tendencies import dynamics_tendency
from xlex.grid import Grid
from xlex.physics import smagorinsky
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
    is closed over as constants.
    """

    prepare = sgs_coefficients(grid, config)

    def tendency(state, frozen):
        total = dynamics_tendency(state, base, grid, config)
        if frozen is not None:
            total = jax.tree.map(jnp.add, total,
                                 smagorinsky.subgrid_tendency(state, frozen, base, grid))
        return total

    return ssprk3(tendency, make_projection(grid, base, config), dt, prepare)


def sgs_coefficients(grid: Grid, config: ModelConfig):
    """``state -> EddyDiffusivity`` of the configured subgrid scheme, or None."""
    if config.sgs == "smagorinsky":
        return lambda state: smagorinsky.smagorinsky_viscosity(
            state, grid, cs=config.cs, prandtl=config.prandtl, stability=config.stability)
    return None
