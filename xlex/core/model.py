"""The model: the physics of a run as one object, and the step that sums its terms.

:class:`Physics` holds one scheme per slot (advection, pressure solver,
rotation, subgrid turbulence, surface). It is a pytree whose leaves are the
float parameters of its schemes, so :func:`make_step` builds a pure
``step(state, base, params)`` that can be differentiated, vmapped and jitted
with respect to them. The terms of every scheme are summed in
:func:`make_step`, and nowhere else.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from xlex.core.dynamics.numerics import Advection, PressureSolver
from xlex.core.dynamics.tendencies import buoyancy
from xlex.core.errors import OptionTypeError
from xlex.core.grid import Grid
from xlex.core.physics.constant_viscosity import ConstantViscosity
from xlex.core.physics.dynamic_smagorinsky import DynamicSmagorinsky
from xlex.core.physics.rotation import FPlane
from xlex.core.physics.scheme import PhysicsScheme, component, implements, scheme
from xlex.core.physics.smagorinsky import Smagorinsky
from xlex.core.physics.sponge import Sponge
from xlex.core.physics.surface import BulkSurface
from xlex.core.state import BaseState, State
from xlex.core.stepping import ssprk3

#: The scheme classes each slot of :class:`Physics` accepts.
SLOT_TYPES = {
    "advection": (Advection,),
    "pressure": (PressureSolver,),
    "rotation": (FPlane,),
    "sgs": (Smagorinsky, DynamicSmagorinsky, ConstantViscosity),
    "surface": (BulkSurface,),
    "sponge": (Sponge,),
}
#: Slots that may be None (no scheme).
OPTIONAL_SLOTS = ("rotation", "sgs", "surface", "sponge")
#: The order in which the physics terms are added after advection and buoyancy.
TERM_SLOTS = ("rotation", "sgs", "surface", "sponge")


@scheme
class Physics(PhysicsScheme):
    """Every scheme of a run, one per slot.

    Parameters
    ----------
    advection : Advection
        Advection of u, v, w, th, qv (default :class:`Advection()`).
    pressure : PressureSolver
        The solver of the pressure projection (default :class:`PressureSolver()`).
    rotation : FPlane, optional
        Coriolis force (None: no rotation).
    sgs : Smagorinsky, DynamicSmagorinsky or ConstantViscosity, optional
        Subgrid turbulence (None: only the implicit dissipation of the upwind
        advection).
    surface : BulkSurface, optional
        Surface fluxes (None: free-slip, insulated ground).
    sponge : Sponge, optional
        Rayleigh damping under the lid (None: waves reflect from the rigid lid).

    Notes
    -----
    A scheme of another class can be used in the ``sgs`` and ``surface``
    slots if it subclasses :class:`xlex.core.physics.scheme.PhysicsScheme`
    and is registered with :func:`xlex.core.physics.scheme.scheme`.
    """

    advection: Advection = component(Advection)
    pressure: PressureSolver = component(PressureSolver)
    rotation: FPlane | None = component()
    sgs: PhysicsScheme | None = component()
    surface: PhysicsScheme | None = component()
    sponge: Sponge | None = component()

    def __post_init__(self):
        for slot, kinds in SLOT_TYPES.items():
            value = getattr(self, slot)
            if value is None and slot in OPTIONAL_SLOTS:
                continue
            custom = slot in ("sgs", "surface") and isinstance(value, PhysicsScheme)
            if not isinstance(value, kinds) and not custom:
                names = " or ".join(k.__name__ for k in kinds)
                none = " or None" if slot in OPTIONAL_SLOTS else ""
                raise OptionTypeError(f"Physics({slot}=...) must be a {names}{none}, got "
                                      f"{type(value).__name__} {value!r}")

    def schemes(self):
        """(slot, scheme) of every scheme present, in the order their terms are added."""
        return [(s, getattr(self, s)) for s in ("advection", "pressure") + TERM_SLOTS
                if getattr(self, s) is not None]

    def check(self, grid):
        for _, obj in self.schemes():
            obj.check(grid)

    @property
    def outputs(self):
        """Output fields of every scheme: name -> (dims after time, attributes)."""
        out = {}
        for _, obj in self.schemes():
            out.update(type(obj).outputs)
        return out


def parameters(physics: Physics) -> Physics:
    """The float parameters of ``physics`` as arrays: the ``params`` argument of
    the step of :func:`make_step` (a :class:`Physics` pytree; differentiate,
    vmap or replace its leaves, e.g. ``params.sgs.cs``)."""
    return jax.tree.map(jnp.asarray, physics)


def _check_params(physics, params):
    want = jax.tree.structure(physics)
    got = jax.tree.structure(params)
    if want != got:
        raise OptionTypeError(
            "step(state, base, params): params must have the structure of the physics the step "
            f"was built with (xlex.parameters(physics)); got {got}, expected {want}")


def _add(total, term):
    return total if term is None else jax.tree.map(jnp.add, total, term)


def _project_correction(solver, before: State, after: State, base, grid, dt) -> State:
    """``after`` with the change its correction made to the winds projected onto
    the constraint (the winds of ``before`` already satisfy it). pi' stays the
    dynamics' own: the pressure that removes the correction's divergence is not
    a physical one. A zero correction is left exactly zero (a zero right-hand
    side takes no iteration)."""
    zero = jnp.zeros_like(after.pi)
    change = dataclasses.replace(after, u=after.u - before.u, v=after.v - before.v,
                                 w=after.w - before.w, pi=zero)
    projected, _ = solver.project(change, dataclasses.replace(after, pi=zero), base, grid,
                                  jnp.asarray(dt, after.th.dtype))
    return dataclasses.replace(after, u=before.u + projected.u, v=before.v + projected.v,
                               w=before.w + projected.w)


def make_step(grid: Grid, physics: Physics, dt: float):
    """The model's time step ``step(state, base, params) -> (state, info)``.

    ``params`` is a pytree of the structure of ``physics`` (see
    :func:`parameters`) whose leaves are used as the schemes' parameters;
    ``info`` holds, per Runge-Kutta stage (arrays of shape (4,)), each pressure
    solve's ``pressure_iterations``, ``pressure_residual`` (the true relative
    residual ||b - A pi'|| / ||b||, i.e. the divergence left after the
    projection relative to the one it removed) and ``pressure_breakdown``
    (the Krylov recurrence broke down). Pure and jit-able; ``grid``, the choices of ``physics``
    and ``dt`` are fixed.

    One step is SSPRK3(4) with a projection after every stage
    (:func:`xlex.core.stepping.ssprk3`). The explicit tendency is advection +
    buoyancy + each scheme's ``tendency``, with the work of each scheme's
    ``prepare`` done once from the state at the step's start; after the step
    each scheme's ``correct`` is applied (and the winds projected again if
    the scheme asks for it).
    """
    physics.check(grid)
    stage_dt = dt / 2.0
    correctors = [slot for slot, obj in physics.schemes() if implements(obj, "correct")]

    def step(state: State, base: BaseState, params: Physics):
        _check_params(physics, params)
        dtype = state.th.dtype
        params = jax.tree.map(lambda p: jnp.asarray(p, dtype), params)
        terms = [(s, obj) for s, obj in params.schemes() if s in TERM_SLOTS]
        solver = params.pressure

        def prepare(s):  # held over the stages, except for schemes asking per_stage
            return {slot: obj.prepare(s, base, grid) for slot, obj in terms
                    if not getattr(obj, "per_stage", False)}

        def tendency(s, prepared):
            total = params.advection.tendency(s, None, base, grid, stage_dt=stage_dt)
            total = _add(total, buoyancy(s, base))
            for slot, obj in terms:
                held = prepared[slot] if slot in prepared else obj.prepare(s, base, grid)
                total = _add(total, obj.tendency(s, held, base, grid))
            return total

        def project(star, current, weight):
            return solver.project(star, current, base, grid, weight)

        state, solves = ssprk3(tendency, project, dt, prepare)(state)
        for slot in correctors:
            obj = getattr(params, slot)
            corrected = obj.correct(state, base, grid)
            if obj.projects_correction:
                corrected = _project_correction(solver, state, corrected, base, grid, dt)
            state = corrected
        return state, {"pressure_iterations": solves.iterations,
                       "pressure_residual": solves.relative_residual,
                       "pressure_breakdown": solves.breakdown}

    return step


def make_diagnostics(grid: Grid, physics: Physics):
    """``diagnose(state, base, params) -> {name: array}``: the output fields of
    every scheme (see :attr:`Physics.outputs`), or None when no scheme writes any."""
    if not physics.outputs:
        return None

    def diagnose(state, base, params):
        _check_params(physics, params)
        params = jax.tree.map(lambda p: jnp.asarray(p, state.th.dtype), params)
        out = {}
        for _, obj in params.schemes():
            out.update(obj.diagnose(state, base, grid))
        return out

    return diagnose


__all__ = ["Physics", "parameters", "make_step", "make_diagnostics", "SLOT_TYPES"]
