"""Flux-form WENO advection on the C grid: order of accuracy, uniform-field
preservation, conservation and mirror symmetry."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xlex.core import operators as op
from xlex.core.dynamics import advection as adv
from xlex.core.dynamics import pressure
from xlex.core.grid import Grid
from xlex.core.initial import moist_base_state

RESOLUTIONS = np.array([16, 32, 64, 128])


def fitted_order(errors, ns=RESOLUTIONS):
    """Slope of log(error) against log(spacing), spacing = 1 / n."""
    errors = np.asarray(errors, dtype=float)
    assert np.all(np.isfinite(errors)) and np.all(errors > 0), errors
    return np.polyfit(np.log(1.0 / np.asarray(ns)), np.log(errors), 1)[0]


def profile(s, amplitude, two_modes, phase=0.37):
    """A smooth periodic profile of s in [0, 1) and its derivative."""
    q = np.sin(2 * np.pi * s + phase)
    dq = 2 * np.pi * np.cos(2 * np.pi * s + phase)
    if two_modes:
        q = q + 0.5 * np.cos(4 * np.pi * s + 0.3)
        dq = dq - 2 * np.pi * np.sin(4 * np.pi * s + 0.3)
    return amplitude * q, amplitude * dq


_tendencies = jax.jit(adv.advection_tendencies,
                      static_argnames=("order_z", "eps", "linear_momentum", "eps_mode",
                                       "positive_dt"))


def tendencies(u, v, w, th, qv, mass, mass_faces, dx, dy, dz, **kw):
    """advection_tendencies (jitted) as numpy arrays."""
    args = [jnp.asarray(a, jnp.float64) for a in (u, v, w, th, qv, mass, mass_faces)]
    return [np.asarray(t) for t in _tendencies(*args, dx, dy, dz, **kw)]


@functools.cache
def horizontal_errors(n, axis, velocity, eps_mode="absolute"):
    """Max errors of advective tendencies of 1-D fields along a periodic axis
    carried by a uniform velocity (uniform mass, so zero divergence):

    * ``weno``: th, a single Fourier mode of amplitude 1 (WENO weights in their
      nonlinear regime, beta >> eps);
    * ``weno_smooth``: qv, two modes of amplitude 0.01 (weights near optimal);
    * ``upwind5``: the wind component across the flow (v when advected along x,
      u along y), two modes of amplitude 1, advected with linear upwind5 and
      seeing a uniform mass flux.

    The near-optimal regime of ``weno_smooth`` is one of the absolute epsilon
    (``eps_mode="absolute"``, the default here); with the relative epsilon the
    qv field behaves like th, see :func:`test_relative_weno5_order_and_units`.

    One (n, n) plane serves both axes, so one compilation per resolution.
    """
    d = 1.0 / n
    s = (np.arange(n) + 0.5) * d
    th, dth = profile(s, 1.0, False)
    qv, dqv = profile(s, 1e-2, True)
    mom, dmom = profile(s, 1.0, True)
    along = lambda a: np.broadcast_to(a, (2, n, n))  # varies along x  # noqa: E731
    if axis == "y":
        along = lambda a: np.broadcast_to(a[:, None], (2, n, n))  # noqa: E731
    flow = along(np.full(n, velocity))
    u, v = (flow, along(mom)) if axis == "x" else (along(mom), flow)
    w = np.zeros((3, n, n))
    u_t, v_t, _, th_t, qv_t = tendencies(u, v, w, along(th), along(qv), np.ones(2),
                                         np.ones(3), d, d, 1.0, linear_momentum=True,
                                         eps_mode=eps_mode)
    cross_t = v_t if axis == "x" else u_t
    return {"weno": np.max(np.abs(th_t + velocity * along(dth))),
            "weno_smooth": np.max(np.abs(qv_t + velocity * along(dqv))),
            "upwind5": np.max(np.abs(cross_t + velocity * along(dmom)))}


@functools.cache
def vertical_errors(n, order, velocity, eps_mode="absolute"):
    """As :func:`horizontal_errors` along z, with w uniform on the interior faces
    (zero on the walls) and u(z) the linearly advected wind; errors on the cells
    >= 4 levels from the walls (there the divergence is zero and the stencils
    have their full width)."""
    d = 1.0 / n
    s = (np.arange(n) + 0.5) * d
    th, dth = profile(s, 1.0, False)
    qv, dqv = profile(s, 1e-2, True)
    mom, dmom = profile(s, 1.0, True)
    col = lambda a: np.broadcast_to(a[:, None, None], (n, 6, 6))  # noqa: E731
    w = np.full((n + 1, 6, 6), velocity)
    w[0] = w[-1] = 0.0
    u_t, _, _, th_t, qv_t = tendencies(col(mom), np.zeros((n, 6, 6)), w, col(th), col(qv),
                                       np.ones(n), np.ones(n + 1), 1.0, 1.0, d, order_z=order,
                                       linear_momentum=True, eps_mode=eps_mode)
    inner = slice(4, n - 4)
    err = lambda t, dq: np.max(np.abs(t[inner] + velocity * col(dq)[inner]))  # noqa: E731
    return {"weno": err(th_t, dth), "weno_smooth": err(qv_t, dqv),
            f"upwind{order}": err(u_t, dmom)}


@pytest.mark.parametrize("axis", ["x", "y"])
@pytest.mark.parametrize("velocity", [2.5, -2.5])
def test_horizontal_weno5_is_fifth_order(axis, velocity):
    errs = [horizontal_errors(n, axis, velocity) for n in RESOLUTIONS]
    for key in ("weno", "weno_smooth"):
        e = [x[key] for x in errs]
        assert fitted_order(e) >= 4.5, (key, e)


@pytest.mark.parametrize("axis", ["x", "y"])
@pytest.mark.parametrize("velocity", [2.5, -2.5])
def test_horizontal_linear_upwind5_is_fifth_order(axis, velocity):
    e = [horizontal_errors(n, axis, velocity)["upwind5"] for n in RESOLUTIONS]
    assert 4.7 <= fitted_order(e) <= 5.3, e


@pytest.mark.parametrize("velocity", [2.5, -2.5])
@pytest.mark.parametrize("order", [5, 3])
def test_vertical_weno_order_in_the_interior(order, velocity):
    errs = [vertical_errors(n, order, velocity) for n in RESOLUTIONS]
    e = [x["weno_smooth"] for x in errs]
    assert fitted_order(e) >= (4.5 if order == 5 else 2.5), e
    if order == 5:  # WENO5 stays fifth order in the nonlinear regime too
        e = [x["weno"] for x in errs]
        assert fitted_order(e) >= 4.5, e


@pytest.mark.parametrize("velocity", [2.5, -2.5])
@pytest.mark.parametrize("order", [5, 3])
def test_vertical_linear_upwind_order_in_the_interior(order, velocity):
    e = [vertical_errors(n, order, velocity)[f"upwind{order}"] for n in RESOLUTIONS]
    assert order - 0.3 <= fitted_order(e) <= order + 0.3, e


@pytest.mark.parametrize("velocity", [2.5, -2.5])
def test_relative_weno_order_and_units(velocity):
    # relative epsilon: th (one mode, amplitude 1) keeps fifth order along x and z
    hx = [horizontal_errors(n, "x", velocity, "relative") for n in RESOLUTIONS]
    assert fitted_order([x["weno"] for x in hx]) >= 4.5
    vz = [vertical_errors(n, 5, velocity, "relative") for n in RESOLUTIONS]
    assert fitted_order([x["weno"] for x in vz]) >= 4.5
    hx_abs = [horizontal_errors(n, "x", velocity) for n in RESOLUTIONS]
    # th of amplitude 1: the relative epsilon (1e-6 * range^2 = 4e-6) is close
    # to the absolute 1e-6, so the errors agree within a factor 2
    for rel, ab in zip(hx, hx_abs):
        assert 0.5 <= rel["weno"] / ab["weno"] <= 2.0


_periodic = jax.jit(adv.periodic_face_values, static_argnames=("axis", "linear"))
_bounded = jax.jit(adv.bounded_interior_face_value, static_argnames=("order", "linear"))


def cell_averages(n, phase=0.37):
    """Exact cell averages of sin(2 pi z + phase) on n cells of [0, 1], and the
    exact point values on the n - 1 interior faces."""
    edges = np.arange(n + 1) / n
    prim = -np.cos(2 * np.pi * edges + phase) / (2 * np.pi)
    return (prim[1:] - prim[:-1]) * n, np.sin(2 * np.pi * edges[1:-1] + phase)


@pytest.mark.parametrize("linear", [True, False])
@pytest.mark.parametrize("velocity", [1.0, -1.0])
@pytest.mark.parametrize("order", [5, 3])
def test_bounded_face_value_orders_by_distance_to_wall(order, velocity, linear):
    """Reconstruction of face point values from cell averages: order 5 (or 3) on
    faces with >= 3 (>= 2) cells on the nearer side, third order on faces with 2,
    and the centred mean (second order) on the faces next to the walls."""
    amplitude = 1.0 if linear else 1e-2
    ns = np.array([16, 32, 64, 128])
    errs = {"deep": [], "second": [], "first": []}
    for n in ns:
        avg, exact = cell_averages(n)
        q = jnp.asarray(amplitude * np.broadcast_to(avg[:, None, None], (n, 6, 6)))
        vel = jnp.full((n - 1, 6, 6), velocity)
        got = np.asarray(_bounded(q, vel, order, linear=linear))
        err = np.abs(got[:, 0, 0] - amplitude * exact)
        nearer = np.minimum(np.arange(n - 1) + 1, n - 1 - np.arange(n - 1))
        errs["deep"].append(err[nearer >= 3].max())
        errs["second"].append(err[nearer == 2].max())
        errs["first"].append(err[nearer == 1].max())
        # a uniform field is reproduced exactly everywhere
        const = _bounded(jnp.full((n, 6, 6), 3.0), vel, order, linear=linear)
        np.testing.assert_allclose(np.asarray(const), 3.0, rtol=1e-14)
    target = {"deep": order, "second": 3, "first": 2}
    for key, err in errs.items():
        slope = fitted_order(err, ns)
        assert slope >= target[key] - 0.4, (key, err, slope)
        if linear:
            assert slope <= target[key] + 0.4, (key, err, slope)


@pytest.mark.parametrize("linear", [True, False])
def test_periodic_face_value_upwinds_and_is_fifth_order(linear):
    amplitude = 1.0 if linear else 1e-2
    errs = {1.0: [], -1.0: []}
    for n in RESOLUTIONS:
        edges = np.arange(n + 1) / n
        prim = -np.cos(2 * np.pi * edges + 0.37) / (2 * np.pi)
        avg = amplitude * (prim[1:] - prim[:-1]) * n
        exact = amplitude * np.sin(2 * np.pi * edges + 0.37)  # faces 0 .. n
        q = jnp.asarray(np.broadcast_to(avg, (2, 6, n)))
        for sign in errs:
            got = np.asarray(_periodic(q, jnp.full((2, 6, n + 1), sign), op.X, linear=linear))
            assert got.shape == (2, 6, n + 1)
            # the last face is the first one again, to the bit
            np.testing.assert_array_equal(got[..., -1], got[..., 0])
            errs[sign].append(np.max(np.abs(got[0, 0] - exact)))
    for sign, err in errs.items():
        assert fitted_order(err) >= 4.5, (sign, err)
    # the two upwind directions use different stencils
    q = jnp.asarray(np.random.default_rng(1).standard_normal((2, 6, 12)))
    east = _periodic(q, jnp.ones((2, 6, 13)), op.X, linear=linear)
    west = _periodic(q, -jnp.ones((2, 6, 13)), op.X, linear=linear)
    assert np.max(np.abs(np.asarray(east - west))) > 1e-2
    # mirror image: the value from the east on face i of q is the value from the
    # west on face n - i of the mirrored field
    back = _periodic(q[..., ::-1], jnp.ones((2, 6, 13)), op.X, linear=linear)
    np.testing.assert_allclose(np.asarray(back[..., ::-1]), np.asarray(west), rtol=0,
                               atol=1e-13)
    # along y, the same values as along x of the transposed field
    along_y = _periodic(jnp.swapaxes(q, -1, -2), -jnp.ones((2, 13, 6)), op.Y, linear=linear)
    np.testing.assert_allclose(np.asarray(jnp.swapaxes(along_y, -1, -2)), np.asarray(west),
                               rtol=0, atol=1e-13)


# --------------------------------------------------------------------------- invariants

GRID = Grid(nx=12, ny=10, nz=8, dx=100.0, dy=150.0, dz=80.0)


def random_flow(grid, seed, amplitude=5.0):
    rng = np.random.default_rng(seed)
    u = amplitude * rng.standard_normal(grid.shape)
    v = amplitude * rng.standard_normal(grid.shape)
    w = amplitude * rng.standard_normal(grid.w_shape)
    w[0] = w[-1] = 0.0
    return jnp.asarray(u), jnp.asarray(v), jnp.asarray(w)


@pytest.fixture(scope="module")
def base():
    return moist_base_state(GRID, theta=lambda z: 300.0 + 0.004 * z)


@pytest.fixture(scope="module")
def divergence_free_flow(base):
    """A random flow made discretely divergence-free (mass flux) by the projection."""
    u, v, w = random_flow(GRID, 0)
    thrho = jnp.broadcast_to(base.thrho0[:, None, None], GRID.shape)
    before = pressure.mass_divergence(u, v, w, base.mass, base.mass_faces, GRID)
    u, v, w, _, _ = pressure.project(u, v, w, thrho, base.mass, base.mass_faces, GRID, 1.0,
                                     jnp.zeros(GRID.shape), solver="bicgstab",
                                     tolerance=1e-13, max_iterations=5000)
    after = pressure.mass_divergence(u, v, w, base.mass, base.mass_faces, GRID)
    assert jnp.linalg.norm(after) < 1e-11 * jnp.linalg.norm(before)
    assert float(jnp.max(jnp.abs(w[0]))) == 0.0 and float(jnp.max(jnp.abs(w[-1]))) == 0.0
    return u, v, w


@pytest.mark.parametrize("divergence_free", [True, False])
def test_uniform_scalar_stays_uniform(base, divergence_free, divergence_free_flow):
    # the divergence correction keeps a uniform scalar uniform whatever the flow
    u, v, w = divergence_free_flow if divergence_free else random_flow(GRID, 3)
    rng = np.random.default_rng(2)
    th = jnp.asarray(300.0 + rng.standard_normal(GRID.shape))
    qv = jnp.full(GRID.shape, 0.0123)
    for order in (5, 3):
        *_, qv_t = tendencies(u, v, w, th, qv, base.mass, base.mass_faces,
                              GRID.dx, GRID.dy, GRID.dz, order_z=order)
        scale = 0.0123 * float(jnp.max(jnp.abs(u))) / GRID.dx
        assert np.max(np.abs(qv_t)) < 1e-12 * scale
    # and the th tendency is not trivially zero
    assert np.max(np.abs(tendencies(u, v, w, th, qv, base.mass, base.mass_faces,
                                    GRID.dx, GRID.dy, GRID.dz)[3])) > 1e-3


def test_scalar_integral_is_conserved(base, divergence_free_flow):
    u, v, w = divergence_free_flow
    rng = np.random.default_rng(4)
    q = jnp.asarray(5.0 + rng.standard_normal(GRID.shape))
    m = np.asarray(base.mass)[:, None, None]
    for order in (5, 3):
        *_, th_t, qv_t = tendencies(u, v, w, q, q * q, base.mass, base.mass_faces,
                                    GRID.dx, GRID.dy, GRID.dz, order_z=order)
        for t in (th_t, qv_t):
            total = np.sum(m * t)
            assert abs(total) < 1e-12 * np.sum(np.abs(m * t)), (total, np.sum(np.abs(m * t)))


def test_flux_form_telescopes_for_any_flow(base):
    """sum(m q_t) = sum(q div F) exactly (round-off) even for a divergent flow:
    the flux part of the tendency telescopes in x, y and z (no wall flux)."""
    u, v, w = random_flow(GRID, 5)
    rng = np.random.default_rng(6)
    q = jnp.asarray(5.0 + rng.standard_normal(GRID.shape))
    m = np.asarray(base.mass)[:, None, None]
    div = np.asarray(pressure.mass_divergence(u, v, w, base.mass, base.mass_faces, GRID))
    th_t = tendencies(u, v, w, q, q, base.mass, base.mass_faces, GRID.dx, GRID.dy, GRID.dz)[3]
    lhs, rhs = np.sum(m * th_t), np.sum(np.asarray(q) * div)
    assert abs(rhs) > 1e-3 * np.sum(np.abs(np.asarray(q) * div))  # not trivially zero
    assert abs(lhs - rhs) < 1e-12 * np.sum(np.abs(m * th_t))


def mirror_x(fields):
    """Mirror x -> L - x: centres i -> n-1-i, west faces i -> (n - i) % n with u -> -u."""
    u, v, w, th, qv = fields
    flip = lambda a: a[..., ::-1]  # noqa: E731
    face = lambda a: jnp.roll(a[..., ::-1], 1, axis=-1)  # noqa: E731
    return -face(u), flip(v), flip(w), flip(th), flip(qv)


def mirror_y(fields):
    u, v, w, th, qv = fields
    flip = lambda a: a[..., ::-1, :]  # noqa: E731
    face = lambda a: jnp.roll(a[..., ::-1, :], 1, axis=-2)  # noqa: E731
    return flip(u), -face(v), flip(w), flip(th), flip(qv)


def mirror_z(fields):
    u, v, w, th, qv = fields
    flip = lambda a: a[..., ::-1, :, :]  # noqa: E731
    return flip(u), flip(v), -flip(w), flip(th), flip(qv)


@pytest.mark.parametrize("linear", [True, False])
@pytest.mark.parametrize("mirror", [mirror_x, mirror_y, mirror_z])
def test_mirror_symmetry(mirror, linear, base):
    rng = np.random.default_rng(7)
    u, v, w = random_flow(GRID, 8)
    th = jnp.asarray(300.0 + rng.standard_normal(GRID.shape))
    qv = jnp.asarray(0.01 + 1e-3 * rng.standard_normal(GRID.shape))
    mass, mass_faces = base.mass, base.mass_faces
    if mirror is mirror_z:  # needs a mass profile symmetric in z
        mass = 0.5 * (mass + mass[::-1])
        mass_faces = jnp.concatenate([mass[:1], 0.5 * (mass[1:] + mass[:-1]), mass[-1:]])
    fields = (u, v, w, th, qv)
    kw = dict(order_z=5, linear_momentum=linear)
    direct = tendencies(*mirror(fields), mass, mass_faces, GRID.dx, GRID.dy, GRID.dz, **kw)
    image = mirror(tuple(jnp.asarray(t) for t in tendencies(
        *fields, mass, mass_faces, GRID.dx, GRID.dy, GRID.dz, **kw)))
    for name, a, b in zip("u v w th qv".split(), direct, image, strict=True):
        scale = np.max(np.abs(b))
        assert scale > 0, name
        np.testing.assert_allclose(a, np.asarray(b), rtol=0, atol=1e-12 * scale, err_msg=name)
