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
mirror-symmetric in z. Along x and y the face values are computed on both sides
of every cell (n + 1 faces, the last one periodically the first) from one
periodic extension of the fields, so the stencils and the flux differences are
plain slices rather than shifts.

By default the WENO regularisation is relative to the field: the epsilon added
to the smoothness indicators is ``eps`` times the square of the field's range
(max - min over the array), so the weights do not depend on the field's units
or offset (qv in kg/kg or g/kg, th or th') and a field of range 1 sees the
same scheme as with the absolute epsilon of xlex 0.1, which stays available
with ``eps_mode="absolute"`` (epsilon in the field's units squared; WENO is
then effectively off for fields whose variations are small next to
sqrt(eps), such as qv in kg/kg).

qv is kept non-negative by the flux renormalisation of Skamarock (2006, MWR
134, 2241): when a cell's outgoing qv fluxes over one forward-Euler stage of
length ``positive_dt`` would remove more than it holds, all of them are scaled
down by the same factor. Each face flux is scaled once, so the domain integral
is conserved exactly as before.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from xlex.core import operators as op

WENO_EPSILON = 1e-6
"""Jiang-Shu regularisation of the smoothness indicators: relative to the
square of the field's range (``eps_mode="relative"``, dimensionless) or in the
field's units squared (``eps_mode="absolute"``)."""

EPS_MODES = ("relative", "absolute")


def _weights(d, b, eps):
    """Unnormalised Jiang-Shu weights d_k / (eps + b_k)^2, or, with ``eps`` a pair
    ``(eps, scale)`` (:func:`relative_epsilon`), d_k / (eps + b_k / scale)^2: the
    same normalised weights as epsilon ``eps * scale``, with every intermediate of
    the weights and of their derivatives bounded (no overflow for a uniform field)."""
    if isinstance(eps, tuple):
        eps, scale = eps
        return [dk / (eps + bk / scale) ** 2 for dk, bk in zip(d, b)]
    return [dk / (eps + bk) ** 2 for dk, bk in zip(d, b)]


def relative_epsilon(q, eps):
    """The regularisation ``eps * (max q - min q)^2`` as the pair ``(eps, scale)``
    taken by the WENO schemes, ``scale`` being the squared range of ``q``.

    The range is taken over the whole array (all batch dimensions included);
    ``scale`` is at least the square root of the dtype's smallest normal number,
    so a uniform field gets the optimal weights with finite derivatives (fields
    whose range is below ~3e-10 in float32 therefore see a larger relative
    epsilon). Scaling ``q`` by c scales the smoothness indicators and ``scale``
    both by c^2, and an offset changes neither, so the WENO weights do not depend
    on the field's units or offset.
    """
    spread = jnp.max(q) - jnp.min(q)
    floor = jnp.sqrt(jnp.finfo(jnp.result_type(q)).tiny)
    return eps, jnp.maximum(spread ** 2, floor)


def weno5(qm2, qm1, q0, qp1, qp2, eps=WENO_EPSILON):
    """Fifth-order WENO value at i + 1/2 from the left-biased stencil i-2 .. i+2
    (Jiang-Shu weights, ``eps`` in the field's units squared)."""
    b0 = 13.0 / 12.0 * (qm2 - 2 * qm1 + q0) ** 2 + 0.25 * (qm2 - 4 * qm1 + 3 * q0) ** 2
    b1 = 13.0 / 12.0 * (qm1 - 2 * q0 + qp1) ** 2 + 0.25 * (qm1 - qp1) ** 2
    b2 = 13.0 / 12.0 * (q0 - 2 * qp1 + qp2) ** 2 + 0.25 * (3 * q0 - 4 * qp1 + qp2) ** 2
    a0, a1, a2 = _weights((0.1, 0.6, 0.3), (b0, b1, b2), eps)
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
    """Third-order WENO value at i + 1/2 from the left-biased stencil i-1 .. i+1
    (Jiang-Shu weights, ``eps`` in the field's units squared)."""
    b0 = (q0 - qm1) ** 2
    b1 = (qp1 - q0) ** 2
    a0, a1 = _weights((1.0 / 3.0, 2.0 / 3.0), (b0, b1), eps)
    p0 = (-qm1 + 3 * q0) / 2.0
    p1 = (q0 + qp1) / 2.0
    return (a0 * p0 + a1 * p1) / (a0 + a1)


def periodic_extend(a, axis, before, after):
    """``a`` extended periodically along ``axis`` by ``before`` cells at its
    start and ``after`` at its end (halo cells, each a copy of the cell ``n``
    away)."""
    widths = [(0, 0)] * a.ndim
    widths[axis] = (before, after)
    return jnp.pad(a, widths, mode="wrap")


def periodic_face_values(q, velocity, axis, eps=WENO_EPSILON, linear=False, *,
                         relative=False):
    """WENO5 (or, with ``linear``, linear fifth-order upwind) values of ``q`` on
    the n + 1 faces i = 0 .. n along a periodic ``axis`` of n cells, face i
    lying between ``q[i-1]`` and ``q[i]`` (face n is face 0 again, given so that
    the differences across a cell need no shift), upwinded by the sign of
    ``velocity`` on those n + 1 faces. With ``relative``, ``eps`` is a fraction
    of the squared range of ``q`` (:func:`relative_epsilon`)."""
    if relative:
        eps = relative_epsilon(q, eps)
    axis = axis % q.ndim
    n = q.shape[axis]
    # one periodic extension and then plain slices: a shift (roll) is a
    # concatenation that the CPU compiler may copy out for each stencil point
    p = periodic_extend(q, axis, 3, 3)

    def at(k):  # q[i + k] on the faces i = 0 .. n
        return lax.slice_in_dim(p, 3 + k, 4 + k + n, axis=axis)

    west = velocity >= 0  # the upwind stencil is chosen before the one reconstruction
    pick = lambda m: jnp.where(west, at(m - 1), at(-m))  # noqa: E731  m-th upwind point
    scheme = upwind5 if linear else weno5
    return scheme(pick(-2), pick(-1), pick(0), pick(1), pick(2), eps)


def bounded_interior_face_value(q, velocity, order, eps=WENO_EPSILON, linear=False, *,
                                relative=False):
    """Upwind value of ``q`` on the n - 1 faces between ``q[k]`` and ``q[k+1]``
    along z (axis -3), given ``velocity`` on those faces.

    ``order`` is 5 or 3. A face with fewer than 3 (for WENO5) or 2 (for WENO3)
    points on its nearer side falls back to the next lower scheme, the last
    resort being the centred mean of its two neighbours. With ``linear`` the
    linear upwind schemes of the same orders replace WENO. With ``relative``,
    ``eps`` is a fraction of the squared range of ``q`` (:func:`relative_epsilon`).
    """
    if relative:
        eps = relative_epsilon(q, eps)
    s5, s3 = (upwind5, upwind3) if linear else (weno5, weno3)
    n = q.shape[-3]
    widths = [(0, 0)] * q.ndim
    widths[q.ndim - 3] = (3, 3)
    p = jnp.pad(q, widths, mode="edge")

    def at(k):  # q[j + k] for the faces j + 1/2, j = 0 .. n - 2
        return p[..., 3 + k:3 + k + n - 1, :, :]

    up = velocity >= 0  # stencils chosen before reconstructing, as along x and y
    pick = lambda k: jnp.where(up, at(k), at(1 - k))  # noqa: E731  the k-th upwind point

    centred = 0.5 * (at(0) + at(1))
    w3 = s3(pick(-1), pick(0), pick(1), eps)
    face = jnp.arange(n - 1)
    nearer = jnp.minimum(face + 1, n - 1 - face)[:, None, None]
    value = jnp.where(nearer >= 2, w3, centred)
    if order == 5:
        w5 = s5(pick(-2), pick(-1), pick(0), pick(1), pick(2), eps)
        value = jnp.where(nearer >= 3, w5, value)
    return value


def _flux_divergence(flux_x, flux_y, flux_z, dx, dy, dz):
    """Divergence over control volumes of fluxes given on both their sides:
    n + 1 faces along x and y (:func:`periodic_face_values`) and along z. Where
    the z fluxes cover one level fewer than the x and y ones (w, whose wall
    levels have no control volume), the wall levels get a zero z part."""
    ddz = jnp.diff(flux_z, axis=op.Z) / dz
    if ddz.shape[op.Z] != flux_x.shape[op.Z]:
        ddz = op._pad_z(ddz, 1, 1)
    return jnp.diff(flux_x, axis=op.X) / dx + jnp.diff(flux_y, axis=op.Y) / dy + ddz


def renormalise_outflow(q, m, flux_x, flux_y, flux_z, div_g, dx, dy, dz, dt):
    """Scale the fluxes of ``q`` so that no cell loses more than it holds in a
    forward-Euler step of length ``dt`` (Skamarock 2006).

    A cell's outgoing fluxes (the ones whose sign carries q out of it, through any
    of its six faces) are all multiplied by r = min(1, content / outflow), with
    content = m q (1 + dt min(div g, 0) / m), what is left of the cell after the
    divergence correction term, and outflow = dt * (sum of outgoing fluxes / d).
    Fluxes into a cell are untouched, so m q + dt * tendency >= 0 for q >= 0,
    and each face flux is scaled by one factor only, so the scheme stays
    conservative.

    Parameters
    ----------
    q : array (nz, ny, nx)
        Non-negative field on centres.
    m : array broadcasting to q
        Mass weight rho0 thrho0 of the centres [kg m-3].
    flux_x, flux_y, flux_z : arrays (nz, ny, nx + 1), (nz, ny + 1, nx), (nz + 1, ny, nx)
        Fluxes of q on both sides of every cell: west faces 0 .. nx, south
        faces 0 .. ny (the last one periodically the first), z faces.
    div_g : array (nz, ny, nx)
        Divergence of the mass flux at the centres [kg m-3 s-1].
    dx, dy, dz : float
        Spacing [m].
    dt : float
        Length of the forward-Euler stage the positivity is meant for [s].

    Returns
    -------
    tuple of arrays: the renormalised flux_x, flux_y, flux_z.
    """
    upper = lambda a, axis: lax.slice_in_dim(a, 1, None, axis=axis % a.ndim)  # noqa: E731
    lower = lambda a, axis: lax.slice_in_dim(a, 0, -1, axis=axis % a.ndim)  # noqa: E731
    # outgoing: positive flux on the east / north / top face, negative on the west...
    out = sum((jnp.maximum(upper(f, axis), 0) - jnp.minimum(lower(f, axis), 0)) / d
              for f, axis, d in ((flux_x, op.X, dx), (flux_y, op.Y, dy), (flux_z, op.Z, dz)))
    content = jnp.maximum(m * q + dt * jnp.minimum(div_g, 0) * q, 0)
    outflow = dt * out
    limited = outflow > content  # so outflow > 0 there
    # the inner where keeps the derivative finite where the ratio is not used
    ratio = jnp.where(limited, content / jnp.where(limited, outflow, 1.0), 1.0)

    def limit(f, ratio_around, axis):
        # each face takes the factor of the cell its flux leaves
        return f * jnp.where(f >= 0, lower(ratio_around, axis), upper(ratio_around, axis))

    return (limit(flux_x, periodic_extend(ratio, op.X, 1, 1), op.X),
            limit(flux_y, periodic_extend(ratio, op.Y, 1, 1), op.Y),
            limit(flux_z, op._pad_z(ratio, 1, 1), op.Z))  # wall fluxes are 0


def _flux_form_tendency(q, fluxes, mass_fluxes, m, dx, dy, dz, positive_dt=None):
    """-(1/m) [div(fluxes) - q div(mass_fluxes)] of a field from its fluxes on
    both sides of its control volumes (:func:`_flux_divergence`), renormalised
    first with ``positive_dt`` (:func:`renormalise_outflow`)."""
    div_g = _flux_divergence(*mass_fluxes, dx, dy, dz)
    if positive_dt is not None:
        fluxes = renormalise_outflow(q, m, *fluxes, div_g, dx, dy, dz, positive_dt)
    return -(_flux_divergence(*fluxes, dx, dy, dz) - q * div_g) / m


def _stack(arrays, nz1):
    """The arrays (nz or nz + 1 levels) stacked along a new leading axis, the
    ones of nz levels padded with a zero level on top to ``nz1`` levels."""
    return jnp.stack([a if a.shape[-3] == nz1 else op._pad_z(a, 0, 1) for a in arrays])


def _stacked_epsilon(fields, eps, relative):
    """``eps``, or with ``relative`` each field's ``(eps, scale)`` of
    :func:`relative_epsilon`, the scales stacked to broadcast against
    :func:`_stack` of the fields."""
    if not relative:
        return eps
    scale = jnp.stack([relative_epsilon(q, eps)[1] for q in fields])
    return eps, scale.reshape(scale.shape + (1,) * fields[0].ndim)


def _mass_fluxes(u, v, w, mass, mass_faces):
    """The mass flux F = rho0 thrho0 (u, v, w) on the faces of each field's
    control volumes, as {field: (x, y, z)}: along x and y on both sides of every
    volume (n + 1 faces, see :func:`periodic_face_values`).

    th and qv move with F on their cells' faces; u (centred on a west face,
    whose west face is cell centre i - 1), v (south face) and w (bottom face)
    with F interpolated there, w's vertical flux living on the cell centres.
    """
    mc = op.column(mass)
    fx = periodic_extend(mc * u, op.X, 1, 1)  # west faces -1 .. nx
    fy = periodic_extend(mc * v, op.Y, 1, 1)
    fz = op.column(mass_faces) * w
    x_faces = lambda a: a[..., 1:]  # noqa: E731  faces 0 .. nx
    y_faces = lambda a: a[..., 1:, :]  # noqa: E731
    return {
        "th": (x_faces(fx), y_faces(fy), fz),
        "qv": (x_faces(fx), y_faces(fy), fz),
        "u": (0.5 * (fx[..., 1:] + fx[..., :-1]), op.interp_x_centre_to_face(y_faces(fy)),
              op.interp_x_centre_to_face(fz)),
        "v": (op.interp_y_centre_to_face(x_faces(fx)), 0.5 * (fy[..., 1:, :] + fy[..., :-1, :]),
              op.interp_y_centre_to_face(fz)),
        "w": (op.interp_z_centre_to_face(x_faces(fx)), op.interp_z_centre_to_face(y_faces(fy)),
              op.interp_z_face_to_centre(fz)),
    }


def advection_tendencies(u, v, w, th, qv, mass, mass_faces, dx, dy, dz, *, order_z=5,
                         eps=WENO_EPSILON, linear_momentum=False, eps_mode="relative",
                         positive_dt=None):
    """Advective tendencies of (u, v, w, th, qv) with the flux F = rho0 thrho0 u.

    Parameters
    ----------
    u, v, w, th, qv : arrays on the C grid (see :mod:`xlex.core.grid`).
    mass, mass_faces : arrays (nz,), (nz + 1,)
        rho0 thrho0 at centres and z faces [kg m-3].
    dx, dy, dz : float
        Spacing [m].
    order_z : {3, 5}
        Order of the vertical WENO scheme.
    eps : float
        WENO regularisation: dimensionless, a fraction of the square of each
        field's range (max - min), with ``eps_mode="relative"``; in the field's
        units squared with ``eps_mode="absolute"``.
    linear_momentum : bool
        Advect u, v, w with the linear upwind schemes of the same orders
        (the optimal weights of WENO) instead of WENO.
    eps_mode : {'relative', 'absolute'}
        'relative' (default) makes WENO invariant to the units and offset of
        each field; 'absolute' is the scheme of xlex 0.1, bit for bit (WENO
        effectively off for fields whose variations are small next to
        sqrt(eps), such as qv in kg/kg).
    positive_dt : float, optional
        Length [s] of the forward-Euler stage the tendency will be used for
        (dt / 2 for the four-stage SSPRK3). When given, qv's fluxes are
        renormalised (Skamarock 2006) so that qv + positive_dt * dqv/dt >= 0
        wherever qv >= 0; the SSP combination of the stages then keeps qv
        non-negative. None (default) applies no limiter.

    Returns
    -------
    tuple of arrays: du/dt, dv/dt, dw/dt, dth/dt, dqv/dt (advection only).

    Raises
    ------
    ValueError
        If ``eps_mode`` is not one of :data:`EPS_MODES`.
    """
    if eps_mode not in EPS_MODES:
        raise ValueError(f"eps_mode={eps_mode!r} must be one of {EPS_MODES}")
    relative = eps_mode == "relative"
    fields = {"th": th, "qv": qv, "u": u, "v": v, "w": w}
    mass_fluxes = _mass_fluxes(u, v, w, mass, mass_faces)
    linear = {"th": False, "qv": False, "u": linear_momentum, "v": linear_momentum,
              "w": linear_momentum}

    # The fields with one scheme are reconstructed as one stacked array (each with
    # its own relative epsilon): along x and y all of them (the centred ones padded
    # to w's nz + 1 levels), along z the centred ones and w apart (their walls
    # differ). One WENO per direction and group to trace, compile and
    # differentiate instead of one per field; the same values.
    nz1 = w.shape[-3]
    face_fluxes = {name: [None, None, None] for name in fields}
    for lin in sorted(set(linear.values())):
        group = [name for name in fields if linear[name] == lin]
        q = _stack([fields[name] for name in group], nz1)
        e = _stacked_epsilon([fields[name] for name in group], eps, relative)
        for d, axis in ((0, op.X), (1, op.Y)):
            g = _stack([mass_fluxes[name][d] for name in group], nz1)
            flux = g * periodic_face_values(q, g, axis, e, lin)
            for j, name in enumerate(group):
                face_fluxes[name][d] = flux[j, ..., :fields[name].shape[-3], :, :]
        # along z the centred fields (the first rows of the stack, w coming
        # last), cut back to their nz levels; w apart
        n_c = sum(name != "w" for name in group)
        if n_c:
            g_z = jnp.stack([mass_fluxes[name][2][..., 1:-1, :, :] for name in group[:n_c]])
            e_z = e if not relative else (eps, e[1][:n_c])
            value = bounded_interior_face_value(q[:n_c, ..., :-1, :, :], g_z, order_z, e_z, lin)
            flux = op._pad_z(g_z * value, 1, 1)  # no flux through the walls
            for k, name in enumerate(group[:n_c]):
                face_fluxes[name][2] = flux[k]
        if group[-1] == "w":
            g_z = mass_fluxes["w"][2]
            e_z = e if not relative else (eps, e[1][-1])
            face_fluxes["w"][2] = g_z * bounded_interior_face_value(w, g_z, order_z, e_z, lin)

    mc, mf = op.column(mass), op.column(mass_faces)
    tend = {name: _flux_form_tendency(fields[name], face_fluxes[name], mass_fluxes[name],
                                      mf if name == "w" else mc, dx, dy, dz,
                                      positive_dt if name == "qv" else None)
            for name in fields}
    return tend["u"], tend["v"], op.zero_walls(tend["w"]), tend["th"], tend["qv"]
