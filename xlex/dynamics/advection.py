"""Flux-form WENO advection on the C grid.

Every prognostic q (scalars at centres, u, v, w on their faces) is advected in
flux form with the pseudo-density mass flux F = rho0 thrho0 u, with the
divergence correction

    dq/dt = -(1/m) [ div(F q_face) - q div(F) ],

so that a uniform q stays uniform exactly and sum(m q dV) is conserved up to the
(solver-tolerance) divergence of F. Face values q_face are upwind-biased WENO
reconstructions (Jiang & Shu 1996): fifth order along the periodic x and y axes,
third or fifth order along z. Near the walls the vertical stencils shrink
(WENO5 -> WENO3 -> centred second order) instead of reading outside the domain;
the choice depends only on the distance to the nearer wall, so the scheme is
mirror-symmetric in z.
"""

from __future__ import annotations

import jax.numpy as jnp

from xlex import operators as op

WENO_EPSILON = 1e-6
"""Jiang-Shu regularisation of the smoothness indicators (in the field's units squared)."""


def weno5(qm2, qm1, q0, qp1, qp2, eps=WENO_EPSILON):
    """Fifth-order WENO value at i + 1/2 from the left-biased stencil i-2 .. i+2."""
    b0 = 13.0 / 12.0 * (qm2 - 2 * qm1 + q0) ** 2 + 0.25 * (qm2 - 4 * qm1 + 3 * q0) ** 2
    b1 = 13.0 / 12.0 * (qm1 - 2 * q0 + qp1) ** 2 + 0.25 * (qm1 - qp1) ** 2
    b2 = 13.0 / 12.0 * (q0 - 2 * qp1 + qp2) ** 2 + 0.25 * (3 * q0 - 4 * qp1 + qp2) ** 2
    a0 = 0.1 / (eps + b0) ** 2
    a1 = 0.6 / (eps + b1) ** 2
    a2 = 0.3 / (eps + b2) ** 2
    p0 = (2 * qm2 - 7 * qm1 + 11 * q0) / 6.0
    p1 = (-qm1 + 5 * q0 + 2 * qp1) / 6.0
    p2 = (2 * q0 + 5 * qp1 - qp2) / 6.0
    return (a0 * p0 + a1 * p1 + a2 * p2) / (a0 + a1 + a2)


def upwind5(qm2, qm1, q0, qp1, qp2, eps=None):
    """Linear fifth-order upwind value at i + 1/2 (the optimal weights of WENO5)."""
    return (2 * qm2 - 13 * qm1 + 47 * q0 + 27 * qp1 - 3 * qp2) / 60.0


def upwind3(qm1, q0, qp1, eps=None):
    """Linear third-order upwind value at i + 1/2 (the optimal weights of WENO3)."""
    return (-qm1 + 5 * q0 + 2 * qp1) / 6.0


def weno3(qm1, q0, qp1, eps=WENO_EPSILON):
    """Third-order WENO value at i + 1/2 from the left-biased stencil i-1 .. i+1."""
    b0 = (q0 - qm1) ** 2
    b1 = (qp1 - q0) ** 2
    a0 = (1.0 / 3.0) / (eps + b0) ** 2
    a1 = (2.0 / 3.0) / (eps + b1) ** 2
    p0 = (-qm1 + 3 * q0) / 2.0
    p1 = (q0 + qp1) / 2.0
    return (a0 * p0 + a1 * p1) / (a0 + a1)


def periodic_west_face_value(q, velocity, axis, eps=WENO_EPSILON, linear=False):
    """WENO5 (or, with ``linear``, linear fifth-order upwind) value of ``q`` on the
    face between ``q[i-1]`` and ``q[i]`` along a periodic ``axis``, upwinded by the
    sign of ``velocity`` on that face."""
    s = lambda k: jnp.roll(q, k, axis=axis)  # noqa: E731  s(k)[i] = q[i - k]
    scheme = upwind5 if linear else weno5
    from_west = scheme(s(3), s(2), s(1), q, s(-1), eps)
    from_east = scheme(s(-2), s(-1), q, s(1), s(2), eps)
    return jnp.where(velocity >= 0, from_west, from_east)


def bounded_interior_face_value(q, velocity, order, eps=WENO_EPSILON, linear=False):
    """Upwind value of ``q`` on the n - 1 faces between ``q[k]`` and ``q[k+1]``
    along z (axis -3), given ``velocity`` on those faces.

    ``order`` is 5 or 3. A face with fewer than 3 (for WENO5) or 2 (for WENO3)
    points on its nearer side falls back to the next lower scheme, the last
    resort being the centred mean of its two neighbours. With ``linear`` the
    linear upwind schemes of the same orders replace WENO.
    """
    s5, s3 = (upwind5, upwind3) if linear else (weno5, weno3)
    n = q.shape[-3]
    widths = [(0, 0)] * q.ndim
    widths[q.ndim - 3] = (3, 3)
    p = jnp.pad(q, widths, mode="edge")

    def at(k):  # q[j + k] for the faces j + 1/2, j = 0 .. n - 2
        return p[..., 3 + k:3 + k + n - 1, :, :]

    centred = 0.5 * (at(0) + at(1))
    w3 = jnp.where(velocity >= 0, s3(at(-1), at(0), at(1), eps),
                   s3(at(2), at(1), at(0), eps))
    face = jnp.arange(n - 1)
    nearer = jnp.minimum(face + 1, n - 1 - face)[:, None, None]
    value = jnp.where(nearer >= 2, w3, centred)
    if order == 5:
        w5 = jnp.where(velocity >= 0, s5(at(-2), at(-1), at(0), at(1), at(2), eps),
                       s5(at(3), at(2), at(1), at(0), at(-1), eps))
        value = jnp.where(nearer >= 3, w5, value)
    return value


def _flux_difference_periodic(q, g, axis, d, eps, linear):
    """div along a periodic axis of g q_face and of g, g on the west faces of q."""
    flux = g * periodic_west_face_value(q, g, axis, eps, linear)
    nxt = lambda a: jnp.roll(a, -1, axis=axis)  # noqa: E731
    return (nxt(flux) - flux) / d, (nxt(g) - g) / d


def _flux_difference_z_centred(q, gz, dz, order, eps, linear):
    """Vertical flux difference for q on centres (u, v, th, qv), gz on the nz + 1 faces."""
    inner = gz[..., 1:-1, :, :]
    flux = inner * bounded_interior_face_value(q, inner, order, eps, linear)
    flux = op._pad_z(flux, 1, 1)  # no flux through the walls
    return op.diff_z_face_to_centre(flux, dz), op.diff_z_face_to_centre(gz, dz)


def advect_centred(q, gx, gy, gz, m, dx, dy, dz, order_z, eps, linear=False):
    """Advective tendency of a field on cell centres (also used for u and v,
    whose control volumes have the same z layout), given mass fluxes on the west,
    south and bottom faces of its control volumes and its own mass weight ``m``."""
    fx, dgx = _flux_difference_periodic(q, gx, op.X, dx, eps, linear)
    fy, dgy = _flux_difference_periodic(q, gy, op.Y, dy, eps, linear)
    fz, dgz = _flux_difference_z_centred(q, gz, dz, order_z, eps, linear)
    return -((fx + fy + fz) - q * (dgx + dgy + dgz)) / m


def advect_w(w, gx, gy, gz, mf, dx, dy, dz, order_z, eps, linear=False):
    """Advective tendency of w (nz + 1 levels) given mass fluxes on its control
    volumes' faces: gx, gy on the nz + 1 levels, gz on the nz cell centres.
    The wall levels get zero tendency."""
    fx, dgx = _flux_difference_periodic(w, gx, op.X, dx, eps, linear)
    fy, dgy = _flux_difference_periodic(w, gy, op.Y, dy, eps, linear)
    flux = gz * bounded_interior_face_value(w, gz, order_z, eps, linear)
    fz = op._pad_z((flux[..., 1:, :, :] - flux[..., :-1, :, :]) / dz, 1, 1)
    dgz = op._pad_z((gz[..., 1:, :, :] - gz[..., :-1, :, :]) / dz, 1, 1)
    tend = -((fx + fy + fz) - w * (dgx + dgy + dgz)) / op.column(mf)
    return op.zero_walls(tend)


def advection_tendencies(u, v, w, th, qv, mass, mass_faces, dx, dy, dz, *, order_z=5,
                         eps=WENO_EPSILON, linear_momentum=False):
    """Advective tendencies of (u, v, w, th, qv) with the flux F = rho0 thrho0 u.

    Parameters
    ----------
    u, v, w, th, qv : arrays on the C grid (see :mod:`xlex.grid`).
    mass, mass_faces : arrays (nz,), (nz + 1,)
        rho0 thrho0 at centres and z faces.
    dx, dy, dz : float
        Spacing [m].
    order_z : {3, 5}
        Order of the vertical WENO scheme.
    linear_momentum : bool
        Advect u, v, w with the linear upwind schemes of the same orders
        (the optimal weights of WENO) instead of WENO.

    Returns
    -------
    tuple of arrays: du/dt, dv/dt, dw/dt, dth/dt, dqv/dt (advection only).
    """
    mc = op.column(mass)
    fx = mc * u
    fy = mc * v
    fz = op.column(mass_faces) * w

    # scalars: the flux lives on the scalar cells' own faces
    th_t = advect_centred(th, fx, fy, fz, mc, dx, dy, dz, order_z, eps)
    qv_t = advect_centred(qv, fx, fy, fz, mc, dx, dy, dz, order_z, eps)

    # u: control volume centred on the west face; its west face is cell centre i-1
    u_t = advect_centred(
        u, op.interp_x_centre_to_face(fx), op.interp_x_centre_to_face(fy),
        op.interp_x_centre_to_face(fz), mc, dx, dy, dz, order_z, eps, linear_momentum)
    # v: centred on the south face
    v_t = advect_centred(
        v, op.interp_y_centre_to_face(fx), op.interp_y_centre_to_face(fy),
        op.interp_y_centre_to_face(fz), mc, dx, dy, dz, order_z, eps, linear_momentum)
    # w: centred on the bottom face; vertical fluxes at cell centres
    w_t = advect_w(
        w, op.interp_z_centre_to_face(fx), op.interp_z_centre_to_face(fy),
        op.interp_z_face_to_centre(fz), mass_faces, dx, dy, dz, order_z, eps, linear_momentum)
    return u_t, v_t, w_t, th_t, qv_t
