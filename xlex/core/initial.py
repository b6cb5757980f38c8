"""Initial states as pure JAX functions of their parameters (differentiable).

The xarray case builders in :mod:`xlex.io.cases` wrap these.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from xlex.core import thermo
from xlex.core.grid import Grid
from xlex.core.state import BaseState, State


def moist_base_state(grid: Grid, *, theta=300.0, relative_humidity=0.1,
                     surface_pressure=1.0e5, dtype=None) -> BaseState:
    """Hydrostatic base state of constant potential temperature and relative humidity.

    Parameters
    ----------
    theta : float or callable
        Potential temperature [K] (or th(z), z in m).
    relative_humidity : float or callable
        Relative humidity as a fraction (0.1 = 10 %), Bolton (1980) saturation.
    surface_pressure : float
        Pressure at z = 0 [Pa].
    """
    th0, qv0, pi0 = thermo.hydrostatic_sounding(
        grid.centres("z"), theta, relative_humidity=relative_humidity,
        surface_pressure=surface_pressure)
    return thermo.base_state_from_profiles(th0, qv0, pi0, dtype)


def bubble_shape(grid: Grid, *, x_centre, y_centre, z_centre, x_radius, y_radius, z_radius,
                 dtype=None):
    """cos^2(pi L / 2) for L <= 1, else 0, at the cell centres (paper eq. 13)."""
    z = grid.centres("z")[:, None, None]
    y = grid.centres("y")[None, :, None]
    x = grid.centres("x")[None, None, :]
    dist = np.sqrt(((x - x_centre) / x_radius) ** 2 + ((y - y_centre) / y_radius) ** 2
                   + ((z - z_centre) / z_radius) ** 2)
    return jnp.asarray(np.where(dist <= 1.0, np.cos(np.pi * dist / 2.0) ** 2, 0.0),
                       dtype or jnp.result_type(float))


def warm_bubble_state(grid: Grid, base: BaseState, theta_c, *, x_centre=12000.0,
                      y_centre=12000.0, z_centre=2000.0, x_radius=2000.0, y_radius=2000.0,
                      z_radius=2000.0, relative_humidity=0.1, keep_relative_humidity=True
                      ) -> State:
    """The warm bubble at rest (paper section 2.1.3), differentiable in ``theta_c``.

    th = th0 + theta_c cos^2(pi L / 2); where ``keep_relative_humidity``, qv is
    raised inside the bubble so that RH stays ``relative_humidity`` at the warmer
    temperature (at the base-state pressure), as in the CM1 reference run.
    """
    dtype = base.th0.dtype
    shape = bubble_shape(grid, x_centre=x_centre, y_centre=y_centre, z_centre=z_centre,
                         x_radius=x_radius, y_radius=y_radius, z_radius=z_radius, dtype=dtype)
    th0 = base.th0[:, None, None]
    pi0 = base.pi0[:, None, None]
    th = th0 + jnp.asarray(theta_c, dtype) * shape
    if keep_relative_humidity:
        qv = thermo.mixing_ratio_from_relative_humidity(relative_humidity, th, pi0)
    else:
        qv = jnp.broadcast_to(base.qv0[:, None, None], grid.shape)
    zeros = jnp.zeros(grid.shape, dtype)
    return State(u=zeros, v=zeros, w=jnp.zeros(grid.w_shape, dtype), th=th,
                 qv=qv.astype(dtype), pi=zeros)


def mixed_layer_profile(z, *, theta=300.0, mixed_layer_height=500.0, lapse_rate=0.003):
    """th(z) [K]: ``theta`` up to ``mixed_layer_height`` [m], then increasing at
    ``lapse_rate`` [K m-1] (numpy, set-up time)."""
    z = np.asarray(z, dtype=np.float64)
    return theta + lapse_rate * np.maximum(z - mixed_layer_height, 0.0)


def seeded_perturbation(grid: Grid, *, amplitude, depth, seed, dtype=None):
    """Uniform random th perturbations in [-amplitude, amplitude] [K] in the cells
    below ``depth`` [m], with zero horizontal mean on each level, reproducible
    from ``seed``."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(-amplitude, amplitude, size=grid.shape)
    noise -= noise.mean(axis=(1, 2), keepdims=True)
    noise[grid.centres("z") >= depth] = 0.0
    return jnp.asarray(noise, dtype or jnp.result_type(float))


def convective_boundary_layer_state(grid: Grid, base: BaseState, *, u=0.0, v=0.0,
                                    perturbation=0.1, perturbation_depth=500.0, seed=0
                                    ) -> State:
    """The base state with a uniform wind (u, v) [m s-1] and seeded th noise."""
    dtype = base.th0.dtype
    th = base.th0[:, None, None] + seeded_perturbation(
        grid, amplitude=perturbation, depth=perturbation_depth, seed=seed, dtype=dtype)
    qv = jnp.broadcast_to(base.qv0[:, None, None], grid.shape)
    zeros = jnp.zeros(grid.shape, dtype)
    return State(u=zeros + jnp.asarray(u, dtype), v=zeros + jnp.asarray(v, dtype),
                 w=jnp.zeros(grid.w_shape, dtype), th=th, qv=qv, pi=zeros)
