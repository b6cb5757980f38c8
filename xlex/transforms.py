"""Transforms of one run's Dataset into another: staggering-aware coarse-graining.

The xarray edge over :mod:`xlex.diagnostics.coarsen`: the Dataset is checked,
and every variable goes to the array core through ``xarray.apply_ufunc(...,
dask="parallelized")``, so dask-backed Datasets stay lazy. The ``ds.lex``
accessor delegates here.
"""

from __future__ import annotations

import numbers

import numpy as np
import xarray as xr

from xlex.align import result_dtype, spatial_dims
from xlex.core.errors import DatasetError, OptionError, OptionTypeError
from xlex.diagnostics.coarsen import block_mean, coarsen_array, mass_weight
from xlex.io.cf import AXIS_OF, SPATIAL_DIMS

__all__ = ["coarsen"]


def _check_factor(name, f):
    if isinstance(f, bool) or not isinstance(f, numbers.Integral):
        raise OptionTypeError(f"{name} must be a positive integer, got {f!r}")
    if f < 1:
        raise OptionError(f"{name} must be a positive integer, got {f}")
    return int(f)


def _check_divisible(ds, factors):
    """Every spatial size divides by its factor (``zf`` counts cells, not points)."""
    bad = []
    for d in SPATIAL_DIMS:
        if d in ds.dims:
            n, f = ds.sizes[d], factors[AXIS_OF[d]]
            cells = n - 1 if d == "zf" else n
            if cells % f:
                what = f"{n} points = {cells} cells" if d == "zf" else f"size {n}"
                bad.append(f"dim {d!r} ({what}) by {AXIS_OF[d]}={f}: "
                           f"{cells} does not divide by {f}")
    if bad:
        raise DatasetError(f"cannot coarsen {'; '.join(bad)}")


def _coarse_size(dim, n, f):
    return (n - 1) // f + 1 if dim == "zf" else n // f


def _mass_weight(ds):
    """m = rho0 thrho0 on zh where ``ds`` has rho0, th0 and qv0, else None."""
    if not all(n in ds.data_vars for n in ("rho0", "th0", "qv0")):
        return None
    m = xr.apply_ufunc(mass_weight, ds["rho0"], ds["th0"], ds["qv0"],
                       dask="parallelized", output_dtypes=[result_dtype(ds["rho0"])])
    if "zh" not in m.dims or set(spatial_dims(m)) != {"zh"}:
        raise DatasetError(f"rho0, th0 and qv0 must lie on zh only, they have {m.dims}")
    return m


def _coarsen_weighted(x, weight, **kwargs):
    return coarsen_array(x, weight=weight, **kwargs)


def _coarsen_da(da, factors, m):
    """One variable coarsened: block means, faces subsampled; horizontal winds
    weighted by ``m`` where given."""
    sd = spatial_dims(da)
    if not sd:
        return da
    facs = tuple(factors[AXIS_OF[d]] for d in sd)
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
    sizes = {d: _coarse_size(d, da.sizes[d], factors[AXIS_OF[d]]) for d in sd}
    out = xr.apply_ufunc(
        func, *args,
        input_core_dims=in_core,
        output_core_dims=[list(sd)],
        exclude_dims=set(sd),
        dask="parallelized",
        output_dtypes=[result_dtype(*(x for x in args))],
        dask_gufunc_kwargs={"output_sizes": sizes, "allow_rechunk": True},
        kwargs=kwargs,
        keep_attrs=True,
    )
    return out


def _coarse_coords(ds, factors):
    """Centre coordinates as block means, face coordinates subsampled, others kept."""
    coords = {}
    for name, c in ds.coords.items():
        if name in SPATIAL_DIMS and c.dims == (name,):
            f = factors[AXIS_OF[name]]
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
    return coords


def _recorded(attrs, factors, every):
    """Global attrs with the factors appended to ``coarsened``."""
    attrs = dict(attrs)
    record = ", ".join(f"{k}={v}" for k, v in factors.items()) + f", every={every or 1}"
    attrs["coarsened"] = (f"{attrs['coarsened']}; then {record}" if "coarsened" in attrs
                          else record)
    return attrs


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
    _check_divisible(ds, factors)
    if every is not None:
        ds = ds.isel(time=slice(None, None, every))
    m = _mass_weight(ds)
    data_vars = {name: _coarsen_da(da, factors, m) for name, da in ds.data_vars.items()}
    return xr.Dataset({k: v.variable if isinstance(v, xr.DataArray) else v
                       for k, v in data_vars.items()},
                      coords=_coarse_coords(ds, factors),
                      attrs=_recorded(ds.attrs, factors, every))
