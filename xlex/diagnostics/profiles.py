"""Vertical profiles: resolved kinetic energy of the deviations from the horizontal mean.

Array core: no xarray. Velocities are C-grid arrays whose last three axes are
(z, y, x): ``u`` on (zh, yh, xf), ``v`` on (zh, yf, xh), ``w`` on (zf, yh, xh)
with nz + 1 w levels including both walls. Leading axes (time, member) are
handled at once.
"""

from __future__ import annotations

from xlex.core.errors import DatasetError, OptionError
from xlex.core.operators import centred_winds
from xlex.diagnostics.metrics import array_namespace

__all__ = ["centre_velocities", "ke_profile"]


def centre_velocities(u, v, w):
    """Interpolate C-grid velocities to cell centres, after checking their shapes.

    u: mean of the west faces i and i + 1 (periodic in x); v: mean of the
    south faces j and j + 1 (periodic in y); w: mean of the faces k and k + 1
    (:func:`xlex.core.operators.centred_winds`).

    Parameters
    ----------
    u : array_like, shape (..., nz, ny, nx)
        x wind on west faces [m s-1].
    v : array_like, shape (..., nz, ny, nx)
        y wind on south faces [m s-1].
    w : array_like, shape (..., nz + 1, ny, nx)
        Vertical wind on bottom faces including the top wall [m s-1].

    Returns
    -------
    (uc, vc, wc) : tuple of arrays, each (..., nz, ny, nx)
        Velocities at cell centres [m s-1], NumPy or JAX like the inputs.

    Raises
    ------
    DatasetError
        If the shapes are not those of one C grid.

    Examples
    --------
    >>> import numpy as np
    >>> uc, vc, wc = centre_velocities(np.ones((2, 3, 4)), np.ones((2, 3, 4)), np.ones((3, 3, 4)))
    >>> wc.shape
    (2, 3, 4)
    """
    xp = array_namespace(u, v, w)
    u, v, w = xp.asarray(u), xp.asarray(v), xp.asarray(w)
    if min(u.ndim, v.ndim, w.ndim) < 3:
        raise DatasetError("u, v and w need at least three (z, y, x) axes")
    nz, ny, nx = u.shape[-3:]
    if v.shape[-3:] != (nz, ny, nx) or w.shape[-3:] != (nz + 1, ny, nx):
        raise DatasetError(
            f"velocities are not on one C grid: u {u.shape[-3:]}, v {v.shape[-3:]}, "
            f"w {w.shape[-3:]} (expected u and v (nz, ny, nx), w (nz + 1, ny, nx))"
        )
    return centred_winds(u, v, w, xp)


def _horizontal_variance(xp, c):
    d = c - xp.mean(c, axis=(-2, -1), keepdims=True)
    return xp.mean(d * d, axis=(-2, -1))


def ke_profile(u, v, w, *, time_axis: int | None = None):
    """Resolved kinetic energy profile KE(z) = 1/2 <u'^2 + v'^2 + w'^2> (paper eq. 28).

    The velocities are first interpolated to cell centres
    (:func:`centre_velocities`); the primes are deviations from the
    horizontal (x, y) mean at each level and each leading index; the average
    <.> is over x and y, and also over ``time_axis`` if given.

    Parameters
    ----------
    u, v, w : array_like
        C-grid velocities [m s-1], see :func:`centre_velocities`.
    time_axis : int, optional
        A leading axis of the inputs to average over as well (the time axis).

    Returns
    -------
    array, shape (..., nz)
        KE [m2 s-2] at the cell centres, leading axes of the inputs
        (broadcast together) without ``time_axis``.

    Raises
    ------
    DatasetError
        If the shapes are not those of one C grid.
    OptionError
        If ``time_axis`` is not a leading axis.

    Examples
    --------
    >>> import numpy as np
    >>> x = 2 * np.pi * np.arange(8) / 8
    >>> u = np.broadcast_to(np.sin(x), (2, 1, 8))           # u at the west faces
    >>> z = np.zeros((2, 1, 8))
    >>> ke = ke_profile(u, z, np.zeros((3, 1, 8)))
    >>> bool(np.allclose(ke, 0.25 * np.cos(np.pi / 8) ** 2))
    True
    """
    xp = array_namespace(u, v, w)
    uc, vc, wc = centre_velocities(u, v, w)
    parts = xp.broadcast_arrays(
        _horizontal_variance(xp, uc), _horizontal_variance(xp, vc), _horizontal_variance(xp, wc)
    )
    ke = 0.5 * (parts[0] + parts[1] + parts[2])
    if time_axis is not None:
        nlead = ke.ndim - 1
        ndim = max(uc.ndim, vc.ndim, wc.ndim)
        ax = int(time_axis)
        if ax < 0:
            ax += ndim
        if not 0 <= ax < nlead:
            raise OptionError(f"time_axis {time_axis} is not a leading (non-spatial) axis")
        ke = xp.mean(ke, axis=ax)
    return ke
