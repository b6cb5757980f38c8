"""Two runs' Datasets made comparable: the checks and the alignment behind :mod:`xlex.compare`.

:func:`align` checks that a variable of two contract Datasets (see
``xlex.io.cf``) can be compared point by point: the variable is in both; it
has the same spatial dims with the same sizes and coordinate values (to
:data:`COORD_RTOL` of the domain extent: CM1 writes float32 km), and where the
grids differ the error gives both grids and the ``coarsen`` call that makes
them equal; then it selects the times common to both (to :data:`TIME_ATOL`),
labelled with the times of the first Dataset. Nothing is interpolated: two
grids that differ are an error, not a regridding.

The small helpers here (:func:`spatial_dims`, :func:`time_seconds`,
:func:`result_dtype`) serve every Dataset-level diagnostic.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from xlex.core.errors import DatasetError, GridMismatchError, OptionTypeError
from xlex.io.cf import AXIS_OF, SPATIAL_DIMS

__all__ = ["COORD_RTOL", "TIME_ATOL", "align", "coordinate", "result_dtype", "spatial_dims",
           "time_seconds"]

COORD_RTOL = 1e-6
"""Tolerance of coordinate comparisons, relative to the largest coordinate value."""
TIME_ATOL = 1e-3
"""Tolerance of time matching [s]."""


# --------------------------------------------------------------------------- helpers


def spatial_dims(da: xr.DataArray) -> tuple[str, ...]:
    """The spatial dims of ``da`` (contract names), in its own order."""
    return tuple(d for d in da.dims if d in SPATIAL_DIMS)


def _seconds(values) -> np.ndarray:
    """Time coordinate values as float seconds (numbers, timedelta64 or datetime64)."""
    v = np.asarray(values)
    if v.dtype.kind == "m":
        return v / np.timedelta64(1, "s")
    if v.dtype.kind == "M":
        return (v - np.datetime64(0, "s")) / np.timedelta64(1, "s")
    return v.astype(np.float64)


def time_seconds(obj) -> np.ndarray:
    """The times of ``obj`` in seconds (output indices where there is no time coordinate)."""
    if "time" in obj.coords:
        return _seconds(obj["time"].values)
    return np.arange(obj.sizes["time"], dtype=np.float64)


def _time_span(t) -> str:
    return f"{t.min():g} to {t.max():g} s ({t.size} times)" if t.size else "no times"


def coordinate(ds, dim):
    """Coordinate values of ``dim`` as float64, or None when the dim has no coordinate."""
    if dim in ds.coords:
        return np.asarray(ds[dim].values, dtype=np.float64)
    return None


def result_dtype(*das):
    """The floating dtype of a diagnostic of ``das`` (at least float16)."""
    return np.result_type(*(d.dtype for d in das), np.float16)


# --------------------------------------------------------------------------- grid mismatch


def _grid(ds, dims):
    """(sizes, spacings) per axis z, y, x of the grid ``dims`` live on, for messages."""
    sizes, spacing = {}, {}
    for d in dims:
        ax = AXIS_OF[d]
        n = ds.sizes[d]
        sizes[ax] = n - 1 if d == "zf" else n
        c = coordinate(ds, d)
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


# --------------------------------------------------------------------------- checks


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
    da_, db_ = spatial_dims(xa), spatial_dims(xb)
    if not da_:
        raise DatasetError(f"variable {var!r} has no spatial dims ({', '.join(SPATIAL_DIMS)})")
    if set(da_) != set(db_):
        raise GridMismatchError(
            f"{var!r} lives on dims {da_} in the first dataset and {db_} in the second: "
            "the variables are not on the same (staggered) grid"
        )
    bad = []
    for d in da_:
        ca, cb = coordinate(a, d), coordinate(b, d)
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
    sa, sb = time_seconds(xa), time_seconds(xb)
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


def _drop_spatial_auxiliaries(da):
    """``da`` without the non-dimension coordinates that lie on spatial dims."""
    return da.drop_vars([c for c in da.coords if c not in da.dims and
                         set(da[c].dims) & set(SPATIAL_DIMS)])


def align(a: xr.Dataset, b: xr.Dataset, var: str) -> tuple[xr.DataArray, xr.DataArray]:
    """``var`` of ``a`` and ``b``, checked comparable and aligned point by point.

    Parameters
    ----------
    a, b : xarray.Dataset
        The run and the reference (truth), contract Datasets.
    var : str
        Variable name.

    Returns
    -------
    (xa, xb) : tuple of xarray.DataArray
        ``var`` at the times common to both; ``xb`` relabelled with ``xa``'s
        time and spatial coordinates, neither with auxiliary spatial coordinates.

    Raises
    ------
    OptionTypeError
        If ``var`` is not a string or ``a`` or ``b`` is not a Dataset.
    DatasetError
        If ``var`` is missing from either Dataset or has no spatial dims.
    GridMismatchError
        If the grids differ (the message gives both and the ``coarsen`` call
        that fixes it when the spacings have integer ratios), or no time is shared.
    """
    _check_variable(a, b, var)
    _check_grid(a, b, var)
    xa, xb = _common_times(a[var], b[var], var)
    relabel = {d: xa[d].values for d in spatial_dims(xa) if d in xa.coords}
    xb = _drop_spatial_auxiliaries(xb)
    xa = _drop_spatial_auxiliaries(xa)
    return xa, xb.assign_coords(relabel)
