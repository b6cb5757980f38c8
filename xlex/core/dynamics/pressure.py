"""The pressure equation: elliptic operator, Krylov solvers, projection.

The Exner perturbation pi' is the field whose gradient makes the velocity satisfy
the pseudo-incompressible constraint div(rho0 thrho0 u) = 0 discretely. With
u* the velocity of a Runge-Kutta stage before the pressure-gradient force and
``c`` that stage's weight of the tendency (b dt / 2 for SSPRK3(4)),

    u = u* - c cp thrho grad(pi'),      div(m u) = 0,   m = rho0 thrho0,

gives the symmetric elliptic problem

    A pi' = -div(m u*) / c,     A phi = -div(cp m thrho grad phi),

with zero flux through the walls. ``A`` is strictly linear (the walls enter
through the zero face coefficients, nothing affine), symmetric and positive
semi-definite; its null space is the constant, which fixes nothing physical, so
the solution is returned with zero domain mean.

Two solvers:

* ``"pcg"`` (default): conjugate gradients preconditioned by an exact direct
  solve of the operator with the horizontally averaged coefficient: FFT in x and
  y, then one tridiagonal solve in z per horizontal wavenumber. In the
  horizontal-mean mode the column problem is singular; one level is pinned,
  which only fixes the constant and keeps the preconditioner symmetric.
* ``"bicgstab"``: unpreconditioned BiCGSTAB, the method of the original LEX code,
  kept for comparison.

Both are wrapped in :func:`jax.lax.custom_linear_solve`, so derivatives go
through the solve implicitly (another solve with the same operator), never by
unrolling iterations.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jax.sharding import PartitionSpec as P

from xlex.core import constants, parallel
from xlex.core import operators as op
from xlex.core.grid import Grid

#: Pressure solvers by name, the one table of them (numerics, the CLI and the
#: benchmark take it from here).
SOLVERS = ("pcg", "bicgstab")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EllipticCoefficients:
    """Face coefficients cp m thrho of the pressure operator (x, y, z faces);
    ``cz`` is zero on the two walls."""

    cx: jax.Array
    cy: jax.Array
    cz: jax.Array


def elliptic_coefficients(thrho, mass, mass_faces) -> EllipticCoefficients:
    """Coefficients cp rho0 thrho0 thrho on the faces, from thrho at centres."""
    mc = op.column(mass)
    cx = constants.CP * mc * op.interp_x_centre_to_face(thrho)
    cy = constants.CP * mc * op.interp_y_centre_to_face(thrho)
    cz = op.zero_walls(constants.CP * op.column(mass_faces) * op.interp_z_centre_to_face(thrho))
    return EllipticCoefficients(cx, cy, cz)


def pressure_operator(phi, coef: EllipticCoefficients, grid: Grid):
    """A phi = -div(coef grad phi) at cell centres (linear, symmetric, PSD)."""
    gx = coef.cx * op.diff_x_centre_to_face(phi, grid.dx)
    gy = coef.cy * op.diff_y_centre_to_face(phi, grid.dy)
    gz = coef.cz * op.diff_z_centre_to_face(phi, grid.dz)
    return -op.divergence(gx, gy, gz, grid.dx, grid.dy, grid.dz)


def fft_tridiagonal_preconditioner(coef: EllipticCoefficients, grid: Grid):
    """Exact inverse of the operator with horizontally averaged coefficients.

    Returns a function r -> M^-1 r (symmetric positive semi-definite). Under a
    mesh that splits the domain along y (:mod:`xlex.core.parallel`) the
    transforms are distributed: see :func:`_distributed_spectral_solve`.
    """
    nz, ny, nx = grid.shape
    dtype = coef.cx.dtype
    profiles = [jnp.mean(c, axis=(-2, -1)) for c in (coef.cx, coef.cy, coef.cz)]
    slabs = parallel.domain_split()
    if slabs > 1:
        return _distributed_spectral_solve(profiles, grid, slabs)
    kx = 2.0 * jnp.pi * jnp.arange(nx // 2 + 1, dtype=dtype) / nx
    mean_mode = jnp.zeros((ny, nx // 2 + 1), bool).at[0, 0].set(True)
    solve_columns = _column_solver(*profiles, kx, mean_mode, grid)

    def apply(r):
        rh = jnp.fft.rfft2(r, axes=(-2, -1))  # (nz, ny, nxh)
        return jnp.fft.irfft2(solve_columns(rh), s=(ny, nx), axes=(-2, -1)).astype(dtype)

    return apply


def _column_solver(cx, cy, cz, kx, mean_mode, grid: Grid):
    """``solve(rh)``: the tridiagonal solves in z of the horizontally averaged
    operator for the Fourier coefficients ``rh`` (nz, ny, len(kx)), with ``kx``
    the x-wavenumbers [rad per cell] of its last axis and ``mean_mode`` (ny,
    len(kx)) true at the horizontal-mean mode, whose singular column (constant
    null vector) has level 0 pinned. The elimination is factored once, when the
    solver is built, for the several applications of one pressure solve."""
    nz, ny, nx = grid.shape
    dtype = cx.dtype
    ky = 2.0 * jnp.pi * jnp.fft.fftfreq(ny).astype(dtype)
    eig_x = (2.0 - 2.0 * jnp.cos(kx)) / grid.dx ** 2
    eig_y = (2.0 - 2.0 * jnp.cos(ky)) / grid.dy ** 2
    horizontal = (cx[:, None, None] * eig_x[None, None, :]
                  + cy[:, None, None] * eig_y[None, :, None])  # (nz, ny, nkx)
    level = jnp.arange(nz)[:, None, None]
    pin = mean_mode[None] & (level == 0)
    diag = jnp.where(pin, 1.0, horizontal + ((cz[:-1] + cz[1:]) / grid.dz ** 2)[:, None, None])
    # couplings to k + 1 and k - 1 (zero at the walls, and to the pinned level)
    upper = jnp.where(pin, 0.0, jnp.broadcast_to((-cz[1:] / grid.dz ** 2)[:, None, None],
                                                 diag.shape))
    lower = jnp.where(mean_mode[None] & (level == 1), 0.0,
                      jnp.broadcast_to((-cz[:-1] / grid.dz ** 2)[:, None, None], diag.shape))
    factors = thomas_factor(lower, diag, upper)  # unused, so compiled away, off the CPU

    def solve(rh):
        b = jnp.stack([rh.real, rh.imag], axis=-1).astype(dtype)
        x = tridiagonal_columns_solve(lower, diag, upper, factors,
                                      jnp.where(pin[..., None], 0.0, b))
        return jax.lax.complex(x[..., 0], x[..., 1])

    return solve


def thomas_factor(lower, diag, upper):
    """Forward elimination of the tridiagonal systems ``lower[k] x[k-1] + diag[k]
    x[k] + upper[k] x[k+1] = b[k]`` along axis 0 (one system per position of
    the other axes), done once for :func:`thomas_solve`: the eliminated upper
    coefficients and the reciprocal pivots. Without pivoting, as suits the
    diagonally dominant column operators here; ``lower[0]`` and
    ``upper[-1]`` are ignored."""
    def eliminate(upper_before, level):
        low, mid, up = level
        reciprocal = 1.0 / (mid - low * upper_before)
        return up * reciprocal, (up * reciprocal, reciprocal)

    _, factors = jax.lax.scan(eliminate, jnp.zeros_like(diag[0]), (lower, diag, upper))
    return factors


def thomas_solve(lower, factors, b):
    """The solutions of the systems factored by :func:`thomas_factor` for the
    right-hand sides ``b`` (levels along axis 0; trailing axes beyond those of
    the coefficients are several right-hand sides per system)."""
    upper, reciprocal = factors
    extra = (None,) * (b.ndim - lower.ndim)
    column = lambda a: a[(...,) + extra]  # noqa: E731

    def forward(before, level):
        low, rec, rhs = level
        value = (rhs - column(low) * before) * column(rec)
        return value, value

    def backward(after, level):
        up, value = level
        x = value - column(up) * after
        return x, x

    zero = jnp.zeros_like(b[0])
    _, eliminated = jax.lax.scan(forward, zero, (lower, reciprocal, b))
    _, x = jax.lax.scan(backward, zero, (upper, eliminated), reverse=True)
    return x


def library_tridiagonal_solve(lower, diag, upper, b):
    """:func:`jax.lax.linalg.tridiagonal_solve` for systems along axis 0 (as
    :func:`thomas_solve` takes them): one library call for all the columns."""
    last = lambda a: jnp.moveaxis(a, 0, -1)  # noqa: E731
    x = jax.lax.linalg.tridiagonal_solve(last(lower), last(diag), last(upper),
                                         jnp.moveaxis(b, 0, -2))
    return jnp.moveaxis(x, -2, 0)


def tridiagonal_columns_solve(lower, diag, upper, factors, b):
    """The tridiagonal systems along axis 0 solved for ``b`` (levels first, a
    trailing axis of right-hand sides): on the CPU by :func:`thomas_solve` with
    the ``factors`` of :func:`thomas_factor` (LAPACK's gtsv, column by column,
    took a third of a step), elsewhere (GPU) by the batched library solve, one
    kernel where the elimination would be a loop of small ones."""
    return jax.lax.platform_dependent(
        lower, diag, upper, factors, b,
        cpu=lambda lower, diag, upper, factors, b: thomas_solve(lower, factors, b),
        default=lambda lower, diag, upper, factors, b: library_tridiagonal_solve(
            lower, diag, upper, b))


def _distributed_spectral_solve(profiles, grid: Grid, slabs: int):
    """The preconditioner on a domain split into ``slabs`` slabs along y.

    A transform along the split axis would gather the whole array on every
    device, so each device does the FFT along x of its slab, one all-to-all
    transposes the x-wavenumbers (padded to a multiple of ``slabs``) into
    slabs while gathering y, and the FFT along y and the column solves are
    local; the inverse goes back the same way. Two all-to-alls per application,
    each moving the array once.
    """
    nz, ny, nx = grid.shape
    dtype = profiles[0].dtype
    nxh = nx // 2 + 1
    per_device = -(-nxh // slabs)
    axis = parallel.DOMAIN_AXIS

    def local(r, cx, cy, cz):  # r: (nz, ny / slabs, nx)
        first = jax.lax.axis_index(axis) * per_device
        kx = 2.0 * jnp.pi * (first + jnp.arange(per_device)).astype(dtype) / nx
        mean_mode = (first + jnp.arange(per_device) == 0)[None, :] & (jnp.arange(ny) == 0)[:, None]
        solve_columns = _column_solver(cx, cy, cz, kx, mean_mode, grid)
        rh = jnp.fft.rfft(r, axis=-1)
        rh = jnp.pad(rh, [(0, 0), (0, 0), (0, per_device * slabs - nxh)])
        rh = jax.lax.all_to_all(rh, axis, 2, 1, tiled=True)  # (nz, ny, per_device)
        xh = jnp.fft.ifft(solve_columns(jnp.fft.fft(rh, axis=1)), axis=1)
        xh = jax.lax.all_to_all(xh, axis, 1, 2, tiled=True)  # (nz, ny / slabs, padded)
        return jnp.fft.irfft(xh[..., :nxh], n=nx, axis=-1).astype(dtype)

    slab = P(None, axis, None)
    solve = jax.shard_map(local, in_specs=(slab, P(), P(), P()), out_specs=slab)
    return lambda r: solve(r, *profiles)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SolveInfo:
    """What a pressure solve did, for the caller to record.

    Attributes
    ----------
    iterations : int array
        Krylov iterations taken.
    relative_residual : float array
        ||rhs - A phi|| / ||rhs||, both without their domain mean (the true
        residual, computed after the solve): in a projection, the divergence left
        over the divergence removed. The stopping rule guarantees at most
        ``tolerance`` (||rhs - A phi|| <= tolerance ||rhs - A guess|| <=
        tolerance ||rhs||) up to the round-off of adding the correction to the
        guess.
    breakdown : bool array
        The Krylov recurrence broke down (a zero or negative inner product)
        before convergence.
    converged : bool array
        ``relative_residual <= tolerance``.
    """

    iterations: jax.Array
    relative_residual: jax.Array
    breakdown: jax.Array
    converged: jax.Array


def _dot(a, b):
    return jnp.sum(a * b)


def _range_part(b):
    """``b`` without its domain mean: the component in the operator's range.

    The constant is A's null vector, so a right-hand side with a mean (round-off
    in a divergence, or the residual of an exact first guess) has no solution;
    its mean part would stall the iteration. Removing it solves the consistent
    problem (the pseudo-inverse), for the primal, tangent and adjoint solves alike.
    """
    return b - jnp.mean(b)


def _safe_divide(a, b):
    """a / b, and 0 where b == 0 (a converged or broken-down Krylov recurrence)."""
    ok = b != 0
    return jnp.where(ok, a / jnp.where(ok, b, 1), 0)


def conjugate_gradient(matvec, b, precondition, tolerance, maxiter, *, return_info=False):
    """Preconditioned CG from a zero first guess; stops at ||r|| <= tolerance ||b||
    with r the true residual b - A x.

    The threshold is relative to this solve's own right-hand side, so the same
    function serves the tangent and adjoint solves of ``custom_linear_solve``.
    The recursive residual drifts from the true one in float32 (by ~1e-6 of
    ||b|| over a few tens of iterations), so when it passes the test the true
    residual is computed (one extra matvec) and, if that fails the test, CG
    restarts from it. A breakdown (r.z <= 0 or p.Ap <= 0 with the residual
    above the threshold, i.e. a preconditioner or operator that is not positive
    definite, or an underflow) stops the iteration and is reported.

    Returns
    -------
    ``(x, iterations)``, or with ``return_info`` ``(x, iterations, breakdown)``,
    ``breakdown`` a bool array.
    """
    b = _range_part(b)
    atol = tolerance * jnp.sqrt(_dot(b, b))
    x = jnp.zeros_like(b)
    z = precondition(b)
    carry = (x, b, z, _dot(b, z), 0, jnp.zeros((), bool))

    def cond(carry):
        _, r, _, _, k, broken = carry
        return (jnp.sqrt(_dot(r, r)) > atol) & (k < maxiter) & ~broken

    def refresh(x, r, p, rz):
        # the true residual, and CG restarted from it
        r = _range_part(b - matvec(x))
        z = precondition(r)
        return r, z, _dot(r, z)

    def body(carry):
        x, r, p, rz, k, _ = carry
        ap = matvec(p)
        pap = _dot(p, ap)
        alpha = _safe_divide(rz, pap)
        x = x + alpha * p
        r = r - alpha * ap
        z = precondition(r)
        rz_new = _dot(r, z)
        p = z + _safe_divide(rz_new, rz) * p
        r, p, rz_new = jax.lax.cond(jnp.sqrt(_dot(r, r)) <= atol, refresh,
                                    lambda x, r, p, rz: (r, p, rz), x, r, p, rz_new)
        unconverged = jnp.sqrt(_dot(r, r)) > atol
        broken = unconverged & ((rz_new <= 0) | (pap <= 0))
        return x, r, p, rz_new, k + 1, broken

    x, _, _, _, k, broken = jax.lax.while_loop(cond, body, carry)
    return (x, k, broken) if return_info else (x, k)


def bicgstab(matvec, b, tolerance, maxiter, precondition=None, *, return_info=False):
    """BiCGSTAB (van der Vorst 1992) from a zero first guess; stops at
    ||r|| <= tolerance ||b|| (relative to this solve's own right-hand side) with
    r the true residual (checked, with a restart from it, when the recursive
    one passes the test, as in :func:`conjugate_gradient`).

    Unpreconditioned unless ``precondition`` is given. A breakdown (rho, omega
    or r_hat.v zero with the residual above the threshold) stops the iteration
    and is reported.

    Returns
    -------
    ``(x, iterations)``, or with ``return_info`` ``(x, iterations, breakdown)``.
    """
    b = _range_part(b)
    atol = tolerance * jnp.sqrt(_dot(b, b))
    precondition = precondition or (lambda v: v)
    x = jnp.zeros_like(b)
    one = jnp.ones((), b.dtype)
    zeros = jnp.zeros_like(b)
    # r_hat is the shadow residual; a restart takes the refreshed residual as both
    carry = (x, b, b, zeros, zeros, one, one, one, 0, jnp.zeros((), bool))

    def cond(c):
        r, k, broken = c[1], c[8], c[9]
        return (jnp.sqrt(_dot(r, r)) > atol) & (k < maxiter) & ~broken

    def body(c):
        x, r, r_hat, p, v, rho, alpha, omega, k, _ = c
        rho_new = _dot(r_hat, r)
        beta = _safe_divide(rho_new, rho) * _safe_divide(alpha, omega)
        p = r + beta * (p - omega * v)
        ph = precondition(p)
        v = matvec(ph)
        rv = _dot(r_hat, v)
        alpha = _safe_divide(rho_new, rv)
        s = r - alpha * v
        sh = precondition(s)
        t = matvec(sh)
        omega = _safe_divide(_dot(t, s), _dot(t, t))
        x = x + alpha * ph + omega * sh
        r = s - omega * t
        passed = jnp.sqrt(_dot(r, r)) <= atol
        true_r = jax.lax.cond(passed, lambda x: _range_part(b - matvec(x)), lambda x: r, x)
        restart = passed & (jnp.sqrt(_dot(true_r, true_r)) > atol)
        r = true_r
        r_hat, p, v = (jnp.where(restart, r, r_hat), jnp.where(restart, 0, p),
                       jnp.where(restart, 0, v))
        rho_new, alpha, omega = (jnp.where(restart, one, rho_new),
                                 jnp.where(restart, one, alpha),
                                 jnp.where(restart, one, omega))
        unconverged = jnp.sqrt(_dot(r, r)) > atol
        broken = unconverged & ~restart & ((rho_new == 0) | (omega == 0) | (rv == 0))
        return x, r, r_hat, p, v, rho_new, alpha, omega, k + 1, broken

    out = jax.lax.while_loop(cond, body, carry)
    return (out[0], out[8], out[9]) if return_info else (out[0], out[8])


def pressure_solve(rhs, coef: EllipticCoefficients, grid: Grid, guess, *, solver="pcg",
                   tolerance=1e-10, max_iterations=500, return_info=False):
    """Solve A phi = rhs for phi, starting from ``guess``.

    The Krylov solve is for the correction to ``guess`` and stops when its
    residual is below ``tolerance`` times its own right-hand side,
    ||rhs - A guess||, so ||rhs - A phi|| <= tolerance ||rhs - A guess||
    <= tolerance ||rhs|| (a guess worse than zero is replaced by zero). The same relative
    rule holds for the tangent and adjoint solves of the implicit derivative.
    The test is made on the true residual, not the recursive one.
    Differentiable implicitly in ``rhs``, ``coef`` and ``guess``.

    Parameters
    ----------
    return_info : bool
        Also return a :class:`SolveInfo` (one extra matvec for the residual).

    Returns
    -------
    phi : array
        The solution, with zero domain mean.
    iterations : int array
        Krylov iterations taken.
    info : SolveInfo
        Only with ``return_info``.
    """
    matvec = lambda x: pressure_operator(x, coef, grid)  # noqa: E731
    if solver == "pcg":
        precondition = fft_tridiagonal_preconditioner(coef, grid)
        solve = lambda mv, b: _with_aux(conjugate_gradient(  # noqa: E731
            mv, b, precondition, tolerance, max_iterations, return_info=True))
    elif solver == "bicgstab":
        solve = lambda mv, b: _with_aux(bicgstab(  # noqa: E731
            mv, b, tolerance, max_iterations, return_info=True))
    else:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    residual = rhs - matvec(guess)
    # a first guess worse than none is dropped, so ||residual|| <= ||rhs|| always
    worse = _dot(residual, residual) > _dot(rhs, rhs)
    guess = jnp.where(worse, 0.0, guess)
    residual = jnp.where(worse, rhs, residual)
    delta, (iterations, breakdown) = jax.lax.custom_linear_solve(
        matvec, residual, solve, symmetric=True, has_aux=True)
    phi = guess + delta
    phi = phi - jnp.mean(phi)
    if not return_info:
        return phi, iterations
    # relative to the whole right-hand side (the divergence the projection was
    # given), not to the correction's: adding a good guess rounds phi by
    # eps |phi|, a residual of order eps ||A|| ||phi|| that can exceed the tolerance
    # times the (small) correction's right-hand side in float32 while being far
    # below the tolerance times the divergence removed
    final = _range_part(rhs - matvec(phi))
    start = _range_part(rhs)
    relative = jnp.sqrt(_dot(final, final)) / jnp.maximum(
        jnp.sqrt(_dot(start, start)), jnp.finfo(start.dtype).tiny)
    info = SolveInfo(iterations=iterations, relative_residual=relative, breakdown=breakdown,
                     converged=relative <= tolerance)
    return phi, iterations, info


def _with_aux(result):
    """``(x, (iterations, breakdown))`` for ``custom_linear_solve(has_aux=True)``."""
    x, iterations, breakdown = result
    return x, (iterations, breakdown)


def project(u, v, w, thrho, mass, mass_faces, grid: Grid, weight, guess, *, solver="pcg",
            tolerance=1e-10, max_iterations=500, return_info=False):
    """Remove the divergent part of (u, v, w) with the pressure-gradient force.

    Parameters
    ----------
    u, v, w : arrays
        Stage velocities before the pressure-gradient force [m s-1].
    thrho : array
        Density potential temperature of the stage's state [K].
    mass, mass_faces : arrays
        rho0 thrho0 at centres and z faces.
    weight : float
        The stage's weight ``c`` of the tendency [s].
    guess : array
        First guess for pi' (the previous stage's).
    return_info : bool
        Also return the :class:`SolveInfo` of the pressure solve.

    Returns
    -------
    u, v, w, pi, iterations, and with ``return_info`` a :class:`SolveInfo`.
    """
    coef = elliptic_coefficients(thrho, mass, mass_faces)
    mc = op.column(mass)
    div = op.divergence(mc * u, mc * v, op.column(mass_faces) * w, grid.dx, grid.dy, grid.dz)
    pi, iterations, *info = pressure_solve(
        -div / weight, coef, grid, guess, solver=solver, tolerance=tolerance,
        max_iterations=max_iterations, return_info=return_info)
    u = u - weight * coef.cx / mc * op.diff_x_centre_to_face(pi, grid.dx)
    v = v - weight * coef.cy / mc * op.diff_y_centre_to_face(pi, grid.dy)
    gz = coef.cz * op.diff_z_centre_to_face(pi, grid.dz)
    w = w - weight * op.zero_walls(gz / op.column(mass_faces))
    return (u, v, w, pi, iterations, *info)


def mass_divergence(u, v, w, mass, mass_faces, grid: Grid):
    """div(rho0 thrho0 u) at cell centres [kg m-3 K s-1]."""
    mc = op.column(mass)
    return op.divergence(mc * u, mc * v, op.column(mass_faces) * w, grid.dx, grid.dy, grid.dz)
