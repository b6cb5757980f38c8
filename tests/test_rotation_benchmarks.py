"""Coriolis benchmarks on the f-plane (issue 10): an inertial oscillation
against its analytic solution, with the time scheme's order measured, and a
geostrophic state that stays steady.

:class:`xlex.FPlane` adds f k x (u - u_g), i.e. du/dt = f (v - v_g) and
dv/dt = -f (u - u_g). A horizontally uniform wind (u0, v0) in an atmosphere
at rest otherwise is divergence-free and unadvected, so the full model reduces
to this pair of ODEs and

    u - u_g = (u0 - u_g) cos(f t) + (v0 - v_g) sin(f t),
    v - v_g = (v0 - v_g) cos(f t) - (u0 - u_g) sin(f t),

a rotation of the departure from geostrophy with period 2 pi / f (clockwise
for f > 0, as on the northern hemisphere).

One step of SSPRK3(4) multiplies the departure, as a complex number
(u - u_g) + i (v - v_g) whose exact factor per step is exp(-i f dt), by the
scheme's stability polynomial R(z) = 1 + z + z^2/2 + z^3/6 + z^4/48 at
z = -i f dt. With y = f dt, R(z) exp(-z) = 1 - z^4/48 + O(z^5), so after one
period (N = 2 pi / y steps) the error of the wind is 2 pi y^3 / 48 |u0 - u_g|
to leading order, and |R|^2 = 1 - y^4/24 + O(y^6), so the kinetic energy of
the departure falls by 2 pi y^3 / 24 of itself. The tests check these two
leading terms (which fix both the order, 3, and the constant) rather than an
arbitrary tolerance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xlex
from xlex.core.grid import Grid
from xlex.core.initial import moist_base_state
from xlex.core.state import State
from xlex.core.stepping import advance

F = 1.0e-4  # s-1
PERIOD = 2.0 * np.pi / F  # 62,832 s
#: 8 x 8 x 4 cells; 20 km horizontal spacing keeps the Courant number of the
#: uniform wind below 1 at the longest step (20 m/s * 1963 s / 20 km = 0.98).
GRID = Grid(nx=8, ny=8, nz=4, dx=20000.0, dy=20000.0, dz=500.0)
SOLVER = xlex.PressureSolver()  # float64: relative residual 1e-10


def neutral_dry_base(grid):
    """Hydrostatic, th0 = 300 K, dry."""
    return moist_base_state(grid, theta=300.0, relative_humidity=0.0)


def uniform_wind_state(grid, base, u0, v0):
    zero = jnp.zeros(grid.shape)
    th = jnp.broadcast_to(base.th0[:, None, None], grid.shape)
    return State(u=zero + u0, v=zero + v0, w=jnp.zeros(grid.w_shape), th=th,
                 qv=jnp.zeros(grid.shape), pi=zero)


def integrate(physics, dt, n_steps, u0, v0):
    """Final state after ``n_steps`` of the full model from a uniform wind."""
    base = neutral_dry_base(GRID)
    step = xlex.make_step(GRID, physics, dt)
    params = xlex.parameters(physics)
    start = uniform_wind_state(GRID, base, u0, v0)
    final, _ = jax.jit(lambda s: advance(lambda x: step(x, base, params), s, n_steps))(start)
    return start, final


def analytic(t, u0, v0, ug, vg):
    c, s = np.cos(F * t), np.sin(F * t)
    return ug + (u0 - ug) * c + (v0 - vg) * s, vg + (v0 - vg) * c - (u0 - ug) * s


STEPS_PER_PERIOD = (32, 64, 128)


@pytest.fixture(scope="module", params=[(0.0, 0.0), (5.0, -3.0)],
                ids=["no-geostrophic-wind", "geostrophic-wind"])
def oscillations(request):
    """One period of the inertial oscillation of u0 = (10, 0) m/s at three time
    steps: {N: (start, final state)} and the geostrophic wind."""
    ug, vg = request.param
    physics = xlex.Physics(rotation=xlex.FPlane(f=F, geostrophic_wind=(ug, vg)), pressure=SOLVER)
    runs = {n: integrate(physics, PERIOD / n, n, 10.0, 0.0) for n in STEPS_PER_PERIOD}
    return runs, (ug, vg)


def wind_error(final, u0, v0, ug, vg, t):
    """Largest magnitude of the vector error of the horizontal wind [m/s]."""
    ue, ve = analytic(t, u0, v0, ug, vg)
    return float(jnp.max(jnp.hypot(final.u - ue, final.v - ve)))


def test_inertial_oscillation_follows_the_analytic_rotation(oscillations):
    """After one period 2 pi / f the wind is back at (u0, v0) with the error the
    scheme's leading term predicts, 2 pi (f dt)^3 / 48 |u0 - u_g| within 1 %
    (measured 9.909e-3, 1.239e-3 and 1.548e-4 m/s at dt = T/32, T/64, T/128
    for u_g = 0), and the wind stays uniform, w = 0 and th unchanged to
    round-off."""
    runs, (ug, vg) = oscillations
    departure = np.hypot(10.0 - ug, 0.0 - vg)
    for n, (start, final) in runs.items():
        y = F * PERIOD / n
        predicted = 2.0 * np.pi * y ** 3 / 48.0 * departure
        error = wind_error(final, 10.0, 0.0, ug, vg, PERIOD)
        assert 0.99 * predicted < error < 1.01 * predicted, (n, error, predicted)
        assert float(jnp.max(jnp.abs(final.w))) < 1e-12
        assert float(jnp.max(jnp.abs(final.th - start.th))) < 1e-10
        assert float(jnp.std(final.u)) < 1e-12 and float(jnp.std(final.v)) < 1e-12


def test_inertial_oscillation_is_third_order_in_time(oscillations):
    """The fitted slope of log(error) against log(dt) over dt = T/32, T/64,
    T/128 is 3 (2.99-3.01; measured 3.00001): the error falls 8x (7.9-8.1)
    when dt halves."""
    runs, (ug, vg) = oscillations
    dts = np.array([PERIOD / n for n in runs])
    errors = np.array([wind_error(final, 10.0, 0.0, ug, vg, PERIOD)
                       for _, final in runs.values()])
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert 2.99 < slope < 3.01, (slope, errors)
    ratios = errors[:-1] / errors[1:]
    assert np.all((ratios > 7.9) & (ratios < 8.1)), ratios


def test_inertial_oscillation_keeps_its_kinetic_energy(oscillations):
    """The kinetic energy of the departure from geostrophy, (|u - u_g|^2)/2,
    changes over a period only by the scheme's damping 2 pi (f dt)^3 / 24 of
    itself (within 2 %; the next term is smaller by (f dt)^2): measured 1.967e-3,
    2.473e-4 and 3.095e-5 at dt = T/32, T/64, T/128; it never grows."""
    runs, (ug, vg) = oscillations
    ke0 = 0.5 * ((10.0 - ug) ** 2 + vg ** 2)
    for n, (_, final) in runs.items():
        y = F * PERIOD / n
        ke = 0.5 * float(jnp.mean((final.u - ug) ** 2 + (final.v - vg) ** 2))
        loss = (ke0 - ke) / ke0
        predicted = 2.0 * np.pi * y ** 3 / 24.0
        assert 0.98 * predicted < loss < 1.02 * predicted, (n, loss, predicted)


def test_quarter_period_turns_the_wind_clockwise():
    """The sign of FPlane's rotation: with f > 0, (10, 0) m/s becomes (0, -10)
    after a quarter period (to the scheme's error at dt = T/256)."""
    physics = xlex.Physics(rotation=xlex.FPlane(f=F), pressure=SOLVER)
    _, final = integrate(physics, PERIOD / 256, 64, 10.0, 0.0)
    assert float(jnp.max(jnp.abs(final.u))) < 1e-4
    assert float(jnp.max(jnp.abs(final.v + 10.0))) < 1e-4


def test_geostrophic_wind_stays_steady_through_integrate():
    """A uniform wind equal to FPlane's geostrophic wind, over a stratified,
    moist atmosphere at rest otherwise, is an exact steady state: through
    Dataset.lex.integrate (float64) it is unchanged to round-off after 500
    steps (5.8 days at dt = 1000 s; measured 6.4e-14 m/s), and so are th and
    qv.

    The projections of this exact state solve for round-off right-hand sides,
    which a relative tolerance cannot meet: some solves run to max_iterations
    and the runner warns that the divergence may be above tolerance, though
    the state stays exact (reported under issue 10 item 5)."""
    ug, vg = 7.0, -4.0
    ds0 = xlex.cases.convective_boundary_layer(
        dx=10000.0, x_length=80000.0, y_length=80000.0, dz=250.0, z_length=1000.0,
        mixed_layer_height=500.0, perturbation=0.0, u=ug, v=vg)
    physics = xlex.Physics(rotation=xlex.FPlane(f=F, geostrophic_wind=(ug, vg)), pressure=SOLVER)
    out = ds0.lex.integrate(500_000.0, dt=1000.0, output_every=100_000.0, physics=physics,
                            precision="float64", progress=False)
    assert out.sizes["time"] == 6
    assert float(np.abs(out.u - ug).max()) < 1e-12
    assert float(np.abs(out.v - vg).max()) < 1e-12
    assert float(np.abs(out.w).max()) < 1e-12
    assert float(np.abs(out.th - ds0.th.isel(time=0)).max()) < 1e-10
    assert float(np.abs(out.qv - ds0.qv.isel(time=0)).max()) < 1e-15
    assert out.attrs["coriolis_parameter"] == F
