"""Dataset-level diagnostics: the thin xarray edge over :mod:`xlex.diagnostics`.

Each function takes contract Datasets (see ``xlex.io.cf``), checks them, and
hands plain arrays to the array core through ``xarray.apply_ufunc(...,
dask="parallelized")``: dask-backed Datasets stay lazy and are computed chunk
by chunk (chunks along the spatial dims are merged for the call), NumPy- and
JAX-backed ones are computed at once. The ``ds.lex`` accessor delegates to
these functions with the same signatures.

Comparisons (:func:`correlation`, :func:`mse`, :func:`ms_ssim`) first check
that the two Datasets are comparable: the variable is in both; it has the
same spatial dims with the same sizes and coordinate values (to 1e-6 of the
domain extent: CM1 writes float32 km); they are evaluated at the times
common to both (to 1e-3 s), labelled with the times of the first Dataset.
"""

from __future__ import annotations

import numbers
import re
import warnings

import numpy as np
import xarray as xr

from xlex.diagnostics.coarsen import block_mean, coarsen_array, mass_weight
from xlex.diagnostics.metrics import array_namespace
from xlex.diagnostics.metrics import correlation as _correlation
from xlex.diagnostics.metrics import mse as _mse
from xlex.diagnostics.profiles import ke_profile as _ke_profile
from xlex.diagnostics.ssim import MS_SSIM_WEIGHTS, RADIUS, default_data_range, max_scales
from xlex.diagnostics.ssim import ms_ssim as _ms_ssim
from xlex.errors import DatasetError, GridMismatchError, OptionError, OptionTypeError

__all__ = ["coarsen", "correlation", "ke_profile", "ms_ssim", "mse"]

SPATIAL_DIMS = ("zh", "zf", "yh", "yf", "xh", "xf")
_AXIS_OF = {"zh": "z", "zf": "z", "yh": "y", "yf": "y", "xh": "x", "xf": "x"}
_DIMS_OF = {"z": ("zh", "zf"), "y": ("yh", "yf"), "x": ("xh", "xf")}
COORD_RTOL = 1e-6
"""Tolerance of coordinate comparisons, relative to the largest coordinate value."""
TIME_ATOL = 1e-3
"""Tolerance of time matching [s]."""
_PLANES = {"xz": ("z", "x", "y"), "yz": ("z", "y", "x"), "xy": ("y", "x", "z")}


# --------------------------------------------------------------------------- helpers


def _spatial(da: xr.DataArray) -> tuple[str, ...]:
    return tuple(d for d in da.dims if d in SPATIAL_DIMS)


def _seconds(values) -> np.ndarray:
    """Time coordinate values as float seconds (numbers, timedelta64 or datetime64)."""
    v = np.asarray(values)
    if v.dtype.kind == "m":
        return v / np.timedelta64(1, "s")
    if v.dtype.kind == "M":
        return (v - np.datetime64(0, "s")) / np.timedelta64(1, "s")
    return v.astype(np.float64)


def _time_seconds(obj) -> np.ndarray:
    """The times of ``obj`` in seconds (output indices where there is no time coordinate)."""
    if "time" in obj.coords:
        return _seconds(obj["time"].values)
    return np.arange(obj.sizes["time"], dtype=np.float64)


def _time_span(t) -> str:
    return f"{t.min():g} to {t.max():g} s ({t.size} times)" if t.size else "no times"


def _coord(ds, dim):
    """Coordinate values of ``dim`` as float64, or None when the dim has no coordinate."""
    if dim in ds.coords:
        return np.asarray(ds[dim].values, dtype=np.float64)
    return None


def _grid(ds, dims):
    """(sizes, spacings) per axis z, y, x of the grid ``dims`` live on, for messages."""
    sizes, spacing = {}, {}
    for d in dims:
        ax = _AXIS_OF[d]
        n = ds.sizes[d]
        sizes[ax] = n - 1 if d == "zf" else n
        c = _coord(ds, d)
        spacing[ax] = float(c[1] - c[0]) if c is not None and c.size > 1 else float("nan")
    return sizes, spacing


def _fmt_grid(sizes, spacing):
    axes = [a for a in "zyx" if a in sizes]
    n = " x ".join(str(sizes[a]) for a in axes)
    d = " x ".join(f"{spacing[a]:g}" for a in axes)
    return f"({', '.join('n' + a for a in axes)}) = {n} cells, (d{', d'.join(axes)}) = {d} m"


def _integer_ratio(r):
    k = round(r)
    return k if k >= 1 and abs(r - k) <= 1e-6 * max(1.0, r) else None


def _suggest(sa, da_, sb, db_):
    """Fix for a grid mismatch: the coarsen call that makes the grids equal, if any."""
    for first, (sf, df, sc, dc) in (("first", (sa, da_, sb, db_)),
                                    ("second", (sb, db_, sa, da_))):
        factors = {}
        for ax in sf:
            by_size = _integer_ratio(sf[ax] / sc[ax]) if sc[ax] else None
            by_step = (_integer_ratio(dc[ax] / df[ax])
                       if np.isfinite(dc[ax]) and np.isfinite(df[ax]) and df[ax] else by_size)
            if by_size is None or by_step != by_size:
                break
            factors[ax] = by_size
        else:
            if any(f > 1 for f in factors.values()):
                args = ", ".join(f"{a}={factors.get(a, 1)}" for a in "xyz")
                return (f"coarsen the {first} (finer) dataset with "
                        f"ds.lex.coarsen({args}) before comparing")
    return "no integer coarsening factors relate the two grids; regrid one onto the other"


def _check_variable(a, b, var):
    if not isinstance(var, str):
        raise OptionTypeError(f"var must be a variable name (str), got {type(var).__name__}")
    for which, ds in (("first", a), ("second (reference)", b)):
        if not isinstance(ds, xr.Dataset):
            raise OptionTypeError(
                f"the {which} argument must be an xarray.Dataset, got {type(ds).__name__}")
        if var not in ds.data_vars:
            raise DatasetError(
                f"variable {var!r} is not in the {which} dataset "
                f"(it has: {', '.join(sorted(map(str, ds.data_vars))) or 'no variables'})"
            )


def _check_grid(a, b, var):
    xa, xb = a[var], b[var]
    da_, db_ = _spatial(xa), _spatial(xb)
    if not da_:
        raise DatasetError(f"variable {var!r} has no spatial dims ({', '.join(SPATIAL_DIMS)})")
    if set(da_) != set(db_):
        raise GridMismatchError(
            f"{var!r} lives on dims {da_} in the first dataset and {db_} in the second: "
            "the variables are not on the same (staggered) grid"
        )
    bad = []
    for d in da_:
        ca, cb = _coord(a, d), _coord(b, d)
        if a.sizes[d] != b.sizes[d]:
            bad.append(f"{d}: {a.sizes[d]} vs {b.sizes[d]} points")
        elif ca is not None and cb is not None:
            scale = max(np.max(np.abs(ca)), np.max(np.abs(cb)), np.finfo(float).tiny)
            err = np.max(np.abs(ca - cb))
            if err > COORD_RTOL * scale:
                bad.append(f"{d}: coordinates differ by up to {err:g} m")
    if bad:
        sa, sp_a = _grid(a, da_)
        sb, sp_b = _grid(b, db_)
        raise GridMismatchError(
            f"cannot compare {var!r}: the grids differ ({'; '.join(bad)}). "
            f"First: {_fmt_grid(sa, sp_a)}; second: {_fmt_grid(sb, sp_b)}. "
            f"Fix: {_suggest(sa, sp_a, sb, sp_b)}."
        )


def _common_times(xa, xb, var):
    """Select the times common to both (to TIME_ATOL), labelled with the first's times."""
    ta, tb = "time" in xa.dims, "time" in xb.dims
    if not ta and not tb:
        return xa, xb
    if ta != tb:
        which = "first" if ta else "second"
        raise GridMismatchError(
            f"{var!r} has a time dim only in the {which} dataset; select a time with "
            ".isel(time=...) or add one with .expand_dims(time=[...]) to compare"
        )
    sa, sb = _time_seconds(xa), _time_seconds(xb)
    ia = ib = np.zeros(0, dtype=int)
    if sa.size and sb.size:
        gap = np.abs(sa[:, None] - sb[None, :])
        nearest = np.argmin(gap, axis=1)
        ok = gap[np.arange(sa.size), nearest] <= TIME_ATOL
        ia, ib = np.flatnonzero(ok), nearest[ok]
    if not ia.size:
        raise GridMismatchError(
            f"the two datasets share no output times for {var!r} (tolerance {TIME_ATOL:g} s): "
            f"first {_time_span(sa)}, second {_time_span(sb)}"
        )
    xa = xa.isel(time=ia)
    xb = xb.isel(time=ib)
    if "time" in xa.coords:
        xb = xb.assign_coords(time=xa["time"].values)
    return xa, xb


def _prepare(a, b, var):
    """Checked, aligned DataArrays of ``var`` (b relabelled with a's coordinates)."""
    _check_variable(a, b, var)
    _check_grid(a, b, var)
    xa, xb = _common_times(a[var], b[var], var)
    relabel = {d: xa[d].values for d in _spatial(xa) if d in xa.coords}
    xb = xb.drop_vars([c for c in xb.coords if c not in xb.dims and
                       set(xb[c].dims) & set(SPATIAL_DIMS)])
    xa = xa.drop_vars([c for c in xa.coords if c not in xa.dims and
                       set(xa[c].dims) & set(SPATIAL_DIMS)])
    return xa, xb.assign_coords(relabel)


def _result_dtype(*das):
    return np.result_type(*(d.dtype for d in das), np.float16)


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
    xa, xb = _prepare(a, b, var)
    core = list(_spatial(xa))
    out = xr.apply_ufunc(
        func, xa, xb,
        input_core_dims=[core, core],
        output_core_dims=[[]],
        dask="parallelized",
        output_dtypes=[_result_dtype(xa, xb)],
        dask_gufunc_kwargs={"allow_rechunk": True},
        kwargs={"axis": tuple(range(-len(core), 0))},
    )
    out.name = name
    out.attrs = {"long_name": long_name, "units": units, "variable": var}
    return out


# --------------------------------------------------------------------------- metrics


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
    return _pointwise(a, b, var, _correlation, "correlation",
                      f"Pearson correlation of {var}", "1")


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


def _section_index(ds, xa, dim, ax, at):
    """Index on ``dim`` (the var's own coordinate) nearest to ``at`` [m] (default: centre)."""
    c = _coord(xa, dim)
    if c is None:
        raise DatasetError(f"dim {dim!r} has no coordinate values; cannot place a section")
    if at is None:
        centre_dim = f"{ax}h"
        cc = _coord(ds, centre_dim)
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
    xa, xb = _prepare(a, b, var)
    dims = {_AXIS_OF[d]: d for d in _spatial(xa)}
    p_ax, q_ax, s_ax = _PLANES[plane]
    missing = [ax for ax in (p_ax, q_ax, s_ax) if ax not in dims]
    if missing:
        raise DatasetError(f"{var!r} has no {'/'.join(missing)} dim; it cannot be cut in "
                           f"{plane} sections (its dims: {xa.dims})")
    p, q, s = dims[p_ax], dims[q_ax], dims[s_ax]
    sections = isinstance(at, str)
    if sections and at != "all":
        raise OptionError(f"at must be a coordinate in metres, None or 'all', got {at!r}")
    if sections:
        core = [s, p, q]
        where = f"3-D average: mean over all {xa.sizes[s]} {plane[0]}-{plane[1]} sections"
    else:
        i = _section_index(a, xa, s, s_ax, at)
        xa, xb = xa.isel({s: i}), xb.isel({s: i})
        core = [p, q]
        pos = f" at {s} = {float(xa[s]):g} m" if s in xa.coords else f" at {s} index {i}"
        where = f"{plane[0]}-{plane[1]} section{pos}"
    shape = (xa.sizes[p], xa.sizes[q])
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
            UserWarning, stacklevel=2)
    args, in_core = [xa, xb], [core, core]
    if data_range is not None:
        args.append(data_range)
        in_core.append([])
    out = xr.apply_ufunc(
        _ms_ssim_kernel, *args,
        input_core_dims=in_core,
        output_core_dims=[[]],
        dask="parallelized",
        output_dtypes=[_result_dtype(xa, xb)],
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


# --------------------------------------------------------------------------- profiles


def _window_mask(t, window):
    if isinstance(window, slice):
        if window.step is not None:
            raise OptionError("window slice takes no step; use ds.isel(time=...) to thin times")
        start, stop = window.start, window.stop
    elif isinstance(window, tuple | list) and len(window) == 2:
        start, stop = window
    else:
        raise OptionTypeError(
            f"window must be None, a slice of seconds or a (start, stop) tuple, got {window!r}")
    for v in (start, stop):
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
            raise OptionTypeError(f"window bounds must be seconds (numbers), got {v!r}")
    lo = -np.inf if start is None else float(start) - TIME_ATOL
    hi = np.inf if stop is None else float(stop) + TIME_ATOL
    return (t >= lo) & (t <= hi)


def ke_profile(ds: xr.Dataset, *, window=None) -> xr.DataArray:
    """Resolved kinetic-energy profile KE(z) = 1/2 <u'^2 + v'^2 + w'^2>_t (paper eq. 28).

    u, v and w are first interpolated to cell centres (u: mean of the west
    faces i and i + 1, periodic; v likewise in y; w: mean of the faces k and
    k + 1); primes are deviations from the horizontal mean at each time and
    level; <.> is the mean over x, y and the times in ``window``.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract Dataset with ``u``, ``v``, ``w``.
    window : slice, (start, stop) or None
        Times averaged over, in seconds, both ends inclusive (to 1e-3 s); an
        end may be None. None: all times.

    Returns
    -------
    xarray.DataArray
        KE [m2 s-2] over ``zh`` (and any leading dims other than ``time``).

    Raises
    ------
    DatasetError
        If u, v or w is missing or they are not on one C grid.
    OptionError
        If ``window`` selects no time, or is given without a time dim.

    Examples
    --------
    >>> ke_profile(out, window=(600, 1200)).plot(y="zh")      # doctest: +SKIP
    """
    missing = [n for n in ("u", "v", "w") if n not in ds.data_vars]
    if missing:
        raise DatasetError(f"ke_profile needs u, v and w; the dataset lacks {', '.join(missing)}")
    u, v, w = ds["u"], ds["v"], ds["w"]
    expect = {"u": ("zh", "yh", "xf"), "v": ("zh", "yf", "xh"), "w": ("zf", "yh", "xh")}
    for name, da in (("u", u), ("v", v), ("w", w)):
        if set(_spatial(da)) != set(expect[name]):
            raise DatasetError(f"{name} must be on dims {expect[name]}, it has {da.dims}")
    has_time = "time" in u.dims
    if window is not None:
        if not has_time:
            raise OptionError("window given but the dataset has no time dim")
        t = _time_seconds(ds)
        idx = np.flatnonzero(_window_mask(t, window))
        if idx.size == 0:
            raise OptionError(f"window {window!r} selects none of the output times "
                              f"({t.min():g} to {t.max():g} s)")
        u, v, w = (x.isel(time=idx) for x in (u, v, w))
    per_time = xr.apply_ufunc(
        _ke_profile, u, v, w,
        input_core_dims=[list(expect["u"]), list(expect["v"]), list(expect["w"])],
        output_core_dims=[["zh"]],
        exclude_dims={"xf", "yf", "zf", "xh", "yh"},
        dask="parallelized",
        output_dtypes=[_result_dtype(u, v, w)],
        dask_gufunc_kwargs={"allow_rechunk": True},
    )
    ke = per_time.mean("time") if "time" in per_time.dims else per_time
    if "zh" in ds.coords:
        ke = ke.assign_coords(zh=ds["zh"])
    ke.name = "ke"
    if window is None:
        span = "all times" if has_time else "one snapshot"
    else:
        span = f"times {window!r} s (inclusive)"
    ke.attrs = {
        "long_name": "resolved kinetic energy of deviations from the horizontal mean",
        "units": "m2 s-2",
        "averaging": f"x, y and {span}",
    }
    return ke


# --------------------------------------------------------------------------- coarsen


def _check_factor(name, f):
    if isinstance(f, bool) or not isinstance(f, numbers.Integral):
        raise OptionTypeError(f"{name} must be a positive integer, got {f!r}")
    if f < 1:
        raise OptionError(f"{name} must be a positive integer, got {f}")
    return int(f)


def _coarse_size(dim, n, f):
    return (n - 1) // f + 1 if dim == "zf" else n // f


def _coarsen_da(da, factors, m):
    sd = _spatial(da)
    if not sd:
        return da
    facs = tuple(factors[_AXIS_OF[d]] for d in sd)
    if all(f == 1 for f in facs):
        return da.copy(deep=False)
    faces = tuple(d.endswith("f") for d in sd)
    walled = tuple(d == "zf" for d in sd)
    weighted = m is not None and "zh" in sd and ("xf" in sd or "yf" in sd)
    kwargs = {"factors": facs, "faces": faces, "walled": walled}
    args, in_core = [da.variable], [list(sd)]
    if weighted:
        args.append(m.variable)
        in_core.append(["zh"])
        kwargs["weight_axis"] = sd.index("zh") - len(sd)
        func = _coarsen_weighted
    else:
        func = coarsen_array
    sizes = {d: _coarse_size(d, da.sizes[d], factors[_AXIS_OF[d]]) for d in sd}
    out = xr.apply_ufunc(
        func, *args,
        input_core_dims=in_core,
        output_core_dims=[list(sd)],
        exclude_dims=set(sd),
        dask="parallelized",
        output_dtypes=[_result_dtype(*(x for x in args))],
        dask_gufunc_kwargs={"output_sizes": sizes, "allow_rechunk": True},
        kwargs=kwargs,
        keep_attrs=True,
    )
    return out


def _coarsen_weighted(x, weight, **kwargs):
    return coarsen_array(x, weight=weight, **kwargs)


def coarsen(ds: xr.Dataset, *, x: int = 6, y: int = 6, z: int = 3,
            every: int | None = None) -> xr.Dataset:
    """Staggering-aware coarse-graining of a contract Dataset (e.g. 100 m -> 600 x 600 x 300 m).

    - Centred fields (on ``zh``, ``yh``, ``xh``): block means, so domain
      integrals (sum x cell volume) are conserved exactly.
    - ``u`` (any variable on ``xf`` and ``zh``): coarse west faces are the fine
      faces ``xf[::x]``; the value is the average over the coarse face (y and z
      blocks) of the mass flux m u divided by the average of m, where
      m(z) = rho0 th0 (1 + (1/eps - 1) qv0) (eps = Rd/Rv) if ``rho0``, ``th0``
      and ``qv0`` are in ``ds``, else m = 1. ``v`` likewise on ``yf``.
    - ``w`` (on ``zf``): coarse faces ``zf[::z]`` (nz/z + 1 levels, walls kept);
      the value is the horizontal block mean.
    - Base-state fields on ``zh`` (``rho0``, ``th0``, ``qv0``, ``pi0``): block means.
    - Coordinates: centres are block means of the fine centres, faces the
      subsampled fine faces. Global attrs are kept; ``coarsened`` records the
      factors (appended to an earlier record if the input was coarsened already).

    Divergence: if the fine field satisfies the discrete constraint
    m_k (du/dx + dv/dy) + d(M w)/dz = 0 (M the face weight on ``zf``), the
    coarse field satisfies it to round-off with coarse centre weight = block
    mean of the fine m (``coarsen_centred(m)``) and coarse face weight = the
    fine M at the kept faces (``M[::z]``). See :mod:`xlex.diagnostics.coarsen`.
    The coarse ``rho0`` is the block mean of ``rho0``, so m recomputed from
    the coarse base state differs from <m> at second order.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract Dataset; NumPy-, JAX- or dask-backed (stays lazy).
    x, y, z : int, default 6, 6, 3
        Coarsening factors; must divide nx, ny, nz.
    every : int, optional
        Keep every ``every``-th time (times 0, every, 2 every, ... by index).

    Returns
    -------
    xarray.Dataset
        A new Dataset; ``ds`` is not modified.

    Raises
    ------
    DatasetError
        If a size does not divide by its factor (the message names the dim, its
        size and the factor), or ``every`` is given without a time dim.
    OptionError, OptionTypeError
        For non-positive or non-integer factors.

    Examples
    --------
    >>> coarse = coarsen(truth, x=6, y=6, z=3, every=5)       # doctest: +SKIP
    >>> coarse.sizes["xf"] == truth.sizes["xf"] // 6          # doctest: +SKIP
    True
    """
    if not isinstance(ds, xr.Dataset):
        raise OptionTypeError(f"coarsen needs an xarray.Dataset, got {type(ds).__name__}")
    factors = {"x": _check_factor("x", x), "y": _check_factor("y", y),
               "z": _check_factor("z", z)}
    if every is not None:
        every = _check_factor("every", every)
        if "time" not in ds.dims:
            raise DatasetError("every given but the dataset has no time dim")
    bad = []
    for d in SPATIAL_DIMS:
        if d in ds.dims:
            n, f = ds.sizes[d], factors[_AXIS_OF[d]]
            cells = n - 1 if d == "zf" else n
            if cells % f:
                what = f"{n} points = {cells} cells" if d == "zf" else f"size {n}"
                bad.append(f"dim {d!r} ({what}) by {_AXIS_OF[d]}={f}: "
                           f"{cells} does not divide by {f}")
    if bad:
        raise DatasetError(f"cannot coarsen {'; '.join(bad)}")
    if every is not None:
        ds = ds.isel(time=slice(None, None, every))
    m = None
    if all(n in ds.data_vars for n in ("rho0", "th0", "qv0")):
        m = xr.apply_ufunc(mass_weight, ds["rho0"], ds["th0"], ds["qv0"],
                           dask="parallelized", output_dtypes=[_result_dtype(ds["rho0"])])
        if "zh" not in m.dims or set(_spatial(m)) != {"zh"}:
            raise DatasetError(f"rho0, th0 and qv0 must lie on zh only, they have {m.dims}")
    data_vars = {name: _coarsen_da(da, factors, m) for name, da in ds.data_vars.items()}
    coords = {}
    for name, c in ds.coords.items():
        if name in SPATIAL_DIMS and c.dims == (name,):
            f = factors[_AXIS_OF[name]]
            vals = np.asarray(c.values)
            if f == 1:
                new = vals
            elif name.endswith("f"):
                new = vals[::f]
            else:
                new = np.asarray(block_mean(vals, (f,)))
            coords[name] = xr.Variable((name,), new, attrs=c.attrs)
        elif set(c.dims) & set(SPATIAL_DIMS):
            coords[name] = _coarsen_da(c.variable, factors, None)
        else:
            coords[name] = c.variable
    attrs = dict(ds.attrs)
    record = ", ".join(f"{k}={v}" for k, v in factors.items()) + f", every={every or 1}"
    attrs["coarsened"] = (f"{attrs['coarsened']}; then {record}" if "coarsened" in attrs
                          else record)
    out = xr.Dataset({k: v.variable if isinstance(v, xr.DataArray) else v
                      for k, v in data_vars.items()}, coords=coords, attrs=attrs)
    return out
