"""The numerical schemes of the dynamics as objects: advection and pressure solver.

Their choices (scheme, order, solver, tolerance) are static: a different
choice is a different compiled step. Advection's ``weno_epsilon`` is a float
parameter and so a leaf of the pytree.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from xlex.core import thermo
from xlex.core.dynamics import pressure
from xlex.core.dynamics.advection import EPS_MODES, WENO_EPSILON, advection_tendencies
from xlex.core.errors import OptionError, OptionTypeError
from xlex.core.physics.scheme import (
    PhysicsScheme,
    check_choice,
    check_flag,
    check_number,
    parameter,
    scheme,
)
from xlex.core.state import State

#: Pressure solvers by name (the table of :mod:`xlex.core.dynamics.pressure`).
SOLVERS = pressure.SOLVERS
#: Momentum advection schemes by name.
MOMENTUM_SCHEMES = ("upwind5", "weno5")
#: Default relative residual of the pressure solve, by precision.
DEFAULT_TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
#: Default iteration cap of each solver.
DEFAULT_MAX_ITERATIONS = {"pcg": 100, "bicgstab": 5000}


@scheme
class Advection(PhysicsScheme):
    """Flux-form upwind advection of u, v, w, th and qv with the mass flux
    rho0 thrho0 u (:mod:`xlex.core.dynamics.advection`).

    Parameters
    ----------
    momentum : {'upwind5', 'weno5'}
        Scheme for u, v, w: the linear fifth-order upwind scheme (CM1's choice;
        against the CM1 warm bubble it raises the correlation of theta' at
        10 min from 0.970 to 0.9996) or WENO5 as for the scalars.
    vertical_order : {5, 3}
        Order of the vertical reconstruction (horizontal is always fifth
        order). 5 agrees better with CM1 (R(theta') at 5 min 0.9998 against
        0.9957 with 3).
    weno_epsilon : float
        Jiang-Shu regularisation of the WENO smoothness indicators [1 with
        ``weno_regularisation='relative'``, the field's units squared with
        'absolute'].
    weno_regularisation : {'relative', 'absolute'}
        'relative' (default): epsilon is a fraction of the square of each
        field's range, so WENO acts alike on qv in kg/kg or g/kg. 'absolute':
        the scheme of xlex 0.1 (WENO effectively off for qv).
    positive_moisture : bool
        Renormalise the outgoing qv fluxes of every stage (Skamarock 2006) so
        that qv stays >= 0 (default True); the domain integral is unchanged.
    """

    momentum: str = "upwind5"
    vertical_order: int = 5
    weno_epsilon: float = parameter(WENO_EPSILON)
    weno_regularisation: str = "relative"
    positive_moisture: bool = True

    def __post_init__(self):
        check_choice("Advection", "momentum", self.momentum, MOMENTUM_SCHEMES)
        if isinstance(self.vertical_order, bool) or self.vertical_order not in (3, 5):
            raise OptionError(f"Advection(vertical_order={self.vertical_order!r}) must be 3 or "
                              "5 (WENO3 or WENO5)")
        check_number("Advection", "weno_epsilon", self.weno_epsilon, low=0.0, low_open=True)
        check_choice("Advection", "weno_regularisation", self.weno_regularisation, EPS_MODES)
        check_flag("Advection", "positive_moisture", self.positive_moisture)

    def tendency(self, state, prepared, base, grid, *, stage_dt=None):
        """The advective tendency; ``stage_dt`` [s] is the length of the Runge-Kutta
        stage it is used for (the model passes it; needed by ``positive_moisture``)."""
        if self.positive_moisture and stage_dt is None:
            raise ValueError("Advection(positive_moisture=True).tendency needs stage_dt")
        u_t, v_t, w_t, th_t, qv_t = advection_tendencies(
            state.u, state.v, state.w, state.th, state.qv, base.mass, base.mass_faces,
            grid.dx, grid.dy, grid.dz, order_z=self.vertical_order, eps=self.weno_epsilon,
            linear_momentum=self.momentum == "upwind5", eps_mode=self.weno_regularisation,
            positive_dt=stage_dt if self.positive_moisture else None)
        return State(u=u_t, v=v_t, w=w_t, th=th_t, qv=qv_t, pi=jnp.zeros_like(state.pi))


@scheme
class PressureSolver(PhysicsScheme):
    """The Krylov solve of the pressure projection (:mod:`xlex.core.dynamics.pressure`).

    Parameters
    ----------
    method : {'pcg', 'bicgstab'}
        Conjugate gradients preconditioned by an exact FFT(x, y) + tridiagonal(z)
        solve of the horizontally averaged operator (default), or the
        unpreconditioned BiCGSTAB of the original LEX code.
    tolerance : float, optional
        Relative residual ||b - A x|| / ||b|| at which a solve stops (default
        1e-5 in float32, 1e-10 in float64).
    max_iterations : int, optional
        Iteration cap of a solve (default 100 for pcg, 5000 for bicgstab).
    """

    method: str = "pcg"
    tolerance: float | None = None
    max_iterations: int | None = None

    def __post_init__(self):
        check_choice("PressureSolver", "method", self.method, SOLVERS)
        if self.tolerance is not None:
            check_number("PressureSolver", "tolerance", self.tolerance, low=0.0,
                         low_open=True)
            if not self.tolerance < 1:
                raise OptionError(f"PressureSolver(tolerance={self.tolerance!r}) must be < 1 "
                                  "(a relative residual)")
        if self.max_iterations is not None:
            if isinstance(self.max_iterations, bool) or not isinstance(self.max_iterations,
                                                                       int):
                raise OptionTypeError(f"PressureSolver(max_iterations=...) must be an "
                                      f"integer, got {self.max_iterations!r}")
            if self.max_iterations < 1:
                raise OptionError(f"PressureSolver(max_iterations={self.max_iterations}) "
                                  "must be >= 1")

    def resolved_tolerance(self, dtype) -> float:
        """The tolerance, or the default for ``dtype``."""
        if self.tolerance is not None:
            return self.tolerance
        return DEFAULT_TOLERANCE["float64" if jnp.dtype(dtype).itemsize >= 8 else "float32"]

    def resolved_max_iterations(self) -> int:
        """The iteration cap, or the default for ``method``."""
        return self.max_iterations or DEFAULT_MAX_ITERATIONS[self.method]

    def project(self, star: State, current: State, base, grid, weight):
        """``star`` with divergence-free winds and the new pi', and the solve's
        :class:`~xlex.core.dynamics.pressure.SolveInfo` (iterations, true relative
        residual, breakdown): the pressure-gradient force of weight ``weight`` [s],
        with thrho of the state ``current`` where the stage's tendency was evaluated."""
        thrho = thermo.density_potential_temperature(current.th, current.qv)
        u, v, w, pi, _, info = pressure.project(
            star.u, star.v, star.w, thrho, base.mass, base.mass_faces, grid, weight, current.pi,
            solver=self.method, tolerance=self.resolved_tolerance(star.th.dtype),
            max_iterations=self.resolved_max_iterations(), return_info=True)
        return dataclasses.replace(star, u=u, v=v, w=w, pi=pi), info
