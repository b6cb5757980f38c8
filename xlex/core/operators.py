"""Staggered differences and interpolations, named by where they go from and to.

See :mod:`xlex.core.grid` for the convention: x and y faces are west/south faces
(periodic), z faces include both walls (``nz + 1`` levels). Every operator acts
on the last three axes ``(z, y, x)`` and broadcasts over leading batch axes.
The face-to-centre interpolations take ``xp`` (``jax.numpy`` by default, or
``numpy``) so that the edges interpolate NumPy arrays with the same arithmetic:
:func:`centred_winds` is the one interpolation of the winds to the centres.
"""

from __future__ import annotations

import jax.numpy as jnp

X, Y, Z = -1, -2, -3


def _shift(a, k, axis, xp=jnp):
    """``a[i - k]`` along a periodic axis."""
    return xp.roll(a, k, axis=axis)


# --- x (periodic) -----------------------------------------------------------

def diff_x_face_to_centre(f, dx):
    """d/dx of a field on west faces, at cell centres: (f[i+1] - f[i]) / dx."""
    return (_shift(f, -1, X) - f) / dx


def diff_x_centre_to_face(c, dx):
    """d/dx of a centred field, at west faces: (c[i] - c[i-1]) / dx."""
    return (c - _shift(c, 1, X)) / dx


def interp_x_face_to_centre(f, xp=jnp):
    """Mean of the west and east faces of each cell."""
    return 0.5 * (f + _shift(f, -1, X, xp))


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


def interp_y_face_to_centre(f, xp=jnp):
    """Mean of the south and north faces of each cell."""
    return 0.5 * (f + _shift(f, -1, Y, xp))


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

def centred_horizontal_winds(u, v, xp=jnp):
    """u and v from their west / south faces to the cell centres (``(..., y, x)``
    last, so a single level works too): ``(interp_x_face_to_centre(u),
    interp_y_face_to_centre(v))``."""
    return interp_x_face_to_centre(u, xp), interp_y_face_to_centre(v, xp)


def centred_winds(u, v, w, xp=jnp):
    """The C-grid winds interpolated to the cell centres.

    u: mean of the west faces i and i + 1 (periodic); v: mean of the south
    faces j and j + 1 (periodic); w: mean of the bottom and top faces k and
    k + 1 (``nz + 1 -> nz``).

    Parameters
    ----------
    u, v : array (..., nz, ny, nx)
        Winds on the west / south faces [m s-1].
    w : array (..., nz + 1, ny, nx)
        Vertical wind on the z faces, both walls included [m s-1].
    xp : module, default jax.numpy
        Array namespace of the inputs (``numpy`` at the edges).

    Returns
    -------
    (uc, vc, wc) : tuple of arrays (..., nz, ny, nx)
        The winds at the cell centres [m s-1].

    Examples
    --------
    >>> import numpy as np
    >>> uc, vc, wc = centred_winds(np.ones((2, 3, 4)), np.ones((2, 3, 4)),
    ...                            np.ones((3, 3, 4)), np)
    >>> wc.shape
    (2, 3, 4)
    """
    return (*centred_horizontal_winds(u, v, xp), interp_z_face_to_centre(w))


def divergence(fx, fy, fz, dx, dy, dz):
    """Divergence at cell centres of a flux on the faces (fx west, fy south, fz bottom)."""
    return (diff_x_face_to_centre(fx, dx) + diff_y_face_to_centre(fy, dy)
            + diff_z_face_to_centre(fz, dz))


def column(profile):
    """A 1-D profile over z broadcast against ``(..., z, y, x)`` arrays."""
    return profile[:, None, None]
