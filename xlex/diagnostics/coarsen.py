"""Staggering-aware coarse-graining of C-grid arrays (array core, no xarray).

Conventions. The last axes of an array are spatial, one factor per axis.
A *centre* axis of n points becomes n / f block means. A *face* axis keeps
every f-th face: periodic faces (``xf``, ``yf``: n points) become n / f faces,
walled faces (``zf``: n + 1 points, both walls) become n / f + 1 faces, the
walls kept. Along the axes that are not subsampled a face value is the mean
over the coarse face, weighted by an optional mass weight m(z) so that the
coarse value is (block mean of m * value) / (block mean of m): the coarse
mass flux through a coarse face is then exactly the mean of the fine mass
fluxes through it.

Why a divergence-free field stays divergence-free. Write m_k for the mass
weight at fine centres (m = rho0 th0 (1 + (1/eps - 1) qv0) = rho0 thrho0) and
M_k for the weight used on the fine w faces. On the fine grid

    m_k (u[k,j,i+1] - u[k,j,i]) / dx + m_k (v[k,j+1,i] - v[k,j,i]) / dy
        + (M_{k+1} w[k+1,j,i] - M_k w[k,j,i]) / dz = 0.

Summing over the fz x fy x fx cells of a coarse block, the interior faces
cancel (telescoping) and only the fluxes through the block's faces remain.
With the coarse values

    U = <m u>_{y,z} / <m>_z  at every fx-th x face,   V likewise,
    W = <w>_{x,y}             at every fz-th z face,

the coarse divergence

    <m>_K (U[I+1] - U[I]) / Dx + <m>_K (V[J+1] - V[J]) / Dy
        + (M[(K+1) fz] W[K+1] - M[K fz] W[K]) / Dz

(Dx = fx dx, ...) is the block sum of the fine divergences divided by the
block volume, so it is zero to round-off. The coarse centre weight is the
block mean <m> of the fine m (not m recomputed from block-mean rho0, th0,
qv0, which differs at second order), and the coarse face weight is the fine
face weight at the kept face, M[K fz] (not an interpolation of coarse centre
weights, which also differs at second order in dz).
"""

from __future__ import annotations

from collections.abc import Sequence

from xlex.core import thermo
from xlex.diagnostics.metrics import array_namespace
from xlex.core.errors import DatasetError, OptionError

__all__ = [
    "block_mean",
    "coarsen_array",
    "coarsen_centred",
    "coarsen_u",
    "coarsen_v",
    "coarsen_w",
    "mass_weight",
]


def _check(x, factors, faces=None, walled=None):
    k = len(factors)
    if x.ndim < k:
        raise DatasetError(f"array of shape {x.shape} has fewer than {k} spatial axes")
    faces = (False,) * k if faces is None else tuple(faces)
    walled = (False,) * k if walled is None else tuple(walled)
    if len(faces) != k or len(walled) != k:
        raise OptionError("factors, faces and walled must have one entry per spatial axis")
    for pos, (f, n, face, wall) in enumerate(
        zip(factors, x.shape[-k:], faces, walled, strict=True)
    ):
        if isinstance(f, bool) or int(f) != f or f < 1:
            raise OptionError(f"coarsening factors must be positive integers, got {f!r}")
        cells = n - 1 if (face and wall) else n
        if cells % f:
            kind = "walled face" if (face and wall) else ("face" if face else "centre")
            raise DatasetError(
                f"spatial axis {pos - k} ({kind} axis of {n} points, {cells} cells) "
                f"does not divide by the factor {f}"
            )
    return tuple(int(f) for f in factors), faces, walled


def block_mean(x, factors: Sequence[int]):
    """Means over non-overlapping blocks of the trailing axes.

    Parameters
    ----------
    x : array_like, shape (..., n1, ..., nk)
        NumPy or JAX array; the last ``len(factors)`` axes are coarsened.
    factors : sequence of int
        Block length along each trailing axis (1 leaves an axis unchanged);
        must divide its size.

    Returns
    -------
    array, shape (..., n1 / f1, ..., nk / fk)
        Block means, in the units of ``x``.

    Raises
    ------
    DatasetError
        If a size does not divide by its factor.

    Examples
    --------
    >>> import numpy as np
    >>> block_mean(np.arange(6.0), (3,))
    array([1., 4.])
    """
    xp = array_namespace(x)
    x = xp.asarray(x)
    factors, _, _ = _check(x, factors)
    if all(f == 1 for f in factors):
        return x
    k = len(factors)
    lead = x.shape[: x.ndim - k]
    shape = list(lead)
    for n, f in zip(x.shape[x.ndim - k :], factors, strict=True):
        shape += [n // f, f]
    y = xp.reshape(x, tuple(shape))
    return xp.mean(y, axis=tuple(len(lead) + 2 * i + 1 for i in range(k)))


def coarsen_array(
    x,
    factors: Sequence[int],
    faces: Sequence[bool],
    *,
    walled: Sequence[bool] | None = None,
    weight=None,
    weight_axis: int | None = None,
):
    """Coarse-grain the trailing axes of a C-grid array.

    Face axes keep every f-th point; centre axes are block-averaged, with the
    mass weight along ``weight_axis`` if given (value = <weight * x> / <weight>).

    Parameters
    ----------
    x : array_like
        NumPy or JAX array whose last ``len(factors)`` axes are spatial.
    factors : sequence of int
        Coarsening factor of each trailing axis.
    faces : sequence of bool
        True for a face (staggered) axis, which is subsampled.
    walled : sequence of bool, optional
        True for a face axis that includes both walls (n + 1 points, e.g. ``zf``);
        only used to check divisibility. Default: none.
    weight : array_like, optional
        Mass weight, shape (..., n) along the centre axis ``weight_axis``; its
        leading axes broadcast against those of ``x``. Positive.
    weight_axis : int, optional
        Negative index of the trailing axis ``weight`` lies along (e.g. -3 for z
        in (z, y, x)); required with ``weight``.

    Returns
    -------
    array
        The coarse array, same leading axes.

    Raises
    ------
    DatasetError
        If a size does not divide by its factor.
    OptionError
        For inconsistent arguments.

    Examples
    --------
    >>> import numpy as np
    >>> coarsen_array(np.arange(8.0).reshape(2, 4), (1, 2), (False, True))
    array([[0., 2.],
           [4., 6.]])
    """
    xp = array_namespace(x, weight) if weight is not None else array_namespace(x)
    x = xp.asarray(x)
    factors, faces, walled = _check(x, factors, faces, walled)
    k = len(factors)
    sub = tuple(slice(None, None, f) if face else slice(None) for f, face in
                zip(factors, faces, strict=True))
    x = x[(Ellipsis,) + sub]
    means = tuple(1 if face else f for f, face in zip(factors, faces, strict=True))
    if weight is None:
        return block_mean(x, means)
    if weight_axis is None or not -k <= int(weight_axis) < 0:
        raise OptionError(f"weight_axis must be one of the trailing axes -{k}..-1")
    wax = int(weight_axis)
    if faces[wax]:
        raise OptionError("the mass weight must lie along a centre (not a face) axis")
    weight = xp.asarray(weight)
    if weight.shape[-1] != x.shape[wax]:
        raise DatasetError(
            f"mass weight has {weight.shape[-1]} points, the weighted axis {x.shape[wax]}"
        )
    wlead = weight.shape[:-1]
    xlead = x.ndim - k
    if len(wlead) > xlead:
        raise DatasetError(f"mass weight of shape {weight.shape} has more leading axes than x")
    pad = (1,) * (xlead - len(wlead))
    head = (1,) * (k + wax)  # trailing axes before the weighted one
    tail = (1,) * (-wax - 1)  # trailing axes after it
    wfull = xp.reshape(weight, pad + wlead + head + weight.shape[-1:] + tail)
    wmean = xp.reshape(block_mean(weight, (means[wax],)),
                       pad + wlead + head + (weight.shape[-1] // means[wax],) + tail)
    return block_mean(x * wfull, means) / wmean


def coarsen_centred(x, factors: Sequence[int] = (3, 6, 6)):
    """Block means of a cell-centred field over its trailing (z, y, x) axes.

    Conserves the domain integral: sum(coarse) * coarse cell volume equals
    sum(fine) * fine cell volume.

    Parameters
    ----------
    x : array_like, shape (..., nz, ny, nx)
        Field at cell centres (any units).
    factors : (int, int, int), default (3, 6, 6)
        Factors (fz, fy, fx).

    Returns
    -------
    array, shape (..., nz / fz, ny / fy, nx / fx)

    Examples
    --------
    >>> import numpy as np
    >>> coarsen_centred(np.ones((1, 6, 6, 6)), (3, 6, 6)).shape
    (1, 2, 1, 1)
    """
    return block_mean(x, factors)


def coarsen_u(u, factors: Sequence[int] = (3, 6, 6), *, m=None):
    """Coarse-grain x wind on west faces (..., nz, ny, nx) -> (..., nz/fz, ny/fy, nx/fx).

    Coarse faces are every fx-th fine face; the value is <m u> / <m> over the
    coarse face (fz levels x fy rows), so the mass flux is conserved.

    Parameters
    ----------
    u : array_like, shape (..., nz, ny, nx)
        x wind [m s-1].
    factors : (int, int, int), default (3, 6, 6)
        (fz, fy, fx).
    m : array_like, shape (..., nz), optional
        Mass weight at cell centres (see :func:`mass_weight`); default 1.

    Returns
    -------
    array
        Coarse u [m s-1].

    Examples
    --------
    >>> import numpy as np
    >>> coarsen_u(np.ones((3, 6, 6)), m=np.arange(1.0, 4.0)).shape
    (1, 1, 1)
    """
    fz, fy, fx = factors
    return coarsen_array(u, (fz, fy, fx), (False, False, True), weight=m,
                         weight_axis=None if m is None else -3)


def coarsen_v(v, factors: Sequence[int] = (3, 6, 6), *, m=None):
    """Coarse-grain y wind on south faces; as :func:`coarsen_u` with x and y swapped.

    Parameters
    ----------
    v : array_like, shape (..., nz, ny, nx)
        y wind [m s-1].
    factors : (int, int, int), default (3, 6, 6)
        (fz, fy, fx).
    m : array_like, shape (..., nz), optional
        Mass weight at cell centres; default 1.

    Returns
    -------
    array
        Coarse v [m s-1].

    Examples
    --------
    >>> import numpy as np
    >>> coarsen_v(np.ones((3, 6, 6))).shape
    (1, 1, 1)
    """
    fz, fy, fx = factors
    return coarsen_array(v, (fz, fy, fx), (False, True, False), weight=m,
                         weight_axis=None if m is None else -3)


def coarsen_w(w, factors: Sequence[int] = (3, 6, 6)):
    """Coarse-grain vertical wind on z faces (..., nz + 1, ny, nx) -> (..., nz/fz + 1, ...).

    Coarse faces are every fz-th fine face (both walls kept); the value is
    the horizontal block mean of w (the mass weight is constant on a level).

    Parameters
    ----------
    w : array_like, shape (..., nz + 1, ny, nx)
        Vertical wind [m s-1].
    factors : (int, int, int), default (3, 6, 6)
        (fz, fy, fx).

    Returns
    -------
    array
        Coarse w [m s-1].

    Examples
    --------
    >>> import numpy as np
    >>> coarsen_w(np.ones((7, 6, 6))).shape
    (3, 1, 1)
    """
    return coarsen_array(w, factors, (True, False, False), walled=(True, False, False))


def mass_weight(rho0, th0, qv0):
    """Mass weight m = rho0 th0 (1 + (1/eps - 1) qv0) = rho0 thrho0 of the anelastic constraint.

    :func:`xlex.core.thermo.mass_weight` (``BaseState.mass``) on broadcast arrays.

    Parameters
    ----------
    rho0 : array_like
        Base-state density [kg m-3].
    th0 : array_like
        Base-state potential temperature [K].
    qv0 : array_like
        Base-state water-vapour mixing ratio [kg kg-1].

    Returns
    -------
    array
        m [kg m-3 K], same shape as the inputs.

    Examples
    --------
    >>> float(mass_weight(1.0, 300.0, 0.0))
    300.0
    """
    xp = array_namespace(rho0, th0, qv0)
    rho0, th0, qv0 = xp.broadcast_arrays(xp.asarray(rho0), xp.asarray(th0), xp.asarray(qv0))
    return thermo.mass_weight(rho0, th0, qv0)
