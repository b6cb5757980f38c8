"""Point-wise comparison metrics: Pearson correlation (paper eq. 27) and mean squared error.

Array core: no xarray. Every function takes plain arrays (NumPy or JAX; the
namespace follows the inputs) and reduces over explicitly given axes, so any
leading axes (time, ensemble member) are handled at once, vectorised.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xlex.core.errors import GridMismatchError, OptionError

__all__ = ["array_namespace", "correlation", "mse"]


def array_namespace(*arrays):
    """Return the array module matching the inputs.

    Parameters
    ----------
    *arrays : array_like
        Arrays (or scalars) that will be combined.

    Returns
    -------
    module
        :mod:`jax.numpy` if any argument is a JAX array (or a JAX tracer),
        :mod:`numpy` otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> array_namespace(np.zeros(3)).__name__
    'numpy'
    """
    return jnp if any(isinstance(x, jax.Array) for x in arrays) else np


def normalise_axes(ndim: int, axis: int | Sequence[int], *, trailing: bool = False) -> tuple:
    """Turn ``axis`` into a sorted tuple of distinct non-negative axes of an ``ndim``-array.

    With ``trailing=True`` the axes must be the last ``len(axis)`` axes.
    Raises :class:`~xlex.core.errors.OptionError` for out-of-range or repeated axes.
    """
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    out = []
    for ax in axes:
        if not -ndim <= int(ax) < ndim:
            raise OptionError(f"axis {ax} is out of range for an array with {ndim} dimensions")
        out.append(int(ax) % ndim)
    if len(set(out)) != len(out):
        raise OptionError(f"repeated axis in {tuple(axes)}")
    out = tuple(sorted(out))
    if trailing and out != tuple(range(ndim - len(out), ndim)):
        raise OptionError(f"axes {tuple(axes)} must be the trailing axes of the array")
    return out


def broadcast_pair(a, b):
    """Return ``(xp, a, b)``: the namespace and the two inputs explicitly broadcast together.

    Broadcasting is explicit (``broadcast_arrays``), so it is allowed under
    ``jax_numpy_rank_promotion="raise"``; a shape mismatch raises
    :class:`~xlex.core.errors.GridMismatchError`.
    """
    xp = array_namespace(a, b)
    a = xp.asarray(a)
    b = xp.asarray(b)
    try:
        a, b = xp.broadcast_arrays(a, b)
    except ValueError as err:
        raise GridMismatchError(
            f"arrays of shapes {a.shape} and {b.shape} cannot be compared point by point"
        ) from err
    return xp, a, b


def correlation(a, b, *, axis: int | Sequence[int] = (-3, -2, -1)):
    """Pearson correlation coefficient R between ``a`` and ``b`` over ``axis`` (paper eq. 27).

    R = sum (a - mean a)(b - mean b) / sqrt(sum (a - mean a)^2 sum (b - mean b)^2),
    the sums and means over every point of the reduced axes (two-pass, so it
    is accurate for fields with a large mean such as potential temperature).

    Parameters
    ----------
    a, b : array_like
        The simulated field X and the truth Y, same shape (or broadcastable).
        NumPy or JAX arrays; the result uses the namespace of the inputs.
    axis : int or sequence of int, default (-3, -2, -1)
        Axes reduced over (the spatial axes); all other axes are kept.

    Returns
    -------
    array
        R [1], shape of the inputs without ``axis``. NaN where either field
        is constant over the reduced axes (R is undefined there).

    Raises
    ------
    GridMismatchError
        If the shapes of ``a`` and ``b`` do not broadcast.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(24.0).reshape(2, 3, 4)
    >>> float(correlation(x, 2 * x + 1, axis=(1, 2))[0])
    1.0
    """
    xp, a, b = broadcast_pair(a, b)
    axes = normalise_axes(a.ndim, axis)
    da = a - xp.mean(a, axis=axes, keepdims=True)
    db = b - xp.mean(b, axis=axes, keepdims=True)
    num = xp.sum(da * db, axis=axes)
    den = xp.sqrt(xp.sum(da * da, axis=axes) * xp.sum(db * db, axis=axes))
    if xp is np:
        with np.errstate(invalid="ignore", divide="ignore"):
            return num / den
    return num / den


def mse(a, b, *, axis: int | Sequence[int] = (-3, -2, -1)):
    """Mean squared error mean((a - b)^2) over ``axis``.

    Parameters
    ----------
    a, b : array_like
        The two fields, same shape (or broadcastable). NumPy or JAX arrays.
    axis : int or sequence of int, default (-3, -2, -1)
        Axes averaged over (the spatial axes); all other axes are kept.

    Returns
    -------
    array
        MSE in the squared units of the inputs, shape of the inputs without ``axis``.

    Raises
    ------
    GridMismatchError
        If the shapes of ``a`` and ``b`` do not broadcast.

    Examples
    --------
    >>> import numpy as np
    >>> float(mse(np.zeros((2, 2)), np.full((2, 2), 3.0), axis=(0, 1)))
    9.0
    """
    xp, a, b = broadcast_pair(a, b)
    axes = normalise_axes(a.ndim, axis)
    d = a - b
    return xp.mean(d * d, axis=axes)
