"""The pressure equation: operator, FFT-tridiagonal preconditioner, Krylov
solvers, projection and derivatives through the solve."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from xlex.core import operators as op
from xlex.core import thermo
from xlex.core.dynamics import pressure
from xlex.core.grid import Grid
from xlex.core.initial import moist_base_state, warm_bubble_state

# --------------------------------------------------------------------------- set-up

GRID = Grid(nx=16, ny=12, nz=10, dx=400.0, dy=500.0, dz=300.0)


def rng_field(seed, shape=GRID.shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def zero_mean(a):
    return a - jnp.mean(a)


@pytest.fixture(scope="module")
def base():
    return moist_base_state(GRID, theta=lambda z: 300.0 + 0.004 * z)


def bubble_thrho(grid, base, theta_c=5.0):
    lx, ly = grid.nx * grid.dx, grid.ny * grid.dy
    s = warm_bubble_state(grid, base, theta_c, x_centre=0.4 * lx, y_centre=0.55 * ly,
                          z_centre=0.3 * grid.nz * grid.dz, x_radius=0.25 * lx,
                          y_radius=0.25 * ly, z_radius=0.25 * grid.nz * grid.dz)
    return thermo.density_potential_temperature(s.th, s.qv)


@pytest.fixture(scope="module")
def coef(base):
    """Coefficients of a fully 3-D thrho: a bubble plus 0.5 K noise."""
    thrho = bubble_thrho(GRID, base) + 0.5 * rng_field(99)
    return pressure.elliptic_coefficients(thrho, base.mass, base.mass_faces)


@pytest.fixture(scope="module")
def layered_coef(base):
    """Coefficients of a horizontally uniform thrho (stratified base state)."""
    thrho = jnp.broadcast_to(base.thrho0[:, None, None], GRID.shape)
    return pressure.elliptic_coefficients(thrho, base.mass, base.mass_faces)


_operator = jax.jit(pressure.pressure_operator, static_argnums=2)


def apply(phi, coef, grid=GRID):
    return _operator(phi, coef, grid)


# --------------------------------------------------------------------------- operator


def test_coefficients_are_positive_with_zero_wall_faces(coef):
    assert float(jnp.min(coef.cx)) > 0 and float(jnp.min(coef.cy)) > 0
    assert float(jnp.min(coef.cz[1:-1])) > 0
    assert float(jnp.max(jnp.abs(coef.cz[0]))) == 0.0
    assert float(jnp.max(jnp.abs(coef.cz[-1]))) == 0.0


def test_operator_is_linear_symmetric_and_kills_constants(coef):
    x, y = rng_field(1), rng_field(2)
    ax, ay = apply(x, coef), apply(y, coef)
    scale = float(jnp.linalg.norm(ax) * jnp.linalg.norm(y))
    # linear (no affine boundary term)
    lin = apply(2.5 * x - 0.75 * y, coef) - (2.5 * ax - 0.75 * ay)
    assert float(jnp.linalg.norm(lin)) < 1e-13 * float(jnp.linalg.norm(ax))
    assert float(jnp.max(jnp.abs(apply(jnp.zeros(GRID.shape), coef)))) == 0.0
    # symmetric
    assert abs(float(jnp.vdot(x, ay) - jnp.vdot(ax, y))) < 1e-10 * scale
    # positive on non-constant fields
    for seed in range(3, 8):
        z = rng_field(seed)
        assert float(jnp.vdot(z, apply(z, coef))) > 0
    # the constant is in the null space
    ones = apply(jnp.full(GRID.shape, 7.0), coef)
    assert float(jnp.max(jnp.abs(ones))) < 1e-12 * float(jnp.max(jnp.abs(ax)))
    # and sums to zero (its range is orthogonal to the constant)
    assert abs(float(jnp.sum(ax))) < 1e-12 * float(jnp.sum(jnp.abs(ax)))


def test_operator_matrix_is_symmetric_psd_with_one_dimensional_null_space(base):
    grid = Grid(nx=6, ny=6, nz=4, dx=300.0, dy=450.0, dz=250.0)
    small_base = moist_base_state(grid, theta=lambda z: 300.0 + 0.004 * z)
    thrho = bubble_thrho(grid, small_base) + 0.5 * rng_field(11, grid.shape)
    c = pressure.elliptic_coefficients(thrho, small_base.mass, small_base.mass_faces)
    n = grid.points
    basis = jnp.eye(n).reshape((n,) + grid.shape)
    mat = np.asarray(jax.vmap(lambda e: pressure.pressure_operator(e, c, grid))(basis))
    mat = mat.reshape(n, n).T  # column j = A e_j
    norm = np.max(np.abs(mat))
    assert np.max(np.abs(mat - mat.T)) < 1e-12 * norm
    eig = np.linalg.eigvalsh(0.5 * (mat + mat.T))
    assert eig[0] > -1e-12 * eig[-1]
    assert abs(eig[0]) < 1e-12 * eig[-1]  # the constant
    assert eig[1] > 1e-6 * eig[-1]  # nothing else is (near-)singular
    # the operator is the discrete -div(c grad) from the operators module
    phi = rng_field(12, grid.shape)
    ref = -op.divergence(c.cx * op.diff_x_centre_to_face(phi, grid.dx),
                         c.cy * op.diff_y_centre_to_face(phi, grid.dy),
                         c.cz * op.diff_z_centre_to_face(phi, grid.dz),
                         grid.dx, grid.dy, grid.dz)
    np.testing.assert_allclose(mat @ np.asarray(phi).ravel(), np.asarray(ref).ravel(),
                               rtol=1e-12, atol=1e-12 * norm)


def test_operator_on_a_fourier_mode_with_uniform_coefficients():
    """With uniform coefficients c, A acts on cos(kx x) cos(pi z / H)-type modes
    (walls: cosine in z) as c times the discrete eigenvalue."""
    grid = Grid(nx=16, ny=8, nz=8, dx=100.0, dy=200.0, dz=50.0)
    c = pressure.EllipticCoefficients(jnp.full(grid.shape, 3.0), jnp.full(grid.shape, 3.0),
                                      op.zero_walls(jnp.full(grid.w_shape, 3.0)))
    i = np.arange(grid.nx)[None, None, :]
    j = np.arange(grid.ny)[None, :, None]
    k = np.arange(grid.nz)[:, None, None]
    a, b, m = 2, 1, 3
    mode = (np.cos(2 * np.pi * a * i / grid.nx) * np.sin(2 * np.pi * b * j / grid.ny)
            * np.cos(np.pi * m * (k + 0.5) / grid.nz))
    lam = 3.0 * ((2 - 2 * np.cos(2 * np.pi * a / grid.nx)) / grid.dx ** 2
                 + (2 - 2 * np.cos(2 * np.pi * b / grid.ny)) / grid.dy ** 2
                 + (2 - 2 * np.cos(np.pi * m / grid.nz)) / grid.dz ** 2)
    got = np.asarray(pressure.pressure_operator(jnp.asarray(mode), c, grid))
    np.testing.assert_allclose(got, lam * mode, rtol=0, atol=1e-12 * lam)


# --------------------------------------------------------------------------- preconditioner


def test_preconditioner_is_exact_for_horizontally_uniform_thrho(layered_coef):
    precondition = jax.jit(pressure.fft_tridiagonal_preconditioner(layered_coef, GRID))
    for seed in (20, 21):
        x = rng_field(seed)
        back = precondition(apply(x, layered_coef))
        # M^-1 A x = x up to the constant (the null space)
        np.testing.assert_allclose(np.asarray(zero_mean(back)), np.asarray(zero_mean(x)),
                                   rtol=0, atol=1e-10 * float(jnp.max(jnp.abs(x))))
        # and A M^-1 r = r on the range of A (zero-mean r)
        r = zero_mean(x)
        np.testing.assert_allclose(np.asarray(apply(precondition(r), layered_coef)),
                                   np.asarray(r), rtol=0, atol=1e-10 * float(jnp.max(jnp.abs(r))))


def diagonally_dominant_systems(seed, n=9, columns=(4, 3)):
    """Random tridiagonal systems along axis 0 (lower[0] = upper[-1] = 0), each
    row's diagonal larger than its couplings, with two right-hand sides."""
    rng = np.random.default_rng(seed)
    lower = -rng.uniform(0.1, 1.0, (n,) + columns)
    upper = -rng.uniform(0.1, 1.0, (n,) + columns)
    lower[0], upper[-1] = 0.0, 0.0
    diag = np.abs(lower) + np.abs(upper) + rng.uniform(0.01, 2.0, (n,) + columns)
    return lower, diag, upper, rng.standard_normal((n,) + columns + (2,))


def test_thomas_and_library_tridiagonal_solves_equal_dense_solves():
    lower, diag, upper, b = diagonally_dominant_systems(40)
    factors = jax.jit(pressure.thomas_factor)(lower, diag, upper)
    thomas = np.asarray(jax.jit(pressure.thomas_solve)(lower, factors, b))
    library = np.asarray(jax.jit(pressure.library_tridiagonal_solve)(lower, diag, upper, b))
    for j, i in np.ndindex(diag.shape[1:]):
        dense = (np.diag(diag[:, j, i]) + np.diag(lower[1:, j, i], -1)
                 + np.diag(upper[:-1, j, i], 1))
        exact = np.linalg.solve(dense, b[:, j, i])
        np.testing.assert_allclose(thomas[:, j, i], exact, rtol=0, atol=1e-12)
        # the solve used off the CPU (GPU), checked here against the same systems
        np.testing.assert_allclose(library[:, j, i], exact, rtol=0, atol=1e-12)


def test_preconditioner_columns_are_solved_by_elimination_on_the_cpu():
    # lowered for the CPU, the column solves are the elimination (three scans),
    # not LAPACK's gtsv column by column (a third of a step); lowered for a GPU,
    # the batched library solve
    lower, diag, upper, b = diagonally_dominant_systems(41)

    def solve(lower, diag, upper, b):
        factors = pressure.thomas_factor(lower, diag, upper)
        return pressure.tridiagonal_columns_solve(lower, diag, upper, factors, b)

    traced = jax.jit(solve).trace(lower, diag, upper, b)
    cpu = traced.lower(lowering_platforms=("cpu",)).as_text()
    assert "custom_call" not in cpu and cpu.count("stablehlo.while") == 3
    assert "gtsv" in traced.lower(lowering_platforms=("cuda",)).as_text()
    np.testing.assert_allclose(
        np.asarray(jax.jit(solve)(lower, diag, upper, b)),
        np.asarray(pressure.library_tridiagonal_solve(lower, diag, upper, b)),
        rtol=0, atol=1e-12)


def test_preconditioner_is_symmetric_positive_for_3d_thrho(coef):
    precondition = jax.jit(pressure.fft_tridiagonal_preconditioner(coef, GRID))
    x, y = zero_mean(rng_field(30)), zero_mean(rng_field(31))
    mx, my = precondition(x), precondition(y)
    scale = float(jnp.linalg.norm(mx) * jnp.linalg.norm(y))
    assert abs(float(jnp.vdot(mx, y) - jnp.vdot(x, my))) < 1e-10 * scale
    assert float(jnp.vdot(x, mx)) > 0
    # linear
    np.testing.assert_allclose(np.asarray(precondition(2.0 * x - 3.0 * y)),
                               np.asarray(2.0 * mx - 3.0 * my), rtol=0,
                               atol=1e-12 * float(jnp.max(jnp.abs(mx))))


# --------------------------------------------------------------------------- solvers


#: The jitted solves, by (grid, options): a configuration is compiled once per module.
_SOLVES = {}


def solve(rhs, coef, grid=GRID, guess=None, **kw):
    guess = jnp.zeros(grid.shape) if guess is None else guess
    key = (grid, tuple(sorted(kw.items())))
    if key not in _SOLVES:
        _SOLVES[key] = jax.jit(lambda r, c, g: pressure.pressure_solve(r, c, grid, g, **kw))
    return _SOLVES[key](rhs, coef, guess)


def relative_residual(phi, rhs, coef, grid=GRID):
    return float(jnp.linalg.norm(rhs - pressure.pressure_operator(phi, coef, grid))
                 / jnp.linalg.norm(rhs))


def buoyancy_rhs(grid, base, thrho_state):
    """The right-hand side of a projection: -div(m u*) / c with u* the vertical
    velocity a buoyant bubble gains in one stage."""
    th, qv = thrho_state
    weight = 5.0
    w = weight * op.zero_walls(op.interp_z_centre_to_face(thermo.buoyancy(th, qv, base)))
    z = jnp.zeros(grid.shape)
    return -pressure.mass_divergence(z, z, w, base.mass, base.mass_faces, grid) / weight


@pytest.mark.parametrize("tolerance", [1e-6, 1e-10])
def test_solvers_reach_the_tolerance_and_agree(coef, tolerance):
    rhs = zero_mean(rng_field(40))
    results = {}
    for solver in ("pcg", "bicgstab"):
        phi, its = solve(rhs, coef, solver=solver, tolerance=tolerance, max_iterations=5000)
        assert 0 < int(its) < 5000, (solver, int(its))
        assert relative_residual(phi, rhs, coef) <= tolerance, solver
        assert abs(float(jnp.mean(phi))) < 1e-12 * float(jnp.max(jnp.abs(phi)))
        results[solver] = (phi, int(its))
    ref, _ = solve(rhs, coef, solver="pcg", tolerance=1e-13)
    for solver, (phi, _) in results.items():
        # error <= condition-number-limited multiple of the tolerance
        err = float(jnp.linalg.norm(phi - ref) / jnp.linalg.norm(ref))
        assert err < 1e3 * tolerance, (solver, err)
    assert results["pcg"][1] < results["bicgstab"][1]


def test_pcg_takes_few_iterations_independent_of_grid_size():
    counts = {}
    for n in (16, 32):
        grid = Grid(nx=n, ny=n, nz=n, dx=24000.0 / n, dy=24000.0 / n, dz=12000.0 / n)
        b = moist_base_state(grid)
        s = warm_bubble_state(grid, b, 5.0)
        c = pressure.elliptic_coefficients(thermo.density_potential_temperature(s.th, s.qv),
                                           b.mass, b.mass_faces)
        rhs = buoyancy_rhs(grid, b, (s.th, s.qv))
        phi, its = solve(rhs, c, grid, solver="pcg", tolerance=1e-8)
        assert relative_residual(phi, rhs, c, grid) <= 1e-8
        counts[n] = int(its)
    assert all(0 < k <= 10 for k in counts.values()), counts
    assert counts[32] <= counts[16] + 1, counts


def test_first_guess_is_used(coef):
    rhs = zero_mean(rng_field(41))
    phi, its = solve(rhs, coef, solver="pcg", tolerance=1e-10)
    # the converged solution as the guess: nothing left to do
    again, its0 = solve(rhs, coef, guess=phi + 3.0, solver="pcg", tolerance=1e-10)
    # only round-off is left to solve: relative to it the solve is as quick as ever
    assert int(its) > 0 and int(its0) <= int(its)
    # both are solutions to relative residual 1e-10: they agree to that order
    np.testing.assert_allclose(np.asarray(again), np.asarray(phi), rtol=0,
                               atol=1e-9 * float(jnp.max(jnp.abs(phi))))
    # a rough guess still converges to the same answer
    rough, _ = solve(rhs, coef, guess=phi + rng_field(42), solver="bicgstab", tolerance=1e-10,
                     max_iterations=5000)
    assert relative_residual(rough, rhs, coef) <= 1e-10


@pytest.mark.parametrize("solver", ["pcg", "bicgstab"])
def test_projection_removes_the_divergence(base, coef, solver):
    rng = np.random.default_rng(50)
    u = jnp.asarray(3.0 * rng.standard_normal(GRID.shape))
    v = jnp.asarray(3.0 * rng.standard_normal(GRID.shape))
    w = op.zero_walls(jnp.asarray(3.0 * rng.standard_normal(GRID.w_shape)))
    thrho = bubble_thrho(GRID, base) + 0.5 * rng_field(99)
    before = pressure.mass_divergence(u, v, w, base.mass, base.mass_faces, GRID)
    tol = 1e-9
    project = jax.jit(lambda u, v, w: pressure.project(
        u, v, w, thrho, base.mass, base.mass_faces, GRID, 2.0, jnp.zeros(GRID.shape),
        solver=solver, tolerance=tol, max_iterations=5000))
    u2, v2, w2, pi, its = project(u, v, w)
    after = pressure.mass_divergence(u2, v2, w2, base.mass, base.mass_faces, GRID)
    assert float(jnp.linalg.norm(after)) <= tol * float(jnp.linalg.norm(before))
    assert float(jnp.max(jnp.abs(w2[0]))) == 0.0 and float(jnp.max(jnp.abs(w2[-1]))) == 0.0
    # the correction is the pressure-gradient force of pi (weight 2 s)
    c = pressure.elliptic_coefficients(thrho, base.mass, base.mass_faces)
    mc = base.mass[:, None, None]
    np.testing.assert_allclose(np.asarray(u - u2),
                               np.asarray(2.0 * c.cx / mc * op.diff_x_centre_to_face(pi, GRID.dx)),
                               rtol=1e-12, atol=1e-12 * float(jnp.max(jnp.abs(u - u2))))
    # projecting again changes (almost) nothing: a projection is idempotent
    u3, v3, w3, _, _ = project(u2, v2, w2)
    assert float(jnp.max(jnp.abs(u3 - u2))) < 1e-6 * float(jnp.max(jnp.abs(u - u2)))


# --------------------------------------------------------------------------- derivatives

SMALL = Grid(nx=8, ny=6, nz=5, dx=400.0, dy=500.0, dz=300.0)


@pytest.fixture(scope="module")
def small_problem():
    b = moist_base_state(SMALL, theta=lambda z: 300.0 + 0.004 * z)
    thrho = bubble_thrho(SMALL, b) + 0.3 * rng_field(60, SMALL.shape)
    return b, thrho


@pytest.mark.parametrize("solver", ["pcg", "bicgstab"])
def test_solve_gradient_wrt_rhs(small_problem, solver):
    b, thrho = small_problem
    c = pressure.elliptic_coefficients(thrho, b.mass, b.mass_faces)

    @jax.jit
    def f(r):
        phi, _ = pressure.pressure_solve(zero_mean(r), c, SMALL, jnp.zeros(SMALL.shape),
                                         solver=solver, tolerance=1e-13, max_iterations=5000)
        return phi

    check_grads(f, (rng_field(61, SMALL.shape),), order=1, modes=["fwd", "rev"],
                atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("solver", ["pcg", "bicgstab"])
def test_solve_gradient_wrt_coefficients(small_problem, solver):
    b, thrho = small_problem
    rhs = zero_mean(rng_field(62, SMALL.shape))
    pert = rng_field(63, SMALL.shape)
    weights = rng_field(64, SMALL.shape)

    @jax.jit
    def j(s):
        c = pressure.elliptic_coefficients(thrho + s * pert, b.mass, b.mass_faces)
        phi, _ = pressure.pressure_solve(rhs, c, SMALL, jnp.zeros(SMALL.shape), solver=solver,
                                         tolerance=1e-13, max_iterations=5000)
        return jnp.sum(weights * phi)

    s0, h = 0.1, 1e-3
    grad = float(jax.grad(j)(s0))
    fd = float((j(s0 + h) - j(s0 - h)) / (2 * h))
    assert abs(grad) > 0
    assert abs(grad - fd) < 1e-6 * abs(fd), (grad, fd)
    # forward mode agrees with reverse mode
    fwd = float(jax.jvp(j, (s0,), (1.0,))[1])
    assert abs(fwd - grad) < 1e-7 * abs(grad)


@functools.cache
def scale_derivatives(solver, tol):
    """The jitted reverse (d j / d r) and forward (d j / d r . t) derivatives of
    j(r) = <g, phi(r)> on SMALL, with the coefficients and g as arguments: compiled
    once per solver for the three scales."""
    def j(r, c, g):
        phi, _ = pressure.pressure_solve(r, c, SMALL, jnp.zeros(SMALL.shape), solver=solver,
                                         tolerance=tol, max_iterations=5000)
        return jnp.sum(g * phi)

    grad = jax.jit(jax.grad(j))
    tangent = jax.jit(lambda r, t, c, g: jax.jvp(lambda x: j(x, c, g), (r,), (t,))[1])
    return grad, tangent


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
@pytest.mark.parametrize("solver", ["pcg", "bicgstab"])
def test_solve_derivatives_do_not_depend_on_the_rhs_scale(small_problem, solver, scale):
    """phi is linear in rhs, so d<g, phi(r)>/dr = A^+ g whatever the size of r,
    to the requested relative tolerance."""
    b, thrho = small_problem
    c = pressure.elliptic_coefficients(thrho, b.mass, b.mass_faces)
    rhs = scale * zero_mean(rng_field(65, SMALL.shape))
    g = zero_mean(rng_field(66, SMALL.shape))
    tol = 1e-8
    ref, _ = solve(g, c, SMALL, solver="pcg", tolerance=1e-13)
    grad_of, tangent_of = scale_derivatives(solver, tol)
    grad = grad_of(rhs, c, g)
    err = float(jnp.linalg.norm(zero_mean(grad) - ref) / jnp.linalg.norm(ref))
    assert err < 100 * tol, ("reverse", err)
    tangent = float(tangent_of(rhs, g, c, g))
    exact = float(jnp.vdot(ref, g))
    assert abs(tangent - exact) < 100 * tol * abs(exact), ("forward", tangent, exact)


# --------------------------------------------------------------------------- honest solves


def test_float32_projection_meets_the_tolerance_on_the_true_divergence():
    # in float32 the recursive CG residual drifts from the true one; the solve
    # must stop on the true residual, so the divergence left after projection
    # is within the tolerance asked
    n = 64
    grid = Grid(nx=n, ny=n, nz=n // 2, dx=24000.0 / n, dy=24000.0 / n, dz=24000.0 / n)
    b = moist_base_state(grid)
    s = warm_bubble_state(grid, b, 5.0)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    thrho = thermo.density_potential_temperature(f32(s.th), f32(s.qv))
    mass, mass_faces = f32(b.mass), f32(b.mass_faces)
    rng = np.random.default_rng(7)
    u, v = f32(rng.standard_normal(grid.shape)), f32(rng.standard_normal(grid.shape))
    w = op.zero_walls(f32(rng.standard_normal(grid.w_shape)))
    tol = 1e-5
    project = jax.jit(lambda u, v, w: pressure.project(
        u, v, w, thrho, mass, mass_faces, grid, 6.0, jnp.zeros(grid.shape, jnp.float32),
        tolerance=tol, max_iterations=100, return_info=True))
    u2, v2, w2, pi, its, info = project(u, v, w)
    assert u2.dtype == jnp.float32
    before = pressure.mass_divergence(u, v, w, mass, mass_faces, grid)
    after = pressure.mass_divergence(u2, v2, w2, mass, mass_faces, grid)
    ratio = float(jnp.linalg.norm(after) / jnp.linalg.norm(before))
    assert ratio <= tol, ratio
    assert bool(info.converged) and not bool(info.breakdown)
    assert float(info.relative_residual) <= tol
    assert int(info.iterations) == int(its) < 100


def test_solve_info_of_a_converged_float64_solve(coef):
    rhs = zero_mean(rng_field(43))
    exact, _ = solve(rhs, coef, tolerance=1e-13, max_iterations=5000)
    # from zero, and from a close guess as a run's later stages start: the residual
    # is the divergence left over the whole right-hand side, not the correction's
    for guess in (None, exact + 1e-6 * zero_mean(rng_field(45))):
        for solver in ("pcg", "bicgstab"):
            phi, its, info = solve(rhs, coef, guess=guess, solver=solver, tolerance=1e-9,
                                   max_iterations=5000, return_info=True)
            assert bool(info.converged) and not bool(info.breakdown), solver
            assert float(info.relative_residual) == pytest.approx(
                relative_residual(phi, rhs, coef), rel=1e-6)
    # too few iterations: not converged, no breakdown, the residual says how far
    _, its, info = solve(rhs, coef, solver="bicgstab", tolerance=1e-9, max_iterations=2,
                         return_info=True)
    assert int(its) == 2 and not bool(info.converged) and not bool(info.breakdown)
    assert float(info.relative_residual) > 1e-9


def test_krylov_breakdown_is_reported(coef):
    rhs = zero_mean(rng_field(44))
    negative = lambda x: -apply(x, coef)  # noqa: E731  negative definite: p.Ap < 0
    x, its, broken = pressure.conjugate_gradient(negative, rhs, lambda r: r, 1e-8, 50,
                                                 return_info=True)
    assert bool(broken) and int(its) == 1
    # a null operator: r_hat . v == 0 at once
    x, its, broken = pressure.bicgstab(jnp.zeros_like, rhs, 1e-8, 50, return_info=True)
    assert bool(broken) and int(its) == 1
    # the same solvers on the true operator report none
    _, _, broken = pressure.conjugate_gradient(lambda x: apply(x, coef), rhs, lambda r: r,
                                               1e-8, 500, return_info=True)
    assert not bool(broken)
