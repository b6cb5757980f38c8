"""Conversion between contract Datasets and the core's Grid, State and BaseState.

Everything a user can get wrong in a Dataset is checked here, before any array
reaches JAX, with messages that name the variable, what was expected and what
was found.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from xlex import __version__

from xlex.core import constants, thermo
from xlex.core.errors import DatasetError
from xlex.core.grid import Grid
from xlex.io.cf import (
    METRES,
    PROGNOSTIC,
    SPATIAL_DIMS,
    UNIT_ALIASES,
    VARIABLE_DIMS,
    annotate,
    units_of,
)

#: Units of the variables read from a Dataset (the contract's, :mod:`xlex.io.cf`).
EXPECTED_UNITS = {name: units_of(name) for name in (*PROGNOSTIC, "th0", "qv0", "pi0", "pipert")}
#: Relative tolerance of the uniform-spacing check (coordinates written in float32 km).
SPACING_RTOL = 1e-5

QV_ROUNDOFF = 1e-8
"""kg kg-1: in a Dataset xlex wrote (``model = "xlex"``), qv down to -QV_ROUNDOFF is
round-off of a positive-definite scheme (float32 of a qv ~1e-2 is ~1e-9) and is
set to 0; any other negative qv is refused. So a run always continues from its
own output, while a negative qv a user made still gets a clear error."""

MIN_SPACING = 1.0
MIN_DOMAIN = 100.0
"""m: a spacing below MIN_SPACING or a domain side below MIN_DOMAIN is not an LES
grid; it is nearly always coordinates in km labelled as metres."""


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """What the core needs from a Dataset, as numpy arrays.

    ``state`` holds u, v, w, th, qv, pi with the ensemble dims (``batch_dims``)
    leading; ``base`` holds th0, qv0, pi0 profiles.
    """

    grid: Grid
    state: dict
    base: dict
    batch_dims: tuple
    batch_shape: tuple
    time: float
    coords: dict


def dataset_to_inputs(ds: xr.Dataset) -> ModelInputs:
    """Check ``ds`` against the contract and take out grid, state and base state.

    The last record along ``time`` (if there is a time dim) is the initial
    state; other leading dims are ensemble members.

    Raises
    ------
    DatasetError
        For a missing variable, wrong dims or sizes, non-uniform spacing, units
        other than the contract's, NaN or Inf, non-positive th or negative qv.
    """
    _check_variables(ds)
    _check_coordinates(ds)
    grid = _checked_grid(ds)
    batch_dims = _check_fields(ds)
    sel, time = _last_record(ds)
    state = _state_arrays(ds, sel, batch_dims)
    base = _base_profiles(ds)
    _check_values(ds, state, base)
    coords = {name: np.asarray(ds[name].values, np.float64) for name in SPATIAL_DIMS}
    for d in batch_dims:
        coords[d] = ds[d].values if d in ds.coords else np.arange(ds.sizes[d])
    return ModelInputs(grid=grid, state=state, base=base, batch_dims=batch_dims,
                       batch_shape=state["th"].shape[:-3], time=time, coords=coords)


# --- the checks of dataset_to_inputs, in the order it makes them --------------


def _check_variables(ds):
    """A Dataset with the prognostic fields and the base state th0, qv0."""
    if not isinstance(ds, xr.Dataset):
        raise DatasetError(f"expected an xarray.Dataset, got {type(ds).__name__}")
    missing = [v for v in PROGNOSTIC + ("th0", "qv0") if v not in ds.data_vars]
    if missing:
        raise DatasetError(
            f"Dataset is missing variable(s) {missing}; an xlex state needs the prognostic "
            f"fields {list(PROGNOSTIC)} and the base state th0, qv0 on zh "
            "(build one with xlex.cases.warm_bubble(), or open CM1 output with xlex.open_cm1)")


def _check_coordinates(ds):
    """Every spatial dim present, with coordinate values in metres."""
    for name in SPATIAL_DIMS:
        if name not in ds.dims:
            raise DatasetError(f"Dataset has no dimension {name!r}; the contract's dims are "
                               f"time, zh, zf, yh, yf, xh, xf (z, y, x order)")
        if name not in ds.coords:
            raise DatasetError(f"dimension {name!r} has no coordinate values; add the "
                               f"coordinate in metres")
        units = ds[name].attrs.get("units", "m")
        if units not in METRES:
            raise DatasetError(f"coordinate {name!r} has units {units!r}; xlex needs metres "
                               f"(CM1 writes km: open CM1 files with xlex.open_cm1)")


def _checked_grid(ds) -> Grid:
    """The Grid of ``ds``: sizes of one C grid, uniform LES spacings, staggered faces."""
    nx, ny, nz = _check_sizes(ds)
    dx, xh = _uniform_spacing(ds, "xh")
    dy, yh = _uniform_spacing(ds, "yh")
    dz, zh = _uniform_spacing(ds, "zh")
    _check_les_spacing((("x", dx, nx), ("y", dy, ny), ("z", dz, nz)))
    _check_staggering(ds, (("xf", xh, dx), ("yf", yh, dy), ("zf", zh, dz)))
    _check_walls_at_faces(ds, zh, dz)
    return Grid(nx=nx, ny=ny, nz=nz, dx=dx, dy=dy, dz=dz)


def _check_sizes(ds):
    """(nx, ny, nz) of a C grid: periodic x/y faces, z faces with both walls."""
    nx, ny, nz = ds.sizes["xh"], ds.sizes["yh"], ds.sizes["zh"]
    if ds.sizes["xf"] != nx or ds.sizes["yf"] != ny:
        raise DatasetError(
            f"xf/yf must have as many points as xh/yh (periodic: one west/south face per "
            f"cell), got xh={nx}, xf={ds.sizes['xf']}, yh={ny}, yf={ds.sizes['yf']}; drop the "
            "duplicate periodic face (e.g. ds.isel(xf=slice(0, -1)))")
    if ds.sizes["zf"] != nz + 1:
        raise DatasetError(f"zf must have nz + 1 = {nz + 1} points (both walls included), "
                           f"got {ds.sizes['zf']}")
    return nx, ny, nz


def _uniform_spacing(ds, name):
    """(spacing [m], values) of the centre coordinate ``name``: finite, 1-D, increasing
    and uniform."""
    c = np.asarray(ds[name].values, dtype=np.float64)
    if not np.isfinite(c).all():
        raise DatasetError(f"coordinate {name!r} has NaN/Inf values; give finite coordinates "
                           "in metres")
    if c.ndim != 1 or c.size < 2:
        raise DatasetError(f"coordinate {name!r} must be 1-D with at least 2 points, "
                           f"got shape {c.shape}")
    d = np.diff(c)
    spacing = d.mean()
    if spacing <= 0:
        raise DatasetError(f"coordinate {name!r} must increase (spacing {spacing:g} m); sort "
                           f"the Dataset with ds.sortby({name!r})")
    if np.abs(d - spacing).max() > SPACING_RTOL * abs(spacing):
        raise DatasetError(
            f"coordinate {name!r} is not uniformly spaced (spacings from {d.min():g} to "
            f"{d.max():g} m); xlex needs a uniform grid: interpolate the Dataset to one "
            f"(e.g. ds.interp({name}=...)) first")
    return float(spacing), c


def _check_les_spacing(axes):
    """Spacings and domain sides an LES can have (not km labelled as metres)."""
    for axis, d, n in axes:
        if d < MIN_SPACING or d * n < MIN_DOMAIN:
            raise DatasetError(
                f"the grid spacing in {axis} is {d:g} m over a domain of {d * n:g} m: too small "
                f"for an LES (at least {MIN_SPACING:g} m and {MIN_DOMAIN:g} m). Are the "
                f"coordinates in km but labelled metres? Multiply them by 1000 "
                f"(ds.assign_coords({axis}h=ds.{axis}h * 1000, {axis}f=ds.{axis}f * 1000))")


def _check_staggering(ds, faces):
    """Each face coordinate half a cell below its centre coordinate."""
    for face, centre, d in faces:
        fc = np.asarray(ds[face].values, dtype=np.float64)
        if np.abs(fc[: centre.size] + 0.5 * d - centre).max() > 1e-3 * d:
            raise DatasetError(f"coordinate {face!r} is not staggered half a cell below the "
                               f"centres; expected {face}[i] = centre[i] - {0.5 * d:g} m")


def _check_walls_at_faces(ds, zh, dz):
    """The z faces end half a cell above the highest centre and start at the ground."""
    zf = np.asarray(ds["zf"].values, dtype=np.float64)
    if abs(zf[-1] - (zh[-1] + 0.5 * dz)) > 1e-3 * dz:
        raise DatasetError(f"the top face zf[-1] = {zf[-1]:g} m must be half a cell above the "
                           f"highest centre ({zh[-1] + 0.5 * dz:g} m)")
    if abs(float(ds["zf"].values[0])) > 1e-3 * dz:
        raise DatasetError(f"the lowest z face zf[0] must be the ground, 0 m; got "
                           f"{float(ds['zf'].values[0]):g} m")


def _check_fields(ds) -> tuple:
    """Dims, units and dtype of the prognostic fields; returns their ensemble dims
    (the leading dims other than time, the same for every field)."""
    batch_dims = None
    for name in PROGNOSTIC:
        da = ds[name]
        expected = VARIABLE_DIMS[name]
        if da.dims[-3:] != expected or da.ndim < 3:
            raise DatasetError(f"variable {name!r} has dims {da.dims}; expected (..., "
                               f"{', '.join(expected)}) — {name} lives on "
                               f"{'/'.join(expected)}")
        lead = tuple(d for d in da.dims[:-3] if d != "time")
        if batch_dims is None:
            batch_dims = lead
        elif lead != batch_dims:
            raise DatasetError(f"variable {name!r} has leading dims {lead}, others have "
                               f"{batch_dims}; all prognostic fields need the same ensemble dims")
        _check_units(ds, name, EXPECTED_UNITS[name])
        _check_real(ds, name)
    for name in ("th0", "qv0", "pipert"):
        if name in ds.data_vars:
            _check_real(ds, name)
    return batch_dims


def _check_real(ds, name):
    """Refuse a field that is not real numbers (complex, bool, strings, objects)."""
    dtype = ds[name].dtype
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)) \
            or dtype == bool:
        raise DatasetError(f"variable {name!r} has dtype {dtype}; xlex needs real numbers "
                           f"(float) in {EXPECTED_UNITS.get(name, 'SI units')}: convert it, "
                           f"e.g. ds[{name!r}] = ds[{name!r}].astype(float), after checking "
                           "what its values mean")


def _check_units(ds, name, expected):
    units = ds[name].attrs.get("units")
    if units is None:
        return
    if str(units).strip() not in UNIT_ALIASES.get(expected, {expected}):
        raise DatasetError(f"variable {name!r} has units {units!r}, expected {expected!r}; "
                           f"convert it (xlex uses SI units throughout)")


def _last_record(ds):
    """(the Dataset at its last time, that time [s]); ``(ds, 0.0)`` without a time dim."""
    if "time" not in ds.dims:
        return ds, 0.0
    if ds.sizes["time"] == 0:
        raise DatasetError("Dataset has an empty time dimension")
    if "time" in ds.coords and not (np.issubdtype(ds["time"].dtype, np.number)
                                    or np.issubdtype(ds["time"].dtype, np.timedelta64)):
        raise DatasetError(
            f"the time coordinate has dtype {ds['time'].dtype}; xlex needs the model time "
            "in seconds (numbers) or timedelta64. For dates, convert to seconds since the "
            "start: ds.assign_coords(time=(ds.time - ds.time[0]) / np.timedelta64(1, 's'))"
            " (a file xlex wrote: open it with xr.open_dataset(path, decode_times=False) "
            "or decode_timedelta=True)")
    sel = ds.isel(time=-1)
    t = sel["time"].values
    time = float(t / np.timedelta64(1, "s")) if np.issubdtype(
        np.asarray(t).dtype, np.timedelta64) else float(t)
    return sel, time


def _state_arrays(ds, sel, batch_dims) -> dict:
    """u, v, w, th, qv and pi (from ``pipert``, else 0) as float64, ensemble dims first."""
    state = {}
    for name in PROGNOSTIC:
        state[name] = np.asarray(sel[name].transpose(*batch_dims, *VARIABLE_DIMS[name]).values,
                                 dtype=np.float64)
    centred = VARIABLE_DIMS["pipert"]
    if "pipert" in sel.data_vars and sel["pipert"].dims[-3:] == centred:
        _check_units(ds, "pipert", EXPECTED_UNITS["pipert"])
        pip = sel["pipert"].broadcast_like(sel["th"])
        state["pi"] = np.asarray(pip.transpose(*batch_dims, *centred).values, np.float64)
    else:
        state["pi"] = np.zeros_like(state["th"])
    return state


def _base_profiles(ds) -> dict:
    """th0, qv0 and pi0 profiles on zh as float64; pi0 hydrostatic from the
    surface pressure where ``ds`` has none."""
    base = {}
    for name in ("th0", "qv0", "pi0"):
        if name not in ds.data_vars:
            continue
        da = ds[name]
        if "time" in da.dims:
            da = da.isel(time=-1)
        if da.dims != ("zh",):
            raise DatasetError(f"base-state variable {name!r} must be a profile on ('zh',), "
                               f"got dims {da.dims}")
        _check_units(ds, name, EXPECTED_UNITS[name])
        base[name] = np.asarray(da.values, dtype=np.float64)
    if "pi0" not in base:
        zh = np.asarray(ds["zh"].values, dtype=np.float64)
        p_sfc = float(ds.attrs.get("surface_pressure", constants.P0))
        _, _, base["pi0"] = thermo.hydrostatic_sounding(
            zh, lambda z: np.interp(z, zh, base["th0"]),
            qv=lambda z: np.interp(z, zh, base["qv0"]), surface_pressure=p_sfc)
    return base


def _check_values(ds, state, base):
    """Finite fields, positive th, non-negative qv (clearing round-off below 0 in
    xlex's own output, in place) and w = 0 on the walls."""
    _check_finite(state, base)
    for name in ("th", "th0"):
        arr = state.get(name, base.get(name))
        if (arr <= 0).any():
            raise DatasetError(f"variable {name!r} must be a positive potential temperature "
                               f"in K, found a minimum of {arr.min():g}")
    _check_vapour(ds, state, base)
    walls = np.abs(state["w"][..., [0, -1], :, :]).max()
    if walls > 0:
        raise DatasetError(f"w must be 0 on the rigid walls (zf = 0 and the top), found "
                           f"|w| up to {walls:g} m s-1 there")


def _check_finite(state, base):
    for name, arr in list(state.items()) + list(base.items()):
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = np.unravel_index(np.argmax(bad), arr.shape)
            label = "pipert" if name == "pi" else name
            raise DatasetError(f"variable {label!r} has {int(bad.sum())} NaN/Inf value(s), "
                               f"first at index {tuple(int(i) for i in idx)}; fix the input")


def _check_vapour(ds, state, base):
    """qv and qv0 >= 0; in a Dataset xlex wrote, down to -QV_ROUNDOFF is set to 0."""
    written_by_xlex = ds.attrs.get("model") == "xlex"
    for name in ("qv", "qv0"):
        arr = state.get(name, base.get(name))
        if written_by_xlex and arr.min() >= -QV_ROUNDOFF:
            arr = np.maximum(arr, 0.0)  # round-off of xlex's own output: continue from it
            (state if name in state else base)[name] = arr
        if (arr < 0).any():
            raise DatasetError(f"variable {name!r} (water-vapour mixing ratio) must be >= 0, "
                               f"found a minimum of {arr.min():g} kg kg-1")


def coordinates(grid: Grid, origin=(0.0, 0.0)) -> dict:
    """The contract's spatial coordinates of ``grid`` [m] (x and y shifted by ``origin``)."""
    x0, y0 = origin
    return {"zh": grid.centres("z"), "zf": grid.faces("z"),
            "yh": y0 + grid.centres("y"), "yf": y0 + grid.faces("y"),
            "xh": x0 + grid.centres("x"), "xf": x0 + grid.faces("x")}


def _in_precision(values, dims, dtype):
    """Floating ``values`` along ``time`` (e.g. pressure iterations, eddy
    viscosities) in the fields' ``dtype``; anything else as it is."""
    values = np.asarray(values)
    if "time" in dims and np.issubdtype(values.dtype, np.floating):
        return values.astype(dtype, copy=False)
    return values


def states_to_dataset(fields: dict, base: dict, coords: dict, times, *, batch_dims=(),
                      attrs=None, extra=None) -> xr.Dataset:
    """Build a contract Dataset from stacked snapshots.

    Parameters
    ----------
    fields : dict
        'u', 'v', 'w', 'th', 'qv', 'pi' arrays shaped ``(time, *batch, z, y, x)``.
    base : dict
        'th0', 'qv0', 'pi0' profiles on zh.
    coords : dict
        Spatial coordinate values (and ensemble coordinates).
    times : array
        Output times [s].
    attrs : dict
        Global attributes.
    extra : dict, optional
        More variables: name -> (dims, values, attrs).
    """
    th0 = np.asarray(base["th0"])
    qv0 = np.asarray(base["qv0"])
    pi0 = np.asarray(base["pi0"])
    col = (slice(None),) + (None,) * 2
    lead = ("time",) + tuple(batch_dims)
    data = {}
    for name in ("u", "v", "w", "th", "qv"):
        data[name] = (lead + VARIABLE_DIMS[name], np.asarray(fields[name]))
    th = np.asarray(fields["th"])
    qv = np.asarray(fields["qv"])
    # Fields in time are stored in the run's precision (the float64 base state
    # would promote th - th0 to double); profiles on zh keep theirs.
    dtype = th.dtype
    data["pipert"] = (lead + VARIABLE_DIMS["pipert"], np.asarray(fields["pi"]))
    data["thpert"] = (lead + VARIABLE_DIMS["thpert"], (th - th0[col]).astype(dtype))
    data["qvpert"] = (lead + VARIABLE_DIMS["qvpert"], (qv - qv0[col]).astype(dtype))
    data["thrho"] = (lead + VARIABLE_DIMS["thrho"],
                     np.asarray(thermo.density_potential_temperature(th, qv), dtype=dtype))
    rho0 = thermo.base_density(th0, qv0, pi0)
    for name, values in (("th0", th0), ("qv0", qv0), ("pi0", pi0), ("rho0", rho0)):
        data[name] = (("zh",), values)
    for name, (dims, values, vattrs) in (extra or {}).items():
        data[name] = (dims, _in_precision(values, dims, dtype), vattrs)
    all_coords = {"time": np.asarray(times, dtype=np.float64)}
    all_coords.update({k: v for k, v in coords.items()})
    ds = xr.Dataset(data, coords=all_coords, attrs=dict(attrs or {}))
    ds.attrs.setdefault("Conventions", "CF-1.11")
    ds.attrs["model"] = "xlex"
    ds.attrs["model_version"] = __version__
    return annotate(ds)


__all__ = ["ModelInputs", "dataset_to_inputs", "states_to_dataset", "coordinates"]
