"""Conversion between contract Datasets and the core's Grid, State and BaseState.

Everything a user can get wrong in a Dataset is checked here, before any array
reaches JAX, with messages that name the variable, what was expected and what
was found.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from xlex import __version__, constants, thermo
from xlex.errors import DatasetError
from xlex.grid import Grid
from xlex.io.cf import PROGNOSTIC, VARIABLE_DIMS, annotate

SPATIAL_DIMS = ("zh", "zf", "yh", "yf", "xh", "xf")
COORD_UNITS = ("m", "metre", "metres", "meter", "meters")
EXPECTED_UNITS = {"u": "m s-1", "v": "m s-1", "w": "m s-1", "th": "K", "qv": "kg kg-1",
                  "th0": "K", "qv0": "kg kg-1", "pi0": "1", "pipert": "1"}
_UNIT_ALIASES = {
    "m s-1": {"m s-1", "m/s", "m s**-1", "m s^-1", "meters per second"},
    "K": {"K", "kelvin", "degK"},
    "kg kg-1": {"kg kg-1", "kg/kg", "1", "kg kg**-1", "kg kg^-1"},
    "1": {"1", "", "dimensionless", "nondimensional"},
}
#: Relative tolerance of the uniform-spacing check (coordinates written in float32 km).
SPACING_RTOL = 1e-5


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


def _uniform_spacing(ds, name):
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


def _check_units(ds, name, expected):
    units = ds[name].attrs.get("units")
    if units is None:
        return
    if str(units).strip() not in _UNIT_ALIASES.get(expected, {expected}):
        raise DatasetError(f"variable {name!r} has units {units!r}, expected {expected!r}; "
                           f"convert it (xlex uses SI units throughout)")


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
    if not isinstance(ds, xr.Dataset):
        raise DatasetError(f"expected an xarray.Dataset, got {type(ds).__name__}")
    missing = [v for v in PROGNOSTIC + ("th0", "qv0") if v not in ds.data_vars]
    if missing:
        raise DatasetError(
            f"Dataset is missing variable(s) {missing}; an xlex state needs the prognostic "
            f"fields {list(PROGNOSTIC)} and the base state th0, qv0 on zh "
            "(build one with xlex.cases.warm_bubble(), or open CM1 output with xlex.open_cm1)")
    for name in ("zh", "zf", "yh", "yf", "xh", "xf"):
        if name not in ds.dims:
            raise DatasetError(f"Dataset has no dimension {name!r}; the contract's dims are "
                               f"time, zh, zf, yh, yf, xh, xf (z, y, x order)")
        if name not in ds.coords:
            raise DatasetError(f"dimension {name!r} has no coordinate values; add the "
                               f"coordinate in metres")
        units = ds[name].attrs.get("units", "m")
        if units not in COORD_UNITS:
            raise DatasetError(f"coordinate {name!r} has units {units!r}; xlex needs metres "
                               f"(CM1 writes km: open CM1 files with xlex.open_cm1)")
    nx, ny, nz = ds.sizes["xh"], ds.sizes["yh"], ds.sizes["zh"]
    if ds.sizes["xf"] != nx or ds.sizes["yf"] != ny:
        raise DatasetError(
            f"xf/yf must have as many points as xh/yh (periodic: one west/south face per "
            f"cell), got xh={nx}, xf={ds.sizes['xf']}, yh={ny}, yf={ds.sizes['yf']}; drop the "
            "duplicate periodic face (e.g. ds.isel(xf=slice(0, -1)))")
    if ds.sizes["zf"] != nz + 1:
        raise DatasetError(f"zf must have nz + 1 = {nz + 1} points (both walls included), "
                           f"got {ds.sizes['zf']}")
    dx, xh = _uniform_spacing(ds, "xh")
    dy, yh = _uniform_spacing(ds, "yh")
    dz, zh = _uniform_spacing(ds, "zh")
    for face, centre, d in (("xf", xh, dx), ("yf", yh, dy), ("zf", zh, dz)):
        fc = np.asarray(ds[face].values, dtype=np.float64)
        if np.abs(fc[: centre.size] + 0.5 * d - centre).max() > 1e-3 * d:
            raise DatasetError(f"coordinate {face!r} is not staggered half a cell below the "
                               f"centres; expected {face}[i] = centre[i] - {0.5 * d:g} m")
    zf = np.asarray(ds["zf"].values, dtype=np.float64)
    if abs(zf[-1] - (zh[-1] + 0.5 * dz)) > 1e-3 * dz:
        raise DatasetError(f"the top face zf[-1] = {zf[-1]:g} m must be half a cell above the "
                           f"highest centre ({zh[-1] + 0.5 * dz:g} m)")
    if abs(float(ds["zf"].values[0])) > 1e-3 * dz:
        raise DatasetError(f"the lowest z face zf[0] must be the ground, 0 m; got "
                           f"{float(ds['zf'].values[0]):g} m")

    # leading dims: the last time record, then ensemble members
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
    time = 0.0
    if "time" in ds.dims:
        if ds.sizes["time"] == 0:
            raise DatasetError("Dataset has an empty time dimension")
        sel = ds.isel(time=-1)
        t = sel["time"].values
        time = float(t / np.timedelta64(1, "s")) if np.issubdtype(
            np.asarray(t).dtype, np.timedelta64) else float(t)
    else:
        sel = ds
    state = {}
    for name in PROGNOSTIC:
        state[name] = np.asarray(sel[name].transpose(*batch_dims, *VARIABLE_DIMS[name]).values,
                                 dtype=np.float64)
    if "pipert" in sel.data_vars and sel["pipert"].dims[-3:] == ("zh", "yh", "xh"):
        _check_units(ds, "pipert", EXPECTED_UNITS["pipert"])
        pip = sel["pipert"].broadcast_like(sel["th"])
        state["pi"] = np.asarray(pip.transpose(*batch_dims, "zh", "yh", "xh").values,
                                 np.float64)
    else:
        state["pi"] = np.zeros_like(state["th"])

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
        p_sfc = float(ds.attrs.get("surface_pressure", constants.P0))
        _, _, base["pi0"] = thermo.hydrostatic_sounding(
            zh, lambda z: np.interp(z, zh, base["th0"]),
            qv=lambda z: np.interp(z, zh, base["qv0"]), surface_pressure=p_sfc)

    for name, arr in list(state.items()) + list(base.items()):
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = np.unravel_index(np.argmax(bad), arr.shape)
            label = "pipert" if name == "pi" else name
            raise DatasetError(f"variable {label!r} has {int(bad.sum())} NaN/Inf value(s), "
                               f"first at index {tuple(int(i) for i in idx)}; fix the input")
    for name in ("th", "th0"):
        arr = state.get(name, base.get(name))
        if (arr <= 0).any():
            raise DatasetError(f"variable {name!r} must be a positive potential temperature "
                               f"in K, found a minimum of {arr.min():g}")
    for name in ("qv", "qv0"):
        arr = state.get(name, base.get(name))
        if (arr < 0).any():
            raise DatasetError(f"variable {name!r} (water-vapour mixing ratio) must be >= 0, "
                               f"found a minimum of {arr.min():g} kg kg-1")
    walls = np.abs(state["w"][..., [0, -1], :, :]).max()
    if walls > 0:
        raise DatasetError(f"w must be 0 on the rigid walls (zf = 0 and the top), found "
                           f"|w| up to {walls:g} m s-1 there")

    batch_shape = state["th"].shape[:-3]
    coords = {name: np.asarray(ds[name].values, np.float64) for name in SPATIAL_DIMS}
    for d in batch_dims:
        coords[d] = ds[d].values if d in ds.coords else np.arange(ds.sizes[d])
    grid = Grid(nx=nx, ny=ny, nz=nz, dx=dx, dy=dy, dz=dz)
    return ModelInputs(grid=grid, state=state, base=base, batch_dims=batch_dims,
                       batch_shape=batch_shape, time=time, coords=coords)


def coordinates(grid: Grid, origin=(0.0, 0.0)) -> dict:
    """The contract's spatial coordinates of ``grid`` [m] (x and y shifted by ``origin``)."""
    x0, y0 = origin
    return {"zh": grid.centres("z"), "zf": grid.faces("z"),
            "yh": y0 + grid.centres("y"), "yf": y0 + grid.faces("y"),
            "xh": x0 + grid.centres("x"), "xf": x0 + grid.faces("x")}


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
    data["pipert"] = (lead + VARIABLE_DIMS["pipert"], np.asarray(fields["pi"]))
    data["thpert"] = (lead + VARIABLE_DIMS["thpert"], th - th0[col])
    data["qvpert"] = (lead + VARIABLE_DIMS["qvpert"], qv - qv0[col])
    data["thrho"] = (lead + VARIABLE_DIMS["thrho"], thermo.density_potential_temperature(th, qv))
    rho0 = constants.P0 * pi0 ** (constants.CV / constants.RD) / (
        constants.RD * thermo.density_potential_temperature(th0, qv0))
    for name, values in (("th0", th0), ("qv0", qv0), ("pi0", pi0), ("rho0", rho0)):
        data[name] = (("zh",), values)
    for name, (dims, values, vattrs) in (extra or {}).items():
        data[name] = (dims, values, vattrs)
    all_coords = {"time": np.asarray(times, dtype=np.float64)}
    all_coords.update({k: v for k, v in coords.items()})
    ds = xr.Dataset(data, coords=all_coords, attrs=dict(attrs or {}))
    ds.attrs.setdefault("Conventions", "CF-1.11")
    ds.attrs["model"] = "xlex"
    ds.attrs["model_version"] = __version__
    return annotate(ds)


__all__ = ["ModelInputs", "dataset_to_inputs", "states_to_dataset", "coordinates"]
