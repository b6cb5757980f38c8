"""Model state and base state: frozen dataclasses registered as JAX pytrees.

Arrays are leaves; arithmetic on whole states goes through ``jax.tree.map``.
Shapes follow the staggering convention in :mod:`xlex.core.grid`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from xlex.core import thermo


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class State:
    """Prognostic state plus the diagnosed Exner perturbation.

    Attributes
    ----------
    u, v : array (..., nz, ny, nx)
        Wind on west / south faces [m s-1].
    w : array (..., nz + 1, ny, nx)
        Vertical velocity on bottom faces [m s-1]; zero on the walls.
    th : array (..., nz, ny, nx)
        Potential temperature [K].
    qv : array (..., nz, ny, nx)
        Water-vapour mixing ratio [kg kg-1].
    pi : array (..., nz, ny, nx)
        Exner-function perturbation pi' [1], diagnosed by the pressure solve
        (kept in the state as the next solve's first guess and for output).
    """

    u: jax.Array
    v: jax.Array
    w: jax.Array
    th: jax.Array
    qv: jax.Array
    pi: jax.Array

    def astype(self, dtype) -> State:
        """The same state with every array cast to ``dtype``."""
        return jax.tree.map(lambda a: jnp.asarray(a, dtype), self)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BaseState:
    """Hydrostatic reference state, functions of height only (cell centres).

    Attributes
    ----------
    th0 : array (nz,)
        Potential temperature [K].
    qv0 : array (nz,)
        Water-vapour mixing ratio [kg kg-1].
    pi0 : array (nz,)
        Exner function [1].
    """

    th0: jax.Array
    qv0: jax.Array
    pi0: jax.Array

    @property
    def thrho0(self) -> jax.Array:
        """Density (virtual) potential temperature of the base state [K]."""
        return thermo.density_potential_temperature(self.th0, self.qv0)

    @property
    def rho0(self) -> jax.Array:
        """Base-state density from the equation of state [kg m-3]
        (:func:`xlex.core.thermo.base_density`)."""
        return thermo.base_density(self.th0, self.qv0, self.pi0)

    @property
    def mass(self) -> jax.Array:
        """Pseudo-density weight rho0 * thrho0 at cell centres [kg m-3 K]
        (:func:`xlex.core.thermo.mass_weight`)."""
        return thermo.mass_weight(self.rho0, self.th0, self.qv0)

    @property
    def mass_faces(self) -> jax.Array:
        """rho0 * thrho0 on the nz + 1 z faces (mean of the neighbouring centres;
        the wall values only ever multiply w = 0)."""
        m = self.mass
        return jnp.concatenate([m[:1], 0.5 * (m[1:] + m[:-1]), m[-1:]])

    def astype(self, dtype) -> BaseState:
        """The same base state with every array cast to ``dtype``."""
        return jax.tree.map(lambda a: jnp.asarray(a, dtype), self)
