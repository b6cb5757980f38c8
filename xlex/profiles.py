"""Vertical profiles of one run on Datasets: the xarray edge over :mod:`xlex.diagnostics.profiles`.

The Dataset is checked, the times are selected, and the arrays go to the array
core through ``xarray.apply_ufunc(..., dask="parallelized")``, so dask-backed
Datasets stay lazy. The ``ds.lex`` accessor delegates here.
"""

from __future__ import annotations

import numbers

import numpy as np
import xarray as xr

from xlex.align import TIME_ATOL, result_dtype, spatial_dims, time_seconds
from xlex.core.errors import DatasetError, OptionError, OptionTypeError
from xlex.diagnostics.profiles import ke_profile as _ke_profile
from xlex.io.cf import SPATIAL_DIMS, VARIABLE_DIMS

__all__ = ["ke_profile"]


def _window_mask(t, window):
    """Which of the times ``t`` [s] fall in ``window`` (to TIME_ATOL, ends inclusive)."""
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


def _winds(ds):
    """u, v and w of ``ds``, checked to be on one C grid."""
    missing = [n for n in ("u", "v", "w") if n not in ds.data_vars]
    if missing:
        raise DatasetError(f"ke_profile needs u, v and w; the dataset lacks {', '.join(missing)}")
    for name in ("u", "v", "w"):
        expected = VARIABLE_DIMS[name]
        if set(spatial_dims(ds[name])) != set(expected):
            raise DatasetError(f"{name} must be on dims {expected}, it has {ds[name].dims}")
    return ds["u"], ds["v"], ds["w"]


def _in_window(ds, winds, window):
    """The winds at the times of ``window`` (all of them for None)."""
    if window is None:
        return winds
    if "time" not in winds[0].dims:
        raise OptionError("window given but the dataset has no time dim")
    t = time_seconds(ds)
    idx = np.flatnonzero(_window_mask(t, window))
    if idx.size == 0:
        raise OptionError(f"window {window!r} selects none of the output times "
                          f"({t.min():g} to {t.max():g} s)")
    return tuple(x.isel(time=idx) for x in winds)


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
    winds = _winds(ds)
    has_time = "time" in winds[0].dims
    u, v, w = _in_window(ds, winds, window)
    per_time = xr.apply_ufunc(
        _ke_profile, u, v, w,
        input_core_dims=[list(VARIABLE_DIMS[n]) for n in ("u", "v", "w")],
        output_core_dims=[["zh"]],
        exclude_dims=set(SPATIAL_DIMS) - {"zh"},
        dask="parallelized",
        output_dtypes=[result_dtype(u, v, w)],
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
