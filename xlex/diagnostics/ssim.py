"""Structural similarity: single-scale SSIM and multi-scale MS-SSIM on 2-D sections.

Array core: no xarray. The two image axes are given explicitly; every other
axis (time, member, section index) is a batch axis, handled at once.

Definitions (Wang, Bovik, Sheikh & Simoncelli 2004; Wang, Simoncelli & Bovik 2003)
-------------------------------------------------------------------------------------
Local statistics use a normalised Gaussian window, sigma = 1.5 points,
truncated at radius 5 (11 x 11), applied separably and only where it fits
entirely inside the image ("valid" windows, no padding). With
C1 = (K1 L)^2 and C2 = (K2 L)^2, K1 = 0.01, K2 = 0.03 and L the data range:

    l  = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)                 (luminance)
    cs = (2 sigma_ab + C2) / (sigma_a^2 + sigma_b^2 + C2)            (contrast-structure)

with population (not sample) variances. SSIM is the mean of the map l * cs
over the valid windows; this equals ``skimage.metrics.structural_similarity``
with ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``.

MS-SSIM with S scales: the images are 2 x 2 average-pooled between scales (an
odd trailing row or column is dropped first). At scales 1 .. S-1 the mean of
the cs map is taken, at the coarsest scale S the mean of the full SSIM map
l * cs (as in Wang's reference MATLAB code, ``tf.image.ssim_multiscale`` and
pytorch-msssim), and

    MS-SSIM = prod_{j<S} max(mean cs_j, 0)^beta_j * max(mean SSIM_S, 0)^beta_S

Negative means are clipped to 0 before being raised to the fractional
exponents (they would give NaN otherwise); a clipped scale makes MS-SSIM 0.
The exponents are (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) for 5 scales (used
as published, they sum to 1.0001). With fewer scales the first S of them are
used, renormalised to sum to 1. A scale needs the window to fit, i.e. at least
11 points in both directions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from xlex.diagnostics.metrics import broadcast_pair, normalise_axes
from xlex.core.errors import DatasetError, OptionError

__all__ = [
    "MS_SSIM_WEIGHTS",
    "default_data_range",
    "gaussian_window",
    "max_scales",
    "ms_ssim",
    "ssim",
]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Exponents of the five MS-SSIM scales, finest first (Wang et al. 2003)."""

SIGMA = 1.5
"""Standard deviation of the Gaussian window [grid points]."""
RADIUS = 5
"""Radius of the truncated Gaussian window [grid points]: 11 x 11 windows."""
K1 = 0.01
K2 = 0.03


def gaussian_window(sigma: float = SIGMA, radius: int = RADIUS) -> np.ndarray:
    """One-dimensional normalised Gaussian window of ``2 radius + 1`` points.

    Parameters
    ----------
    sigma : float, default 1.5
        Standard deviation [grid points].
    radius : int, default 5
        Half-width [grid points]; the same truncation as ``scipy.ndimage``
        with ``truncate=3.5`` at sigma = 1.5.

    Returns
    -------
    numpy.ndarray
        Weights summing to 1, shape ``(2 radius + 1,)``.

    Examples
    --------
    >>> gaussian_window().shape
    (11,)
    """
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def max_scales(shape: Sequence[int], *, radius: int = RADIUS) -> int:
    """Number of MS-SSIM scales at which the window fits into an image of ``shape``.

    Parameters
    ----------
    shape : (int, int)
        Image size [points].
    radius : int, default 5
        Window radius [points]: a scale needs ``2 radius + 1`` points each way.

    Returns
    -------
    int
        Number of scales (0 if not even the full-resolution image fits a window),
        counting with the 2 x 2 pooling of :func:`ms_ssim` (size -> size // 2).

    Examples
    --------
    >>> max_scales((30, 60))  # the 400 m CM1 x-z section
    2
    """
    p, q = (int(s) for s in shape)
    n = 0
    while min(p, q) >= 2 * radius + 1:
        n += 1
        p, q = p // 2, q // 2
    return n


def _move_image_axes(xp, a, b, axes):
    """Broadcast a, b and move the two image axes to the end."""
    ax = normalise_axes(a.ndim, axes)
    if len(ax) != 2:
        raise OptionError(f"SSIM needs exactly two image axes, got {tuple(axes)}")
    a = xp.moveaxis(a, ax, (-2, -1))
    b = xp.moveaxis(b, ax, (-2, -1))
    return a, b


def default_data_range(a, b, *, axis: int | Sequence[int] = (-2, -1)):
    """Default SSIM data range L: the range of the reference ``b`` over ``axis``.

    L = max(b) - min(b) over the reduced axes, separately for every index of
    the other (leading) axes. Where that is 0 (a constant reference) the joint
    range max(a, b) - min(a, b) is used, and where that is 0 too (both fields
    the same constant, SSIM = 1 for any L) L = 1.

    Parameters
    ----------
    a, b : array_like
        The compared field and the reference, NumPy or JAX.
    axis : int or sequence of int, default (-2, -1)
        Axes the range is taken over.

    Returns
    -------
    array
        L, in the units of the inputs, shape of the inputs without ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> float(default_data_range(np.zeros((3, 3)), np.eye(3)))
    1.0
    """
    xp, a, b = broadcast_pair(a, b)
    axes = normalise_axes(a.ndim, axis)
    bmax = xp.max(b, axis=axes)
    bmin = xp.min(b, axis=axes)
    rng = bmax - bmin
    joint = xp.maximum(bmax, xp.max(a, axis=axes)) - xp.minimum(bmin, xp.min(a, axis=axes))
    one = xp.ones_like(rng)
    return xp.where(rng > 0, rng, xp.where(joint > 0, joint, one))


def _data_range(xp, a, b, data_range):
    """L as an array of the batch shape of the (already moved) images a, b."""
    if data_range is None:
        rng = default_data_range(a, b, axis=(-2, -1))
    else:
        if isinstance(data_range, int | float | np.number) and not data_range > 0:
            raise OptionError(f"data_range must be positive, got {data_range}")
        rng = xp.asarray(data_range, dtype=a.dtype)
    return xp.broadcast_to(rng, a.shape[:-2])


def _filter_valid(x, g):
    """Separable filter with the 1-D window g over the last two axes, valid part only."""
    n = len(g)
    r = x.shape[-2] - n + 1
    c = x.shape[-1] - n + 1
    y = sum(float(g[k]) * x[..., k : k + r, :] for k in range(n))
    return sum(float(g[k]) * y[..., :, k : k + c] for k in range(n))


def _maps(a, b, c1, c2, g):
    """Luminance and contrast-structure maps over the valid windows."""
    mu_a = _filter_valid(a, g)
    mu_b = _filter_valid(b, g)
    s_aa = _filter_valid(a * a, g) - mu_a * mu_a
    s_bb = _filter_valid(b * b, g) - mu_b * mu_b
    s_ab = _filter_valid(a * b, g) - mu_a * mu_b
    lum = (2.0 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
    cs = (2.0 * s_ab + c2) / (s_aa + s_bb + c2)
    return lum, cs


def _constants(xp, rng, k1, k2):
    """C1, C2 shaped to broadcast against the maps (explicit rank, no promotion)."""
    rng = xp.reshape(rng, rng.shape + (1, 1))
    return (k1 * rng) ** 2, (k2 * rng) ** 2


def _pool(xp, x):
    """2 x 2 average pooling of the last two axes (an odd last row/column is dropped)."""
    p, q = x.shape[-2] // 2, x.shape[-1] // 2
    x = x[..., : 2 * p, : 2 * q]
    x = xp.reshape(x, x.shape[:-2] + (p, 2, q, 2))
    return xp.mean(x, axis=(-3, -1))


def _check_fits(shape, radius):
    if min(shape) < 2 * radius + 1:
        raise DatasetError(
            f"an image of {shape[0]} x {shape[1]} points is smaller than the "
            f"{2 * radius + 1} x {2 * radius + 1} SSIM window; use a larger section"
        )


def ssim(
    a,
    b,
    *,
    data_range=None,
    axes: Sequence[int] = (-2, -1),
    sigma: float = SIGMA,
    radius: int = RADIUS,
    k1: float = K1,
    k2: float = K2,
):
    """Single-scale structural similarity (Wang et al. 2004), mean over valid windows.

    See the module docstring for the definition. Equal to
    ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=L)`` (skimage filters
    with reflect padding and then crops ``radius`` points, which leaves exactly
    the valid windows).

    Parameters
    ----------
    a, b : array_like
        The compared images and the reference images, NumPy or JAX, same shape
        (or broadcastable). All axes but ``axes`` are batch axes.
    data_range : float or array_like, optional
        L, in the units of the inputs: a scalar or an array broadcastable to the
        batch shape. Default: :func:`default_data_range` of each image pair
        (the range of the reference ``b``).
    axes : (int, int), default (-2, -1)
        The two image axes.
    sigma, radius : float, int
        Gaussian window [points], default 1.5 and 5.
    k1, k2 : float
        Stabilising constants, default 0.01 and 0.03.

    Returns
    -------
    array
        SSIM [1], batch shape.

    Raises
    ------
    DatasetError
        If an image is smaller than the window.
    OptionError
        For bad ``axes`` or a non-positive ``data_range``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((16, 16))
    >>> float(ssim(x, x))
    1.0
    """
    xp, a, b = broadcast_pair(a, b)
    a, b = _move_image_axes(xp, a, b, axes)
    _check_fits(a.shape[-2:], radius)
    c1, c2 = _constants(xp, _data_range(xp, a, b, data_range), k1, k2)
    lum, cs = _maps(a, b, c1, c2, gaussian_window(sigma, radius))
    return xp.mean(lum * cs, axis=(-2, -1))


def ms_ssim(
    a,
    b,
    *,
    data_range=None,
    axes: Sequence[int] = (-2, -1),
    scales: int = 5,
    sigma: float = SIGMA,
    radius: int = RADIUS,
    k1: float = K1,
    k2: float = K2,
):
    """Multi-scale structural similarity (Wang, Simoncelli & Bovik 2003).

    See the module docstring for the definition (Gaussian 11 x 11 window,
    valid windows, 2 x 2 average pooling, cs at every scale, luminance only at
    the coarsest, negative means clipped to 0). When the images are too small
    for ``scales`` scales (the window needs 11 x 11 points at the coarsest),
    as many scales as fit are used, the exponents renormalised to sum to 1,
    and a :class:`UserWarning` names the number used. The 60 x 30 x-z section
    of the 400 m CM1 run fits 2 scales.

    Parameters
    ----------
    a, b : array_like
        The compared images and the reference images, NumPy or JAX, same shape
        (or broadcastable). All axes but ``axes`` are batch axes.
    data_range : float or array_like, optional
        L, in the units of the inputs, constant over the scales: a scalar or an
        array broadcastable to the batch shape. Default:
        :func:`default_data_range` of each image pair at full resolution
        (max - min of the reference ``b``; the joint range if that is 0).
    axes : (int, int), default (-2, -1)
        The two image axes.
    scales : int, default 5
        Number of scales wanted, 1 to 5.
    sigma, radius : float, int
        Gaussian window [points], default 1.5 and 5.
    k1, k2 : float
        Stabilising constants, default 0.01 and 0.03.

    Returns
    -------
    array
        MS-SSIM [1] in [0, 1], batch shape.

    Raises
    ------
    DatasetError
        If the images are smaller than one window.
    OptionError
        For ``scales`` outside 1..5, bad ``axes`` or a non-positive ``data_range``.

    Warns
    -----
    UserWarning
        When fewer scales than ``scales`` fit.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((200, 200))
    >>> float(ms_ssim(x, x))
    1.0
    """
    if isinstance(scales, bool) or not isinstance(scales, int | np.integer):
        raise OptionError(f"scales must be an integer from 1 to 5, got {scales!r}")
    if not 1 <= scales <= len(MS_SSIM_WEIGHTS):
        raise OptionError(f"scales must be from 1 to {len(MS_SSIM_WEIGHTS)}, got {scales}")
    xp, a, b = broadcast_pair(a, b)
    a, b = _move_image_axes(xp, a, b, axes)
    _check_fits(a.shape[-2:], radius)
    fit = max_scales(a.shape[-2:], radius=radius)
    n = min(int(scales), fit)
    if n < scales:
        warnings.warn(
            f"MS-SSIM: a {a.shape[-2]} x {a.shape[-1]} image fits only {n} of the {scales} "
            f"scales (the {2 * radius + 1}-point window must fit at the coarsest); using "
            f"{n} scales with exponents renormalised to sum to 1",
            UserWarning,
            stacklevel=2,
        )
    weights = MS_SSIM_WEIGHTS[:n]
    if n < len(MS_SSIM_WEIGHTS):
        total = sum(weights)
        weights = tuple(w / total for w in weights)
    c1, c2 = _constants(xp, _data_range(xp, a, b, data_range), k1, k2)
    g = gaussian_window(sigma, radius)
    out = None
    for j, beta in enumerate(weights):
        lum, cs = _maps(a, b, c1, c2, g)
        if j < n - 1:
            value = xp.mean(cs, axis=(-2, -1))
            a, b = _pool(xp, a), _pool(xp, b)
        else:
            value = xp.mean(lum * cs, axis=(-2, -1))
        term = xp.maximum(value, 0.0) ** beta
        out = term if out is None else out * term
    return out
