"""Staggered differences and interpolations, named by where they go from and to.

See :mod:`xlex.grid` for the convention: x and y faces are west/south faces
(periodic), z faces include both walls (``nz + 1`` levels). Every operator acts
on the last three axes ``(z, y, x)`` and broadcasts over leading batch axes.
"""

from __future__ import annotations

import jax.numpy as jnp

X, Y, Z = -1, -2, -3


def _shift(a, k, axis):
    """``a[i - k]`` along a periodic axis."""
    return jnp.roll(a, k, axis=axis)


# --- x (periodic) -----------------------------------------------------------

def diff_x_face_to_centre(f, dx):
    """d/dx of a field on west faces, at cell centres: (f[i+1] - f[i]) / dx."""
    return (_shift(f, -1, X) - f) / dx


def diff_x_centre_to_face(c, dx):
    """d/dx of a centred field, at west faces: (c[i] - c[i-1]) / dx."""
    return (c - _shift(c, 1, X)) / dx


def interp_x_face_to_centre(f):
    """Mean of the west and east faces of each cell."""
    return 0.5 * (f + _shift(f, -1, X))


def interp_x_centre_to_face(c):
    """Mean of the two cells either side of each west face."""
    return 0.5 * (c + _shift(c, 1, X))


# --- y (periodic) -----------------------------------------------------------

def diff_y_face_to_centre(f, dy):
    """d/dy of a field on south faces, at cell centres."""
    return (_shift(f, -1, Y) - f) / dy


def diff_y_centre_to_face(c, dy):
    """d/dy of a centred field, at south faces."""
    return (c - _shift(c, 1, Y)) / dy


def interp_y_face_to_centre(f):
    """Mean of the south and north faces of each cell."""
    return 0.5 * (f + _shift(f, -1, Y))


def interp_y_centre_to_face(c):
    """Mean of the two cells either side of each south face."""
    return 0.5 * (c + _shift(c, 1, Y))


# --- z (bounded by walls) ---------------------------------------------------

def _pad_z(a, lower, upper):
    widths = [(0, 0)] * a.ndim
    widths[a.ndim - 3] = (lower, upper)
    return jnp.pad(a, widths)


def diff_z_face_to_centre(f, dz):
    """d/dz of a field on the nz + 1 z faces, at the nz centres."""
    return (f[..., 1:, :, :] - f[..., :-1, :, :]) / dz


def diff_z_centre_to_face(c, dz):
    """d/dz of a centred field on the nz + 1 z faces; zero on the two walls
    (no flux through them)."""
    return _pad_z((c[..., 1:, :, :] - c[..., :-1, :, :]) / dz, 1, 1)


def interp_z_face_to_centre(f):
    """Mean of the bottom and top faces of each cell (nz + 1 -> nz)."""
    return 0.5 * (f[..., 1:, :, :] + f[..., :-1, :, :])


def interp_z_centre_to_face(c):
    """Mean of the cells either side of each interior z face; the wall faces
    take the value of the adjacent cell (nz -> nz + 1)."""
    mid = 0.5 * (c[..., 1:, :, :] + c[..., :-1, :, :])
    return jnp.concatenate([c[..., :1, :, :], mid, c[..., -1:, :, :]], axis=-3)


def zero_walls(w):
    """``w`` with its bottom and top wall levels set to zero."""
    return _pad_z(w[..., 1:-1, :, :], 1, 1)


# --- compound -----------------------------------------------------------------

def divergence(fx, fy, fz, dx, dy, dz):
    """Divergence at cell centres of a flux on the faces (fx west, fy south, fz bottom)."""
    return (diff_x_face_to_centre(fx, dx) + diff_y_face_to_centre(fy, dy)
            + diff_z_face_to_centre(fz, dz))


def column(profile):
    """A 1-D profile over z broadcast against ``(..., z, y, x)`` arrays."""
    return profile[:, None, None]
