"""Read CM1 NetCDF output into the xlex dataset contract.

CM1 (Cloud Model 1, G. Bryan, NCAR) writes, with ``output_format=2``, NetCDF
files whose variable and dimension names are already those of the contract
(``th``, ``qv``, ``u``, ``v``, ``w`` on ``zh/zf``, ``yh/yf``, ``xh/xf``), but

* coordinates are in km, stored as float32 (so 7.4 km reads as 7.400001 km);
* the staggered horizontal coordinates ``xf`` and ``yf`` hold nx+1 points, both
  domain edges, so with periodic sides the last face repeats the first;
* the base state (``th0``, ``qv0``, ``pi0``, ``prs0``) is written, when at all,
  as horizontally uniform 3-D fields, often only in a separate file;
* the pressure perturbation is ``prspert`` [Pa] rather than the Exner
  perturbation pi', and there are no CF ``standard_name`` attributes.

:func:`open_cm1` undoes all of this. Every CM1 name is kept in this module:
nothing else in xlex needs to know that CM1 exists.
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from xlex.core import constants, thermo
from xlex.core.errors import DatasetError
from xlex.io import cf
from xlex.io.store import allow_concurrent_reads

__all__ = ["open_cm1"]

# ---------------------------------------------------------------------------
# CM1 names
# ---------------------------------------------------------------------------

#: Global attribute in which CM1 records its release, e.g. ``"cm1r21.1"``.
CM1_VERSION_ATTR = "CM1 version"
#: Coordinates every CM1 NetCDF file has (``output_format=2``).
CM1_COORDS = ("time", *cf.SPATIAL_DIMS)
#: Spatial dimensions (the last three) of the fields the reader cannot do without:
#: CM1 writes them on the contract's dims.
CM1_REQUIRED_FIELDS = {name: cf.VARIABLE_DIMS[name] for name in ("th", "u", "v", "w")}
#: Base-state fields of CM1 (``output_basestate=1``), 3-D but horizontally uniform.
CM1_BASE_STATE = ("th0", "qv0", "pi0", "prs0")
#: Base-state field -> (full field, perturbation field) of CM1 output, so that
#: ``base = full - perturbation`` when the base state itself was not written.
CM1_FULL_AND_PERTURBATION = {
    "th0": ("th", "thpert"),
    "qv0": ("qv", "qvpert"),
    "prs0": ("prs", "prspert"),
    "pi0": ("pi", "pipert"),
}
#: CM1 global attributes that describe the km coordinates and are wrong once
#: the coordinates are in metres.
CM1_COORDINATE_UNIT_ATTRS = ("x_units", "y_units", "z_units")
#: CM1 lateral boundary-condition switches (1 = periodic) per staggered axis.
CM1_PERIODIC_SWITCHES = {"xf": ("wbc", "ebc"), "yf": ("sbc", "nbc")}
#: CM1's degenerate dimension of length one (holds ``ztop``).
CM1_SCALAR_DIM = "one"

_ROUND_DECIMALS = 3  # coordinates in metres are rounded to 1 mm
_FLOAT32_EPS = float(np.finfo(np.float32).eps)

_EXPECTED = "open_cm1 expects CM1 NetCDF output (output_format=2)"


def open_cm1(path, *, basestate=None, chunks=None) -> xr.Dataset:
    """Open CM1 NetCDF output as an xlex Dataset (the dataset contract).

    Parameters
    ----------
    path : str, os.PathLike or sequence of them
        One CM1 output file with a time axis (``output_filetype=1``), or several
        files holding one or more times each (``output_filetype=2``), given as a
        list of paths or as a glob pattern such as ``"cm1out_0*.nc"``. Several
        files are concatenated along ``time`` and sorted by time.
    basestate : str, os.PathLike or xarray.Dataset, optional
        Where to find the base state when the output file has none: a CM1 file
        written with ``output_basestate=1`` (for instance the initial state of
        the run, written with ``iconly=1``), or a Dataset, holding ``th0`` [K],
        ``qv0`` [kg kg-1], ``pi0`` [1] and/or ``prs0`` [Pa] on the same ``zh``
        levels (3-D CM1 fields or 1-D profiles on ``zh``; ``zh`` in km or m
        according to its ``units``). Fields the output file has itself win.
    chunks : int, dict, "auto" or None, optional
        Passed to :func:`xarray.open_dataset`. With chunks the result is
        dask-backed and lazy; with ``None`` (default) fields are read on use.

    Returns
    -------
    xarray.Dataset
        Dimensions ``time, zh, zf, yh, yf, xh, xf`` in the order (time, z, y, x)
        with coordinates in metres (float64, rounded to 1 mm; uniform axes are
        rebuilt as ``x0 + i dx``) and ``time`` in seconds (float64). Periodic
        horizontal faces: ``xf`` has nx points (west faces, ``xf[0] = 0``),
        ``yf`` likewise; ``zf`` has nz+1 points including both walls.
        Data variables (3-D ones keep CM1's float32):

        * ``u``, ``v``, ``w`` [m s-1] on their faces; ``th`` [K]; ``qv`` [kg kg-1];
        * ``thpert = th - th0`` [K] (CM1's own when written, else derived);
        * ``qvpert = qv - qv0`` [kg kg-1] (derived when ``qv0`` is known);
        * ``pipert`` [1], Exner perturbation ``(p/p0)**(Rd/cp) - pi0`` with
          ``p = prs0 + prspert``, computed as
          ``pi0 * expm1(Rd/cp * log1p(prspert/prs0))`` with the reference
          ``(prs0/p0)**(Rd/cp)`` so that it is exactly 0 where ``prspert`` is;
        * ``prspert`` [Pa] when CM1 wrote it;
        * base state on ``zh`` (float64): ``th0`` [K], ``qv0`` [kg kg-1],
          ``pi0`` [1], ``prs0`` [Pa] and ``rho0`` [kg m-3] =
          ``prs0 / (Rd pi0 th0 (1 + (1/eps - 1) qv0))`` (density potential
          temperature; note CM1's own ``rho`` is the dry-air density, about
          0.2 % smaller);
        * every other CM1 field (``buoyancy``, ...) unchanged, with its CM1
          attributes; ``ztop`` becomes a scalar in metres.

        Attributes come from :mod:`xlex.io.cf`. Global attributes keep CM1's
        (its options: ``nx``, ``wbc``, ``fcor`` [s-1], ...) and add
        ``Conventions``, ``source_model = "CM1"``, ``source_model_version``,
        ``source_files``, ``basestate_source`` and ``history``.

    Raises
    ------
    FileNotFoundError
        A path (or every match of a glob pattern) does not exist.
    DatasetError
        A file is not CM1 output (names the missing coordinates or fields), the
        files do not share one grid or repeat a time, or ``basestate`` does not
        match the grid.

    Warns
    -----
    UserWarning
        When no base state is found (then ``th0`` comes from ``th - thpert`` of
        the first record, and ``qvpert``/``pipert`` are left out: pass
        ``basestate=``), when the duplicate last face of ``u``/``v`` differs from
        the first one, or when CM1's boundary switches say a side is not periodic.

    Examples
    --------
    >>> ds = open_cm1("cm1out.nc", basestate="cm1out_basestate.nc")  # doctest: +SKIP
    >>> ds = open_cm1("run/cm1out_0*.nc", chunks={"time": 1})       # doctest: +SKIP
    """
    allow_concurrent_reads()  # before xarray loads netCDF4 (HDF5 reads it once)
    paths = _resolve_paths(path)
    if basestate is not None and not isinstance(basestate, xr.Dataset):
        basestate = Path(os.path.expanduser(os.fspath(basestate)))
        if not basestate.exists():
            raise FileNotFoundError(f"open_cm1: no such basestate file: {str(basestate)!r}")
    raw = _open_files(paths, chunks)
    try:
        return _to_contract(raw, paths, basestate)
    except Exception:
        raw.close()
        raise


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def _resolve_paths(path) -> list[Path]:
    """Turn a path, a list of paths or a glob pattern into existing files."""
    if isinstance(path, xr.Dataset):
        raise TypeError("open_cm1 takes the path(s) of CM1 NetCDF files, not an xarray.Dataset")
    if isinstance(path, str | os.PathLike):
        text = os.fspath(path)
        if not os.path.exists(text) and glob.has_magic(text):
            matches = sorted(glob.glob(os.path.expanduser(text)))
            if not matches:
                raise FileNotFoundError(f"open_cm1: no file matches the pattern {text!r}")
            return [Path(m) for m in matches]
        candidates = [text]
    elif isinstance(path, Iterable):
        candidates = [os.fspath(p) for p in path]
        if not candidates:
            raise FileNotFoundError("open_cm1: the list of CM1 files is empty")
    else:
        raise TypeError(f"open_cm1: path must be a path, a glob pattern or a list of paths, "
                        f"not {type(path).__name__}")
    paths = [Path(os.path.expanduser(c)) for c in candidates]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"open_cm1: no such file: {str(p)!r}")
    return paths


def _open_one(path: Path, chunks) -> xr.Dataset:
    try:
        ds = xr.open_dataset(path, chunks=chunks, decode_times=False, decode_timedelta=False)
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path} could not be read as NetCDF ({err}); {_EXPECTED}.") from err
    try:
        _check_layout(ds, path)
    except DatasetError:
        ds.close()
        raise
    return ds


def _check_layout(ds: xr.Dataset, path) -> None:
    """Raise DatasetError unless ``ds`` has CM1's coordinates and fields."""
    missing = [n for n in (*CM1_COORDS, *CM1_REQUIRED_FIELDS) if n not in ds.variables]
    if missing:
        raise DatasetError(
            f"{path} is not CM1 output: missing {', '.join(missing)}. {_EXPECTED}, "
            f"with coordinates {', '.join(CM1_COORDS)} and fields "
            f"{', '.join(CM1_REQUIRED_FIELDS)}.")
    wrong = [f"{n}{ds[n].dims}" for n, dims in CM1_REQUIRED_FIELDS.items()
             if ds[n].dims[-3:] != dims or "time" not in ds[n].dims]
    if wrong:
        expected = ", ".join(f"{n}(time, {', '.join(d)})" for n, d in CM1_REQUIRED_FIELDS.items())
        raise DatasetError(f"{path} does not have CM1's layout: found {', '.join(wrong)}, "
                           f"expected {expected}. {_EXPECTED}.")


def _open_files(paths: list[Path], chunks) -> xr.Dataset:
    parts = [_open_one(p, chunks) for p in paths]
    if len(parts) == 1:
        ds = parts[0]
    else:
        order = np.argsort([float(p["time"].values[0]) if p.sizes["time"] else np.inf
                            for p in parts], kind="stable")
        parts = [parts[i] for i in order]
        paths[:] = [paths[i] for i in order]
        try:
            ds = xr.concat(parts, dim="time", data_vars="minimal", coords="minimal",
                           compat="override", join="exact", combine_attrs="override")
        except ValueError as err:
            for p in parts:
                p.close()
            raise DatasetError(f"the CM1 files {', '.join(map(str, paths))} do not share one "
                               f"grid and cannot be joined along time: {err}") from err
    times = np.asarray(ds["time"].values, dtype=np.float64)
    if np.unique(times).size != times.size:
        raise DatasetError(f"the CM1 output in {', '.join(map(str, paths))} repeats times "
                           f"({times.tolist()} s); give each output time once")
    if np.any(np.diff(times) < 0):
        ds = ds.isel(time=np.argsort(times, kind="stable"))
    return ds


# ---------------------------------------------------------------------------
# Coordinates
# ---------------------------------------------------------------------------


def _length_factor(ds: xr.Dataset, name: str, source) -> float:
    """Metres per unit of coordinate ``name`` (CM1: km)."""
    units = ds[name].attrs.get("units") or ds.attrs.get(f"{cf.AXIS_OF[name]}_units")
    if units is None:
        raise DatasetError(f"coordinate {name} of {source} has no units attribute; "
                           f"{_EXPECTED}, which writes coordinates in km")
    factor = cf.LENGTH_UNITS.get(str(units).strip().lower())
    if factor is None:
        raise DatasetError(f"coordinate {name} of {source} has units {units!r}; "
                           f"expected km (CM1's default) or m")
    return factor


def _clean_coordinate(values, factor: float) -> np.ndarray:
    """Coordinate in metres without float32 noise.

    A uniform axis is rebuilt as ``x0 + i dx`` with ``x0`` and ``dx`` rounded to
    1 mm when that reproduces the stored values to within float32 round-off;
    any other axis is rounded to 1 mm.
    """
    metres = np.asarray(values, dtype=np.float64) * factor
    if metres.size >= 2:
        start = np.round(metres[0], _ROUND_DECIMALS)
        step = np.round((metres[-1] - metres[0]) / (metres.size - 1), _ROUND_DECIMALS)
        rebuilt = start + step * np.arange(metres.size)
        tolerance = max(10.0 ** -_ROUND_DECIMALS, 4 * _FLOAT32_EPS * np.abs(metres).max())
        if step > 0 and np.abs(rebuilt - metres).max() <= tolerance:
            return rebuilt
    return np.round(metres, _ROUND_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


def _drop_duplicate_face(ds: xr.Dataset, face: str, centre: str, field: str,
                         source) -> xr.Dataset:
    """Drop CM1's last (periodic duplicate) face of ``face`` after checking it."""
    nf, nc = ds.sizes[face], ds.sizes[centre]
    if nf == nc:
        return ds
    if nf != nc + 1:
        raise DatasetError(f"{source}: {face} has {nf} points and {centre} {nc}; "
                           f"CM1 writes nx+1 faces for nx cells")
    switches = {k: ds.attrs[k] for k in CM1_PERIODIC_SWITCHES[face] if k in ds.attrs}
    if any(int(np.asarray(v)) != 1 for v in switches.values()):
        warnings.warn(f"{source}: CM1 boundary switches {switches} say the {face[0]} "
                      f"direction is not periodic (1 = periodic); xlex assumes periodic "
                      f"sides and drops the last {face} face anyway", UserWarning, stacklevel=5)
    elif ds.sizes["time"] > 0:
        last = ds[field].isel(time=-1)
        first_face = np.asarray(last.isel({face: 0}).values)
        last_face = np.asarray(last.isel({face: -1}).values)
        if not np.array_equal(first_face, last_face, equal_nan=True):
            diff = float(np.nanmax(np.abs(first_face - last_face)))
            warnings.warn(f"{source}: {field} on the last {face} face differs from the first "
                          f"(max |difference| {diff:.3g} at the last time), so the file may "
                          f"not be periodic in {face[0]}; the last face was dropped anyway",
                          UserWarning, stacklevel=5)
    return ds.isel({face: slice(0, nf - 1)})


def _contract_coordinates(raw: xr.Dataset, source) -> xr.Dataset:
    ds = raw
    if CM1_SCALAR_DIM in ds.dims and ds.sizes[CM1_SCALAR_DIM] == 1:
        ds = ds.squeeze(CM1_SCALAR_DIM, drop=True)
    ds = _drop_duplicate_face(ds, "xf", "xh", "u", source)
    ds = _drop_duplicate_face(ds, "yf", "yh", "v", source)
    new = {}
    for name in [n for n in ds.coords if n in cf.AXIS_OF]:  # in the file's order
        factor = _length_factor(raw, name, source)
        new[name] = (name, _clean_coordinate(ds[name].values, factor),
                     {**ds[name].attrs, "units": "m"})
    new["time"] = ("time", np.asarray(ds["time"].values, dtype=np.float64),
                   dict(ds["time"].attrs))
    ds = ds.assign_coords(new)
    for name in new:
        ds[name].encoding = {}
    if "ztop" in ds.variables and ds["ztop"].ndim == 0:
        factor = _length_factor(raw, "zf", source)
        value = float(np.asarray(ds["ztop"].values, dtype=np.float64)) * factor
        top = float(ds["zf"].values[-1])
        if abs(value - top) <= max(1e-3, 4 * _FLOAT32_EPS * abs(top)):
            value = top
        ds["ztop"] = xr.DataArray(np.round(value, _ROUND_DECIMALS),
                                  attrs={**ds["ztop"].attrs, "units": "m"})
    return ds


# ---------------------------------------------------------------------------
# Base state
# ---------------------------------------------------------------------------


def _column(da: xr.DataArray) -> np.ndarray:
    """First column (first time, first x, first y) of a field on zh, as float64."""
    da = da.isel({d: 0 for d in da.dims if d != "zh"})
    return np.asarray(da.values, dtype=np.float64)


def _base_from(ds: xr.Dataset, zh: np.ndarray, source, names) -> dict[str, np.ndarray]:
    """Base-state profiles ``names`` that ``ds`` holds, checked against levels ``zh`` [m]."""
    found = {}
    for name in names:
        if name not in ds.variables or "zh" not in ds[name].dims:
            continue
        if ds.sizes["zh"] != zh.size:
            raise DatasetError(f"base state from {source} has {ds.sizes['zh']} levels zh, "
                               f"the CM1 output {zh.size}")
        found[name] = _column(ds[name])
    if found and "zh" in ds.coords:
        units = ds["zh"].attrs.get("units")
        factor = cf.LENGTH_UNITS.get(str(units).strip().lower(), 1.0) if units else 1.0
        levels = np.asarray(ds["zh"].values, dtype=np.float64) * factor
        if not np.allclose(levels, zh, rtol=0.0, atol=max(0.05, 1e-6 * np.abs(zh).max())):
            raise DatasetError(f"base state from {source} is on levels zh = {levels} m, the "
                               f"CM1 output on zh = {zh} m")
    return found


def _base_from_first_record(ds: xr.Dataset, names) -> dict[str, np.ndarray]:
    """Base state as ``full - perturbation`` of the first record (median over y, x)."""
    found = {}
    for name in names:
        full, pert = CM1_FULL_AND_PERTURBATION[name]
        if full in ds.data_vars and pert in ds.data_vars and ds.sizes["time"] > 0:
            diff = (ds[full].isel(time=0).astype(np.float64)
                    - ds[pert].isel(time=0).astype(np.float64))
            horizontal = [d for d in diff.dims if d != "zh"]
            found[name] = np.asarray(diff.load().median(horizontal).values, dtype=np.float64)
    return found


def _complete_pressure(base: dict[str, np.ndarray]) -> None:
    """Fill pi0 from prs0 or prs0 from pi0: pi0 = (prs0/p0)**(Rd/cp)."""
    if "prs0" in base and "pi0" not in base:
        base["pi0"] = (base["prs0"] / constants.P0) ** constants.KAPPA
    elif "pi0" in base and "prs0" not in base:
        base["prs0"] = constants.P0 * base["pi0"] ** (1.0 / constants.KAPPA)


def _gather_base_state(ds: xr.Dataset, basestate, source):
    """Base-state profiles on zh and a sentence saying where they came from."""
    zh = np.asarray(ds["zh"].values)
    base = _base_from(ds, zh, source, CM1_BASE_STATE)
    origin = ["the CM1 output"] if base else []
    missing = [n for n in CM1_BASE_STATE if n not in base]
    if missing and basestate is not None:
        if isinstance(basestate, xr.Dataset):
            found = _base_from(basestate, zh, "the basestate Dataset", missing)
            label = "the basestate= Dataset"
        else:
            bpath = basestate
            try:
                bds = xr.open_dataset(bpath, decode_times=False, decode_timedelta=False)
            except (OSError, ValueError) as err:
                raise DatasetError(f"basestate file {bpath} could not be read as NetCDF "
                                   f"({err})") from err
            with bds:
                found = _base_from(bds, zh, bpath, missing)
            label = str(bpath)
        if not found:
            raise DatasetError(f"basestate= {label} holds none of {', '.join(missing)} on zh; "
                               f"give a CM1 file written with output_basestate=1 or a Dataset "
                               f"with th0 [K], qv0 [kg kg-1], pi0 [1], prs0 [Pa]")
        base.update(found)
        origin.append(label)
    _complete_pressure(base)
    missing = [n for n in CM1_BASE_STATE if n not in base]
    if missing:
        found = _base_from_first_record(ds, missing)
        if found:
            base.update(found)
            origin.append(" and ".join(f"{n} = {' - '.join(CM1_FULL_AND_PERTURBATION[n])}"
                                       for n in found) + " of the first record")
        _complete_pressure(base)
    return base, "; ".join(origin) if origin else "none"


# ---------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------


def _like(field: xr.DataArray, value: xr.DataArray, name: str) -> xr.DataArray:
    """``value`` with the dims order and dtype of ``field`` and no attributes."""
    out = value.transpose(*field.dims).astype(field.dtype)
    out.attrs = {}
    out.name = name
    return out


def _to_contract(raw: xr.Dataset, paths: list[Path], basestate) -> xr.Dataset:
    source = paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} files)"
    ds = _contract_coordinates(raw, source)
    base, base_origin = _gather_base_state(ds, basestate, source)

    # Replace CM1's 3-D base-state fields by profiles on zh.
    ds = ds.drop_vars([n for n in CM1_BASE_STATE if n in ds.variables])
    profiles = {}
    for name in CM1_BASE_STATE:
        if name in base:
            attrs = dict(raw[name].attrs) if name in raw.variables else {}
            if name == "prs0":
                attrs = {"units": "Pa", "long_name": "base-state pressure", **attrs}
            profiles[name] = xr.DataArray(base[name], dims=("zh",), coords={"zh": ds["zh"]},
                                          attrs=attrs)
    has_qv = "qv" in ds.data_vars
    if {"th0", "pi0", "prs0"} <= profiles.keys() and ("qv0" in profiles or not has_qv):
        qv0 = base.get("qv0", 0.0)
        rho0 = base["prs0"] / (constants.RD * base["pi0"]
                               * thermo.density_potential_temperature(base["th0"], qv0))
        profiles["rho0"] = xr.DataArray(rho0, dims=("zh",), coords={"zh": ds["zh"]})

    left_out = []
    if "thpert" not in ds.data_vars:
        if "th0" in profiles:
            ds["thpert"] = _like(ds["th"], ds["th"] - profiles["th0"], "thpert")
        else:
            left_out.append("thpert")
    if has_qv:
        if "qv0" in profiles:
            ds["qvpert"] = _like(ds["qv"], ds["qv"] - profiles["qv0"], "qvpert")
        elif "qvpert" not in ds.data_vars:
            left_out.append("qvpert")
    if "pipert" not in ds.data_vars:
        pipert = _exner_perturbation(ds, profiles)
        if pipert is None:
            left_out.append("pipert")
        else:
            ds["pipert"] = pipert
    if left_out:
        warnings.warn(
            f"{source} has no base state ({', '.join(n for n in CM1_BASE_STATE if n not in base)}"
            f" missing), so {', '.join(left_out)} "
            f"{'is' if len(left_out) == 1 else 'are'} left out. Pass basestate= a CM1 file "
            f"written with output_basestate=1 (e.g. the run's initial state written with "
            f"iconly=1) or a Dataset holding th0, qv0, pi0, prs0.", UserWarning, stacklevel=3)

    ds = ds.assign(profiles)
    order = [n for n in (*cf.PROGNOSTIC, "thpert", "qvpert", "pipert", "prspert")
             if n in ds.data_vars]
    order += [n for n in (*cf.BASE_STATE, "prs0") if n in ds.data_vars]
    order += [n for n in ds.data_vars if n not in order]
    ds = ds[order]
    ds = cf.annotate(ds)
    ds.attrs = _global_attrs(raw.attrs, paths, base_origin)
    return ds


def _exner_perturbation(ds: xr.Dataset, profiles: Mapping) -> xr.DataArray | None:
    """pi' = (p/p0)**(Rd/cp) - (prs0/p0)**(Rd/cp) from CM1's pressure fields, or None."""
    if "prs0" not in profiles:
        if "pi" in ds.data_vars and "pi0" in profiles:
            return _like(ds["pi"], ds["pi"] - profiles["pi0"], "pipert")
        return None
    prs0 = profiles["prs0"]
    if "prspert" in ds.data_vars:
        ratio = ds["prspert"].astype(np.float64) / prs0
        like = ds["prspert"]
    elif "prs" in ds.data_vars:
        ratio = ds["prs"].astype(np.float64) / prs0 - 1.0
        like = ds["prs"]
    else:
        return None
    reference = (prs0 / constants.P0) ** constants.KAPPA
    return _like(like, reference * np.expm1(constants.KAPPA * np.log1p(ratio)), "pipert")


def _global_attrs(cm1_attrs: Mapping, paths: list[Path], base_origin: str) -> dict:
    attrs = {k: v for k, v in cm1_attrs.items() if k not in CM1_COORDINATE_UNIT_ATTRS}
    version = str(cm1_attrs.get(CM1_VERSION_ATTR, "unknown"))
    history = str(cm1_attrs.get("history", "")).strip()
    step = ("xlex.io.cm1.open_cm1: coordinates km -> m, periodic duplicate last x/y faces "
            "dropped, base state as profiles on zh, thpert/qvpert/pipert derived where "
            "missing, CF attributes added")
    attrs.update({
        "Conventions": "CF-1.11",
        "source_model": "CM1",
        "source_model_version": version,
        "source": f"CM1 {version} NetCDF output",
        "source_files": "; ".join(str(p.resolve()) for p in paths),
        "basestate_source": base_origin,
        "history": f"{history}\n{step}" if history else step,
    })
    return attrs
