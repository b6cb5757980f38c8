"""A constant eddy viscosity and diffusivity: a known diffusion, for benchmarks
(the Straka density current uses 75 m2 s-1) and for users who want one.

The stresses and fluxes are those of the Smagorinsky scheme
(:func:`xlex.core.physics.smagorinsky.subgrid_tendency`) with ``K_m = nu`` and
``K_h = kappa`` everywhere.
"""

from __future__ import annotations

import jax.numpy as jnp

from xlex.core.physics.scheme import PhysicsScheme, check_number, parameter, scheme
from xlex.core.physics.smagorinsky import EDDY_OUTPUTS, EddyDiffusivity, subgrid_tendency


@scheme
class ConstantViscosity(PhysicsScheme):
    """Constant eddy viscosity ``nu`` and diffusivity ``kappa`` (sgs slot).

    Parameters
    ----------
    nu : float
        Kinematic eddy viscosity [m2 s-1], >= 0.
    kappa : float, optional
        Eddy diffusivity of th and qv [m2 s-1], >= 0 (default: ``nu``).

    Explicit diffusion is stable for ``dt <= dx^2 / (4 nu)`` or so per direction
    with the model's Runge-Kutta scheme: keep ``nu dt / dx^2`` well below 1/4.
    """

    nu: float = parameter(0.0)
    kappa: float | None = parameter(None)

    outputs = EDDY_OUTPUTS

    def __post_init__(self):
        check_number("ConstantViscosity", "nu", self.nu, low=0.0, unit="m2 s-1")
        if self.kappa is not None:
            check_number("ConstantViscosity", "kappa", self.kappa, low=0.0, unit="m2 s-1")

    def prepare(self, state, base, grid):
        kappa = self.nu if self.kappa is None else self.kappa
        shape = state.th.shape
        return EddyDiffusivity(km=jnp.broadcast_to(jnp.asarray(self.nu, state.th.dtype), shape),
                               kh=jnp.broadcast_to(jnp.asarray(kappa, state.th.dtype), shape))

    def tendency(self, state, prepared, base, grid):
        return subgrid_tendency(state, prepared, base, grid)

    def diagnose(self, state, base, grid):
        k = self.prepare(state, base, grid)
        return {"km": k.km, "kh": k.kh}
