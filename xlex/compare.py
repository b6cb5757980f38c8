"""Comparison metrics of two runs on Datasets: the thin xarray edge over :mod:`xlex.diagnostics`.

Each metric takes contract Datasets (see ``xlex.io.cf``), has
:func:`xlex.align.align` check and align them, and hands plain arrays to the
array core through ``xarray.apply_ufunc(..., dask="parallelized")``:
dask-backed Datasets stay lazy and are computed chunk by chunk (chunks along
the spatial dims are merged for the call), NumPy- and JAX-backed ones are
computed at once. The ``ds.lex`` accessor delegates to these functions with
the same signatures.

Comparisons (:func:`correlation`, :func:`mse`, :func:`ms_ssim`) first check
that the two Datasets are comparable: the variable is in both; it has the
same spatial dims with the same sizes and coordinate values (to 1e-6 of the
domain extent: CM1 writes float32 km); they are evaluated at the times
common to both (to 1e-3 s), labelled with the times of the first Dataset.

The diagnostics of one run live beside them and are importable from here as
well: :func:`ke_profile` (:mod:`xlex.profiles`) and :func:`coarsen`, a
transform rather than a comparison (:mod:`xlex.transforms`).
"""

from __future__ import annotations

import numbers
import re
import warnings

import numpy as np
import xarray as xr

from xlex.align import COORD_RTOL, align, coordinate, result_dtype, spatial_dims
from xlex.core.errors import DatasetError, OptionError, OptionTypeError
from xlex.diagnostics.metrics import array_namespace
from xlex.diagnostics.metrics import correlation as _correlation
from xlex.diagnostics.metrics import mse as _mse
from xlex.diagnostics.ssim import MS_SSIM_WEIGHTS, RADIUS, default_data_range, max_scales
from xlex.diagnostics.ssim import ms_ssim as _ms_ssim
from xlex.io.cf import AXIS_OF
from xlex.profiles import ke_profile
from xlex.transforms import coarsen

__all__ = ["coarsen", "correlation", "ke_profile", "ms_ssim", "mse"]

#: The (first, second, cut) axes of each section plane.
_PLANES = {"xz": ("z", "x", "y"), "yz": ("z", "y", "x"), "xy": ("y", "x", "z")}


# --------------------------------------------------------------------------- point-wise metrics


def _square_units(units) -> str:
    """'m s-1' -> 'm2 s-2', 'K' -> 'K2', '1' -> '1' (UDUNITS-style products)."""
    if units is None:
        return "unknown"
    u = str(units).strip()
    if u in ("", "1"):
        return "1"
    out = []
    for tok in u.split():
        m = re.fullmatch(r"([A-Za-z%]+)(-?\d+)?", tok)
        if not m:
            return f"({u})2"
        out.append(f"{m.group(1)}{2 * int(m.group(2) or 1)}")
    return " ".join(out)


def _pointwise(a, b, var, func, name, long_name, units):
    xa, xb = align(a, b, var)
    core = list(spatial_dims(xa))
    out = xr.apply_ufunc(
        func, xa, xb,
        input_core_dims=[core, core],
        output_core_dims=[[]],
        dask="parallelized",
        output_dtypes=[result_dtype(xa, xb)],
        dask_gufunc_kwargs={"allow_rechunk": True},
        kwargs={"axis": tuple(range(-len(core), 0))},
    )
    out.name = name
    out.attrs = {"long_name": long_name, "units": units, "variable": var}
    return out


def correlation(a: xr.Dataset, b: xr.Dataset, var: str) -> xr.DataArray:
    """Pearson correlation R of ``var`` between two Datasets over all grid points (eq. 27).

    R is computed separately at every common time (and every index of other
    leading dims such as ``member``) over every grid point of ``var``.

    Parameters
    ----------
    a : xarray.Dataset
        The simulation X (e.g. xlex output).
    b : xarray.Dataset
        The truth Y (e.g. CM1 output or a coarsened truth), on the same grid.
    var : str
        Variable name, e.g. ``"thpert"``.

    Returns
    -------
    xarray.DataArray
        R [1] over ``time`` (the common times, labelled with ``a``'s) and any
        other leading dims. NaN where either field is constant. Lazy if the
        inputs are dask-backed.

    Raises
    ------
    DatasetError
        If ``var`` is missing from either Dataset (the message says which).
    GridMismatchError
        If the grids differ (the message gives both and the ``coarsen`` call
        that fixes it when the spacings have integer ratios), or no time is shared.

    Examples
    --------
    >>> r = correlation(out, cm1, "thpert")        # doctest: +SKIP
    >>> r.sel(time=600.0).item()                   # doctest: +SKIP
    0.98
    """
    r = _pointwise(a, b, var, _correlation, "correlation",
                   f"Pearson correlation of {var}", "1")
    r.attrs["comment"] = ("NaN where either field is constant over the grid (R is undefined "
                          "there, e.g. w of a state at rest)")
    return r


def mse(a: xr.Dataset, b: xr.Dataset, var: str) -> xr.DataArray:
    """Mean squared error of ``var`` between two Datasets over all grid points.

    MSE = mean over the grid points of (a - b)^2, at every common time.

    Parameters
    ----------
    a, b : xarray.Dataset
        The simulation and the truth, on the same grid.
    var : str
        Variable name.

    Returns
    -------
    xarray.DataArray
        MSE in the square of ``var``'s units (e.g. ``K2``, ``m2 s-2``) over
        ``time`` and any other leading dims.

    Raises
    ------
    DatasetError
        If ``var`` is missing from either Dataset.
    GridMismatchError
        If the grids differ or no time is shared.

    Examples
    --------
    >>> mse(out, cm1, "thpert").plot()             # doctest: +SKIP
    """
    units = _square_units(a[var].attrs.get("units")) if var in a.data_vars else "unknown"
    return _pointwise(a, b, var, _mse, "mse", f"mean squared error of {var}", units)


# --------------------------------------------------------------------------- MS-SSIM


def _section_index(ds, xa, dim, ax, at):
    """Index on ``dim`` (the var's own coordinate) nearest to ``at`` [m] (default: centre)."""
    c = coordinate(xa, dim)
    if c is None:
        raise DatasetError(f"dim {dim!r} has no coordinate values; cannot place a section")
    if at is None:
        centre_dim = f"{ax}h"
        cc = coordinate(ds, centre_dim)
        if cc is not None and cc.size:
            at = 0.5 * (cc[0] + cc[-1])
        elif dim == "zf":
            at = 0.5 * (c[0] + c[-1])
        else:
            step = c[1] - c[0] if c.size > 1 else 0.0
            at = 0.5 * (c[0] + c[-1] + step)
    if isinstance(at, bool) or not isinstance(at, numbers.Real):
        raise OptionTypeError(f"at must be a coordinate in metres, None or 'all', got {at!r}")
    step = abs(c[1] - c[0]) if c.size > 1 else 0.0
    if not c.min() - step <= at <= c.max() + step:
        raise OptionError(
            f"at={at:g} m is outside the domain along {dim} ({c.min():g} to {c.max():g} m)")
    dist = np.abs(c - at)
    # nearest point; ties (to the coordinate tolerance, e.g. float32 km) go to the lower index
    return int(np.flatnonzero(dist <= dist.min() + COORD_RTOL * np.max(np.abs(c)))[0])


def _ms_ssim_kernel(a, b, data_range=None, *, scales, sections):
    """a, b: (..., [section,] p, q) blocks. Mean MS-SSIM over the section axis if present."""
    xp = array_namespace(a, b)
    if sections:
        if data_range is None:
            data_range = default_data_range(a, b, axis=(-3, -2, -1))
        dr = xp.asarray(data_range)
        dr = xp.reshape(dr, dr.shape + (1,))
        return xp.mean(_ms_ssim(a, b, data_range=dr, scales=scales), axis=-1)
    return _ms_ssim(a, b, data_range=data_range, scales=scales)


def ms_ssim(a: xr.Dataset, b: xr.Dataset, var: str, *, plane: str = "xz", at=None,
            data_range=None, scales: int = 5) -> xr.DataArray:
    """Multi-scale structural similarity (Wang et al. 2003) of ``var`` on 2-D sections.

    Definition (see :mod:`xlex.diagnostics.ssim`): Gaussian window sigma = 1.5
    points truncated to 11 x 11, K1 = 0.01, K2 = 0.03, exponents (0.0448,
    0.2856, 0.3001, 0.2363, 0.1333), 2 x 2 average pooling between scales,
    contrast-structure at every scale and luminance only at the coarsest,
    valid windows only (no padding), negative scale means clipped to 0 before
    the fractional powers. Windows count grid points, so the plane's two
    spacings should be similar for the window to be isotropic.

    When the section is too small for ``scales`` scales (the window needs 11
    points each way at the coarsest), as many as fit are used with the
    exponents renormalised to sum to 1, and a ``UserWarning`` says how many:
    the 60 x 30 x-z section of the 400 m CM1 run uses 2.

    Parameters
    ----------
    a : xarray.Dataset
        The simulation.
    b : xarray.Dataset
        The reference (truth), on the same grid. It sets the default data range.
    var : str
        Variable name.
    plane : {"xz", "yz", "xy"}, default "xz"
        The plane of the sections.
    at : float, "all" or None
        Position [m] of the section along the third axis: the nearest point of
        ``var``'s own coordinate (``yh`` or ``yf`` for an x-z section of a
        centred or a v field); ties go to the lower index. None: the domain
        centre (the midpoint of the centre coordinate, e.g. Ly / 2). ``"all"``:
        the "3-D average", the mean of the MS-SSIM of every section of that
        plane (every y for "xz").
    data_range : float, optional
        L in ``var``'s units. Default, for each time (and member) separately:
        max(b) - min(b) of the reference over the compared section, or over all
        sections together (the 3-D field) with ``at="all"``; if that is 0 the
        joint range of a and b, and if that is 0 too, 1.
    scales : int, default 5
        Number of scales wanted (1 to 5).

    Returns
    -------
    xarray.DataArray
        MS-SSIM [1] over ``time`` and other leading dims, with the section's
        position as a scalar coordinate (unless ``at="all"``); attrs say the
        plane, section, number of scales used and the data range.

    Raises
    ------
    DatasetError
        If ``var`` is missing, or the section is smaller than one 11 x 11 window.
    GridMismatchError
        If the grids differ or no time is shared.
    OptionError
        For a bad ``plane``, ``at`` outside the domain, or ``scales`` outside 1-5.

    Warns
    -----
    UserWarning
        When fewer than ``scales`` scales fit.

    Examples
    --------
    >>> ms_ssim(out, cm1, "thpert").plot()                    # doctest: +SKIP
    >>> ms_ssim(out, cm1, "thpert", plane="xy", at=2000.0)    # doctest: +SKIP
    >>> ms_ssim(out, cm1, "w", at="all")                      # doctest: +SKIP
    """
    _check_ms_ssim_options(plane, scales, data_range)
    xa, xb = align(a, b, var)
    xa, xb, core, where = _sections(a, xa, xb, var, plane, at)
    n = _scales_that_fit(xa, core, var, plane, scales)
    args, in_core = [xa, xb], [core, core]
    if data_range is not None:
        args.append(data_range)
        in_core.append([])
    sections = len(core) == 3
    out = xr.apply_ufunc(
        _ms_ssim_kernel, *args,
        input_core_dims=in_core,
        output_core_dims=[[]],
        dask="parallelized",
        output_dtypes=[result_dtype(xa, xb)],
        dask_gufunc_kwargs={"allow_rechunk": True},
        kwargs={"scales": n, "sections": sections},
    )
    out.name = "ms_ssim"
    dr = ("per time: max - min of the reference (second dataset) over the "
          + ("3-D field" if sections else "section") if data_range is None
          else f"{float(data_range):g}" if isinstance(data_range, numbers.Real) else "given")
    out.attrs = {
        "long_name": f"MS-SSIM of {var}, {where}",
        "units": "1", "variable": var, "plane": plane, "section": where,
        "scales": n, "data_range": dr,
    }
    return out


def _check_ms_ssim_options(plane, scales, data_range):
    if plane not in _PLANES:
        raise OptionError(f"plane must be one of {sorted(_PLANES)}, got {plane!r}")
    if isinstance(scales, bool) or not isinstance(scales, numbers.Integral):
        raise OptionTypeError(f"scales must be an integer from 1 to 5, got {scales!r}")
    if not 1 <= scales <= len(MS_SSIM_WEIGHTS):
        raise OptionError(f"scales must be from 1 to 5, got {scales}")
    if data_range is not None and not (isinstance(data_range, numbers.Real | xr.DataArray)):
        raise OptionTypeError(f"data_range must be a number, got {data_range!r}")
    if isinstance(data_range, numbers.Real) and not data_range > 0:
        raise OptionError(f"data_range must be positive, got {data_range}")


def _sections(ds, xa, xb, var, plane, at):
    """(xa, xb, core dims, description): the section of ``plane`` at ``at``, or with
    ``at="all"`` every section, the cut dim first in the core dims."""
    dims = {AXIS_OF[d]: d for d in spatial_dims(xa)}
    p_ax, q_ax, s_ax = _PLANES[plane]
    missing = [ax for ax in (p_ax, q_ax, s_ax) if ax not in dims]
    if missing:
        raise DatasetError(f"{var!r} has no {'/'.join(missing)} dim; it cannot be cut in "
                           f"{plane} sections (its dims: {xa.dims})")
    p, q, s = dims[p_ax], dims[q_ax], dims[s_ax]
    if isinstance(at, str):
        if at != "all":
            raise OptionError(f"at must be a coordinate in metres, None or 'all', got {at!r}")
        where = f"3-D average: mean over all {xa.sizes[s]} {plane[0]}-{plane[1]} sections"
        return xa, xb, [s, p, q], where
    i = _section_index(ds, xa, s, s_ax, at)
    xa, xb = xa.isel({s: i}), xb.isel({s: i})
    pos = f" at {s} = {float(xa[s]):g} m" if s in xa.coords else f" at {s} index {i}"
    return xa, xb, [p, q], f"{plane[0]}-{plane[1]} section{pos}"


def _scales_that_fit(xa, core, var, plane, scales):
    """How many of ``scales`` fit the section (a warning when fewer)."""
    shape = (xa.sizes[core[-2]], xa.sizes[core[-1]])
    if min(shape) < 2 * RADIUS + 1:
        raise DatasetError(
            f"the {plane} section of {var!r} ({shape[0]} x {shape[1]} points) is smaller "
            f"than the {2 * RADIUS + 1} x {2 * RADIUS + 1} MS-SSIM window")
    n = min(scales, max_scales(shape))
    if n < scales:
        warnings.warn(
            f"MS-SSIM of {var!r}: the {shape[0]} x {shape[1]} {plane} section fits only {n} "
            f"of {scales} scales (the 11-point window must fit at the coarsest); using {n} "
            "scales with exponents renormalised to sum to 1",
            UserWarning, stacklevel=3)
    return n
