"""Acceptance tests of the dynamical core: rest states, warm-bubble symmetry,
conservation, the discrete constraint, the rising bubble and gradients
through the whole time step."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xlex.core import constants, thermo
from xlex.core.dynamics import pressure
from xlex.core.dynamics.numerics import PressureSolver
from xlex.core.grid import Grid
from xlex.core.initial import moist_base_state, warm_bubble_state
from xlex.core.model import Physics, make_step, parameters
from xlex.core.state import State
from xlex.core.stepping import advance


def config(**solver):
    """The physics of these tests: no optional scheme, the pressure solver's options
    (the precision is that of the arrays: float64 here)."""
    return Physics(pressure=PressureSolver(**solver))


def stepper(grid, physics, dt):
    """``step(state) -> (state, pressure_iterations[4])`` with ``base`` and the
    physics' parameters bound."""
    step = make_step(grid, physics, dt)
    params = parameters(physics)

    def bind(base):
        def one(state):
            state, info = step(state, base, params)
            return state, info["pressure_iterations"]
        return one

    return bind


@functools.cache
def _runner(grid, physics, dt, n_steps):
    """One compiled integration per (grid, physics, dt, length); the base state is
    an argument (a pytree), so runs on different soundings share the compilation."""
    bind = stepper(grid, physics, dt)
    return jax.jit(lambda base, state: advance(bind(base), state, n_steps))


def run(grid, base, physics, dt, state, n_steps):
    """Final state and pressure iterations (n_steps, 4) after n_steps."""
    return _runner(grid, physics, dt, n_steps)(base, state)


def broadcast_column(profile, grid):
    return jnp.broadcast_to(profile[:, None, None], grid.shape)


def at_rest(grid, base):
    """The base state itself, at rest, with no perturbation."""
    zero = jnp.zeros(grid.shape)
    return State(u=zero, v=zero, w=jnp.zeros(grid.w_shape), th=broadcast_column(base.th0, grid),
                 qv=broadcast_column(base.qv0, grid), pi=zero)


# --------------------------------------------------------------------------- rest

REST_GRID = Grid(nx=16, ny=16, nz=12, dx=1000.0, dy=1000.0, dz=1000.0)
SOUNDINGS = {"neutral": 300.0, "stable": lambda z: 300.0 + 0.004 * z}


@pytest.mark.parametrize("sounding", list(SOUNDINGS))
def test_base_state_at_rest_stays_at_rest(sounding):
    base = moist_base_state(REST_GRID, theta=SOUNDINGS[sounding])
    start = at_rest(REST_GRID, base)
    final, _ = run(REST_GRID, base, config(), 30.0, start, 60)  # 30 min
    assert float(jnp.max(jnp.abs(final.w))) < 1e-10
    assert float(jnp.max(jnp.abs(final.u))) < 1e-10
    assert float(jnp.max(jnp.abs(final.v))) < 1e-10
    assert float(jnp.max(jnp.abs(final.th - start.th))) < 1e-10
    assert float(jnp.max(jnp.abs(final.qv - start.qv))) < 1e-14


@pytest.mark.parametrize("solver", ["pcg", "bicgstab"])
def test_horizontally_uniform_warm_layer_stays_at_rest(solver):
    """A horizontally uniform th anomaly is balanced by a hydrostatic pi'(z):
    the projection must remove the horizontal-mean part of the divergence
    (the singular mode of the preconditioner) completely."""
    grid = REST_GRID
    base = moist_base_state(grid, theta=SOUNDINGS["stable"])
    z = grid.centres("z")
    layer = jnp.asarray(np.exp(-(((z - 4000.0) / 1500.0) ** 2)))
    start = dataclasses.replace(at_rest(grid, base),
                                th=broadcast_column(base.th0 + layer, grid))
    final, _ = run(grid, base, config(method=solver), 30.0, start, 60)
    assert float(jnp.max(jnp.abs(final.w))) < 1e-10
    assert float(jnp.max(jnp.abs(final.u))) < 1e-10
    assert float(jnp.max(jnp.abs(final.th - start.th))) < 1e-10
    # pi' is in hydrostatic balance with the anomaly: cp thrho dpi'/dz = B on the faces
    thrho = thermo.density_potential_temperature(final.th, final.qv)
    b = thermo.buoyancy(final.th, final.qv, base)
    dpi = (final.pi[1:] - final.pi[:-1]) / grid.dz
    balance = (constants.CP * 0.5 * (thrho[1:] + thrho[:-1]) * dpi - 0.5 * (b[1:] + b[:-1]))
    assert float(jnp.max(jnp.abs(balance))) < 1e-8 * float(jnp.max(jnp.abs(b)))


# --------------------------------------------------------------------------- bubble, 10 min

SYM_GRID = Grid(nx=24, ny=24, nz=12, dx=500.0, dy=500.0, dz=500.0)


def symmetric_bubble(base, theta_c=5.0, **kw):
    return warm_bubble_state(SYM_GRID, base, theta_c, x_centre=6000.0, y_centre=6000.0,
                             z_centre=2000.0, x_radius=2000.0, y_radius=2000.0,
                             z_radius=2000.0, **kw)


@pytest.fixture(scope="module")
def sym_base():
    return moist_base_state(SYM_GRID)


@pytest.fixture(scope="module")
def bubble_10min(sym_base):
    start = symmetric_bubble(sym_base)
    final, its = run(SYM_GRID, sym_base, config(), 10.0, start, 60)
    return start, final, its


def test_warm_bubble_stays_symmetric(bubble_10min):
    start, final, _ = bubble_10min
    th = np.asarray(final.th)
    assert np.max(np.asarray(final.w)) > 1.0  # something happened
    assert np.max(np.abs(th - np.asarray(start.th))) > 0.1
    np.testing.assert_allclose(th, th[..., ::-1], rtol=0, atol=1e-10, err_msg="x mirror")
    np.testing.assert_allclose(th, th[:, ::-1, :], rtol=0, atol=1e-10, err_msg="y mirror")
    np.testing.assert_allclose(th, th.transpose(0, 2, 1), rtol=0, atol=1e-10,
                               err_msg="x <-> y")
    # velocities: u odd under the x mirror (west face i <-> face (n - i) % n), u <-> v
    u, v, w = (np.asarray(a) for a in (final.u, final.v, final.w))
    scale = np.max(np.abs(u))
    np.testing.assert_allclose(u, -np.roll(u[..., ::-1], 1, axis=-1), rtol=0,
                               atol=1e-10 * scale)
    np.testing.assert_allclose(u, v.transpose(0, 2, 1), rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(w, w[..., ::-1], rtol=0, atol=1e-10 * np.max(np.abs(w)))


def test_scalar_integrals_are_conserved(bubble_10min, sym_base):
    start, final, _ = bubble_10min
    m = np.asarray(sym_base.mass)[:, None, None]
    for name in ("th", "qv"):
        a0, a1 = (np.asarray(getattr(s, name)) for s in (start, final))
        ref = np.asarray(getattr(sym_base, f"{name}0"))[:, None, None]
        total0, total1 = np.sum(m * a0), np.sum(m * a1)
        assert abs(total1 - total0) <= 1e-12 * abs(total0), name
        # the much smaller integral of the perturbation too (sum m (q - q0) is
        # what advection could change visibly)
        pert0, pert1 = np.sum(m * (a0 - ref)), np.sum(m * (a1 - ref))
        assert abs(pert1 - pert0) <= 1e-10 * abs(pert0), (name, pert0, pert1)
        assert np.max(np.abs(a1 - a0)) > 0  # and the field did change


def test_uniform_moisture_stays_uniform():
    z = SYM_GRID.centres("z")
    th0, qv0, pi0 = thermo.hydrostatic_sounding(z, lambda zz: 300.0 + 0.0 * zz, qv=0.008)
    base = thermo.base_state_from_profiles(th0, qv0, pi0)
    start = symmetric_bubble(base, keep_relative_humidity=False)
    np.testing.assert_array_equal(np.asarray(start.qv), 0.008)
    final, _ = run(SYM_GRID, base, config(), 10.0, start, 60)
    assert np.max(np.abs(np.asarray(final.qv) - 0.008)) <= 1e-12 * 0.008
    assert float(jnp.max(final.w)) > 1.0


# --------------------------------------------------------------------------- constraint

DIV_GRID = Grid(nx=16, ny=16, nz=12, dx=750.0, dy=750.0, dz=500.0)


def divergence_history(solver, tolerance, n_steps=6):
    base = moist_base_state(DIV_GRID)
    start = warm_bubble_state(DIV_GRID, base, 5.0, x_centre=6000.0, y_centre=6000.0)
    step = stepper(DIV_GRID, config(method=solver, tolerance=tolerance, max_iterations=5000),
                   10.0)(base)
    mass, mass_faces = base.mass, base.mass_faces
    mc = mass[:, None, None]

    def body(state, _):
        state, its = step(state)
        div = pressure.mass_divergence(state.u, state.v, state.w, mass, mass_faces, DIV_GRID)
        flux = jnp.max(jnp.stack([jnp.max(jnp.abs(mc * state.u)) / DIV_GRID.dx,
                                  jnp.max(jnp.abs(mc * state.v)) / DIV_GRID.dy,
                                  jnp.max(jnp.abs(mass_faces[:, None, None] * state.w))
                                  / DIV_GRID.dz]))
        return state, (jnp.max(jnp.abs(div)), flux, its)

    final, (div, flux, its) = jax.jit(
        lambda s: jax.lax.scan(body, s, None, length=n_steps))(start)
    return final, np.asarray(div), np.asarray(flux), np.asarray(its)


@pytest.fixture(scope="module")
def constraint_runs():
    tol = 1e-8
    return tol, {solver: divergence_history(solver, tol) for solver in ("pcg", "bicgstab")}


@pytest.mark.parametrize("solver", ["pcg", "bicgstab"])
def test_mass_divergence_at_solver_tolerance_after_every_step(constraint_runs, solver):
    tol, runs = constraint_runs
    _, div, flux, its = runs[solver]
    assert np.all(flux > 0)
    assert np.all(div <= tol * flux), div / flux
    assert np.all(its > 0) and np.all(its < 5000)


def test_solvers_give_the_same_pressure(constraint_runs):
    tol, runs = constraint_runs
    pcg, bicg = runs["pcg"][0], runs["bicgstab"][0]
    scale = float(jnp.max(jnp.abs(pcg.pi)))
    assert scale > 0
    assert float(jnp.max(jnp.abs(pcg.pi - bicg.pi))) < 10 * tol * scale
    assert float(jnp.max(jnp.abs(pcg.w - bicg.w))) < 10 * tol * float(jnp.max(jnp.abs(pcg.w)))
    # and pcg needs far fewer iterations
    assert runs["pcg"][3].sum() * 5 < runs["bicgstab"][3].sum()


# --------------------------------------------------------------------------- the rising bubble


@pytest.mark.slow
def test_warm_bubble_rises():
    """theta_c = 5 K at 400 m: max w after 5 min near the reference 23.6 m/s and
    the theta'-weighted centroid above 3.5 km."""
    grid = Grid(nx=60, ny=60, nz=30, dx=400.0, dy=400.0, dz=400.0)
    base = moist_base_state(grid)
    start = warm_bubble_state(grid, base, 5.0)
    final, its = run(grid, base, config(), 12.0, start, 25)
    w_max = float(jnp.max(final.w))
    assert abs(w_max - 23.6) <= 0.25 * 23.6, w_max
    thpert = np.clip(np.asarray(final.th - base.th0[:, None, None]), 0.0, None)
    z = grid.centres("z")[:, None, None]
    centroid = np.sum(thpert * z) / np.sum(thpert)
    assert centroid > 3500.0, centroid
    assert int(np.max(np.asarray(its))) <= 10


# --------------------------------------------------------------------------- gradients

GRAD_GRID = Grid(nx=16, ny=16, nz=8, dx=1500.0, dy=1500.0, dz=1500.0)


@functools.cache
def ten_step_objective():
    """sum(w^2) + sum(u v) after 10 steps (200 s) of a resolved 4 km bubble, as a
    function of theta_c; pressure solves at tolerance 1e-12."""
    base = moist_base_state(GRAD_GRID)
    step = stepper(GRAD_GRID, config(tolerance=1e-12), 20.0)(base)

    def objective(theta_c):
        start = warm_bubble_state(GRAD_GRID, base, theta_c, x_centre=12000.0,
                                  y_centre=11000.0, z_centre=4000.0, x_radius=4000.0,
                                  y_radius=4000.0, z_radius=4000.0)
        final, _ = advance(step, start, 10)
        return jnp.sum(final.w ** 2) + jnp.sum(final.u * final.v)

    return objective


def test_forward_derivative_through_ten_steps_matches_finite_difference():
    objective = ten_step_objective()
    value_and_tangent = jax.jit(lambda t: jax.jvp(objective, (t,), (jnp.ones_like(t),)))
    theta_c, h = 2.0, 1e-3
    tangent = float(value_and_tangent(theta_c)[1])
    fd = float((value_and_tangent(theta_c + h)[0] - value_and_tangent(theta_c - h)[0]) / (2 * h))
    assert fd > 0
    assert abs(tangent - fd) <= 1e-5 * abs(fd), (tangent, fd)


@pytest.mark.slow
def test_gradient_through_ten_steps_matches_finite_difference():
    objective = ten_step_objective()
    value_and_grad = jax.jit(jax.value_and_grad(objective))
    theta_c, h = 2.0, 1e-3
    grad = float(value_and_grad(theta_c)[1])
    fd = float((value_and_grad(theta_c + h)[0] - value_and_grad(theta_c - h)[0]) / (2 * h))
    assert fd > 0
    assert abs(grad - fd) <= 1e-5 * abs(fd), (grad, fd)
